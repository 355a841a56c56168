//! cgroup v1: one hierarchy per controller, with a `sandpool` directory of our own in each.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where a v1 `controller` is mounted, if it is a v1 hierarchy.
pub(super) fn hierarchy(controller: &str) -> Option<PathBuf> {
    let dir = Path::new("/sys/fs/cgroup").join(controller);
    (dir.join("cgroup.procs").exists() && !dir.join("cgroup.controllers").exists()).then_some(dir)
}

/// The part of a v1 memory limit of `bytes` kept for TCP socket buffers: an eighth, at least
/// 1 MiB and at most half. v1 charges TCP buffers to a counter of their own
/// (`memory.kmem.tcp`), beside the main one, so the two limits split the sandbox's memory
/// between them: together they are `bytes`, as v2's single `memory.max` is.
pub(crate) fn tcp_share(bytes: u64) -> u64 {
    (bytes / 8).max(1 << 20).min(bytes / 2)
}

/// Sets the memory limit of a sandbox's commands' cgroup: `memory.limit_in_bytes` for all
/// but the TCP buffers' share, and that share as the TCP buffers' limit, so that processes
/// and socket buffers together stay within `bytes`. Returns what the processes may use.
pub(super) fn limit_memory(dir: &Path, bytes: u64) -> Result<u64, (String, io::Error)> {
    // cgroup v1 charges socket buffers only once a TCP limit is set (v2 always charges them
    // to memory.max): without it, loopback connections could pin hundreds of MiB of kernel
    // memory beyond the limit.
    let tcp = dir.join("memory.kmem.tcp.limit_in_bytes");
    let share = if tcp.exists() { tcp_share(bytes) } else { 0 };
    let processes = bytes - share;
    limit_processes(dir, processes)?;
    if share > 0 {
        fs::write(&tcp, share.to_string()).map_err(|e| ("set memory.kmem.tcp.limit_in_bytes".into(), e))?;
    }
    Ok(processes)
}

/// Sets `memory.limit_in_bytes`, and the same with swap where the kernel accounts it: for a
/// sandbox's own cgroup, its commands' limit (what [`limit_memory`] returned) plus the
/// init's and spawner's margin (see [`super::COMMANDS`]).
pub(super) fn limit_processes(dir: &Path, bytes: u64) -> Result<(), (String, io::Error)> {
    let limit = bytes.to_string();
    fs::write(dir.join("memory.limit_in_bytes"), &limit).map_err(|e| ("set memory.limit_in_bytes".into(), e))?;
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    if memsw.exists() {
        fs::write(&memsw, &limit).map_err(|e| ("set memory.memsw.limit_in_bytes".into(), e))?;
    }
    Ok(())
}

/// Sets a sandbox's CPU share: `cpus` CPUs' worth of time per 100 ms period
/// (`cpu.cfs_quota_us` over `cpu.cfs_period_us`).
pub(super) fn limit_cpu(dir: &Path, cpus: f64) -> Result<(), (String, io::Error)> {
    const PERIOD_US: u64 = 100_000;
    let quota = ((cpus * PERIOD_US as f64).round() as u64).max(1000);
    fs::write(dir.join("cpu.cfs_period_us"), PERIOD_US.to_string()).map_err(|e| ("set cpu.cfs_period_us".into(), e))?;
    fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string()).map_err(|e| ("set cpu.cfs_quota_us".into(), e))
}

/// The cgroup's `tasks` file, handed to the sandbox's user (`uid`, `gid`) so that the zygote
/// moves itself in by writing `0` there. Moving another process takes the threadgroup lock,
/// whose RCU grace period costs about a millisecond per cgroup here; a thread moving itself
/// does not.
pub(super) fn self_join_file(dir: &Path, uid: u32, gid: u32) -> Result<PathBuf, (String, io::Error)> {
    let tasks = dir.join("tasks");
    std::os::unix::fs::chown(&tasks, Some(uid), Some(gid))
        .map_err(|e| (format!("hand {} to the sandbox", tasks.display()), e))?;
    Ok(tasks)
}
