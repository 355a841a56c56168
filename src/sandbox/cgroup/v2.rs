//! cgroup v2: a delegated subtree whose `cgroup.subtree_control` hands the controllers down.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The v2 directory this process lives in, if v2 is mounted.
pub(super) fn own_dir() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    for mount in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        if Path::new(mount).join("cgroup.controllers").exists() {
            return Some(Path::new(mount).join(rel.trim_start_matches('/')));
        }
    }
    None
}

/// Whether `dir`'s `cgroup.subtree_control` already hands `controller` down to the cgroups
/// made below it.
pub(super) fn hands_down(dir: &Path, controller: &str) -> bool {
    fs::read_to_string(dir.join("cgroup.subtree_control")).is_ok_and(|t| t.split_whitespace().any(|c| c == controller))
}

/// Sets a sandbox's memory limit: `memory.max`, and no swap (`memory.swap.max` 0, where the
/// kernel has swap accounting): the limit is on memory, not memory that spills to disk. v2
/// charges socket buffers to `memory.max` too.
pub(super) fn limit_memory(dir: &Path, bytes: u64) -> Result<(), (String, io::Error)> {
    fs::write(dir.join("memory.max"), bytes.to_string()).map_err(|e| ("set memory.max".into(), e))?;
    let _ = fs::write(dir.join("memory.swap.max"), "0");
    Ok(())
}

/// Moves process `pid` (and so all its future children) into the cgroup `dir`.
pub(super) fn attach(dir: &Path, pid: i32) -> Result<(), (String, io::Error)> {
    fs::write(dir.join("cgroup.procs"), pid.to_string()).map_err(|e| (format!("attach to {}", dir.display()), e))
}
