//! Per-sandbox cgroups for the memory and process limits: cgroup v2 where a writable,
//! delegated subtree has the controllers, cgroup v1 where that is what the host has (this
//! machine: v2 holds only `hugetlb`, `memory` and `pids` are v1), otherwise none (the limits
//! then fall back to rlimits).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::isolation::Enforcement;

/// Where sandbox cgroups for one controller are made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CgroupHome {
    /// The parent directory that sandboxes' cgroups go under.
    pub parent: PathBuf,
    /// v1 or v2.
    pub version: Enforcement,
}

/// Where the memory and pids controllers can be used, found once per process.
#[derive(Clone, Debug, Default)]
pub(crate) struct CgroupSupport {
    pub memory: Option<CgroupHome>,
    pub pids: Option<CgroupHome>,
    /// Why a controller is unusable, for `doctor` and the isolation report.
    pub notes: Vec<String>,
}

fn writable_dir(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    std::fs::metadata(path).is_ok_and(|m| m.is_dir())
        && rustix::fs::accessat(
            rustix::fs::CWD,
            c.as_c_str(),
            rustix::fs::Access::WRITE_OK,
            rustix::fs::AtFlags::EACCESS,
        )
        .is_ok()
}

/// The v2 directory this process lives in, if v2 is mounted.
fn own_v2_dir() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    for mount in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        if Path::new(mount).join("cgroup.controllers").exists() {
            return Some(Path::new(mount).join(rel.trim_start_matches('/')));
        }
    }
    None
}

/// Removes the cgroups that sandbox hosts killed before they could clean up left behind:
/// `sb-<pid>-<n>` directories whose host process is gone. A cgroup that still holds a process
/// cannot be removed, so nothing alive is touched.
fn remove_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("sb-")).and_then(|n| n.split('-').next()) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            match fs::remove_dir(entry.path()) {
                Ok(()) => tracing::info!(cgroup = %entry.path().display(), "removed a stale sandbox cgroup"),
                Err(e) => tracing::debug!(cgroup = %entry.path().display(), error = %e, "stale cgroup kept"),
            }
        }
    }
}

fn detect() -> CgroupSupport {
    let mut s = CgroupSupport::default();
    let v2 = own_v2_dir();
    for (controller, slot) in [("memory", 0), ("pids", 1)] {
        let mut home = None;
        if let Some(dir) = &v2 {
            // Delegated v2: our own cgroup's subtree_control already hands the controller down
            // and we may create children there.
            let delegated = fs::read_to_string(dir.join("cgroup.subtree_control"))
                .is_ok_and(|t| t.split_whitespace().any(|c| c == controller));
            if delegated && writable_dir(dir) {
                home = Some(CgroupHome { parent: dir.clone(), version: Enforcement::CgroupV2 });
            }
        }
        if home.is_none() {
            let v1 = Path::new("/sys/fs/cgroup").join(controller);
            let is_v1 = v1.join("cgroup.procs").exists() && !v1.join("cgroup.controllers").exists();
            if is_v1 && writable_dir(&v1) {
                let parent = v1.join("sandpool");
                match fs::create_dir(&parent) {
                    Ok(()) => home = Some(CgroupHome { parent, version: Enforcement::CgroupV1 }),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        home = Some(CgroupHome { parent, version: Enforcement::CgroupV1 })
                    }
                    Err(e) => s.notes.push(format!("{controller}: cannot create {}: {e}", parent.display())),
                }
            } else if is_v1 {
                s.notes.push(format!("{controller}: cgroup v1 at {} is not writable by this user", v1.display()));
            } else {
                s.notes.push(format!("{controller}: no writable cgroup v1 or delegated v2 controller"));
            }
        }
        if let Some(h) = &home {
            remove_stale(&h.parent);
        }
        if slot == 0 {
            s.memory = home;
        } else {
            s.pids = home;
        }
    }
    s
}

/// The host's cgroup support, probed once.
pub(crate) fn support() -> &'static CgroupSupport {
    static SUPPORT: OnceLock<CgroupSupport> = OnceLock::new();
    SUPPORT.get_or_init(detect)
}

/// A sandbox's own cgroups, removed on drop (once its processes are gone).
#[derive(Debug, Default)]
pub(crate) struct SandboxCgroups {
    dirs: Vec<(PathBuf, Enforcement)>,
    pub memory: Option<Enforcement>,
    pub pids: Option<Enforcement>,
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value)
}

impl SandboxCgroups {
    /// Makes the sandbox's cgroups and sets their limits.
    pub(crate) fn create(memory_bytes: u64, max_processes: u64) -> Result<Self, (String, io::Error)> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name =
            format!("sb-{}-{}", rustix::process::getpid().as_raw_nonzero(), NEXT.fetch_add(1, Ordering::Relaxed));
        let support = support();
        let mut cg = SandboxCgroups::default();
        if let Some(home) = &support.memory {
            let dir = home.parent.join(&name);
            fs::create_dir(&dir).map_err(|e| (format!("create {}", dir.display()), e))?;
            cg.dirs.push((dir.clone(), home.version));
            let limit = memory_bytes.to_string();
            match home.version {
                Enforcement::CgroupV2 => {
                    write(&dir.join("memory.max"), &limit).map_err(|e| ("set memory.max".into(), e))?;
                    // No swap: the limit is on memory, not memory that spills to disk.
                    let _ = write(&dir.join("memory.swap.max"), "0");
                }
                _ => {
                    write(&dir.join("memory.limit_in_bytes"), &limit)
                        .map_err(|e| ("set memory.limit_in_bytes".into(), e))?;
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(&memsw, &limit).map_err(|e| ("set memory.memsw.limit_in_bytes".into(), e))?;
                    }
                    // cgroup v1 charges socket buffers only once a TCP limit is set (v2
                    // always charges them to memory.max): without it, loopback connections
                    // could pin hundreds of MiB of kernel memory beyond the limit.
                    let tcp = dir.join("memory.kmem.tcp.limit_in_bytes");
                    if tcp.exists() {
                        write(&tcp, &limit).map_err(|e| ("set memory.kmem.tcp.limit_in_bytes".into(), e))?;
                    }
                }
            }
            cg.memory = Some(home.version);
        }
        if let Some(home) = &support.pids {
            let dir = home.parent.join(&name);
            if !cg.dirs.iter().any(|(d, _)| *d == dir) {
                fs::create_dir(&dir).map_err(|e| (format!("create {}", dir.display()), e))?;
                cg.dirs.push((dir.clone(), home.version));
            }
            write(&dir.join("pids.max"), &max_processes.to_string()).map_err(|e| ("set pids.max".into(), e))?;
            cg.pids = Some(home.version);
        }
        Ok(cg)
    }

    /// The v1 cgroups' `tasks` files, handed to the sandbox's user (`uid`, `gid`) so that the
    /// zygote moves itself in by writing `0` there. Moving another process takes the
    /// threadgroup lock, whose RCU grace period costs about a millisecond per cgroup here; a
    /// thread moving itself does not.
    pub(crate) fn self_join_files(&self, uid: u32, gid: u32) -> Result<Vec<PathBuf>, (String, io::Error)> {
        let mut files = Vec::new();
        for (dir, version) in &self.dirs {
            if *version == Enforcement::CgroupV1 {
                let tasks = dir.join("tasks");
                std::os::unix::fs::chown(&tasks, Some(uid), Some(gid))
                    .map_err(|e| (format!("hand {} to the sandbox", tasks.display()), e))?;
                files.push(tasks);
            }
        }
        Ok(files)
    }

    /// Moves process `pid` (and so all its future children) into the cgroups the zygote does
    /// not join itself (v2).
    pub(crate) fn attach(&self, pid: i32) -> Result<(), (String, io::Error)> {
        for (dir, version) in &self.dirs {
            if *version != Enforcement::CgroupV1 {
                write(&dir.join("cgroup.procs"), &pid.to_string())
                    .map_err(|e| (format!("attach to {}", dir.display()), e))?;
            }
        }
        Ok(())
    }

    /// Whether the memory cgroup recorded an out-of-memory kill.
    pub(crate) fn oom_killed(&self) -> bool {
        self.dirs.iter().any(|(d, _)| {
            fs::read_to_string(d.join("memory.events"))
                .or_else(|_| fs::read_to_string(d.join("memory.oom_control")))
                .is_ok_and(|t| {
                    t.lines()
                        .any(|l| l.strip_prefix("oom_kill ").is_some_and(|n| n.trim().parse::<u64>().unwrap_or(0) > 0))
                })
        })
    }

    /// Removes the cgroups; their processes must be gone. Retries briefly while the kernel
    /// finishes tearing the last task down.
    pub(crate) fn remove(&mut self) -> io::Result<()> {
        let mut last = Ok(());
        for (dir, _) in self.dirs.drain(..) {
            let mut attempt = 0;
            loop {
                match fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if attempt < 200 && e.raw_os_error() == Some(libc::EBUSY) => {
                        attempt += 1;
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove sandbox cgroup");
                        last = Err(e);
                        break;
                    }
                }
            }
        }
        last
    }
}

impl Drop for SandboxCgroups {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_sandbox_cgroups_of_dead_hosts_are_removed_and_live_ones_kept() {
        let parent = std::env::temp_dir().join(format!("sandpool-cgroup-test-{}", std::process::id()));
        let dead = parent.join("sb-4000000000-0"); // above pid_max: never a live process
        let live = parent.join(format!("sb-{}-0", std::process::id()));
        let other = parent.join("not-ours");
        for d in [&dead, &live, &other] {
            fs::create_dir_all(d).unwrap();
        }
        remove_stale(&parent);
        assert!(!dead.exists());
        assert!(live.exists() && other.exists());
        fs::remove_dir_all(&parent).unwrap();
    }
}
