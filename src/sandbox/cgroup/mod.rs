//! Per-sandbox cgroups for the memory and process limits: cgroup v2 ([`v2`]) where a
//! writable, delegated subtree has the controllers, cgroup v1 ([`v1`]) where that is what the
//! host has (this machine: v2 holds only `hugetlb`, `memory` and `pids` are v1), otherwise
//! none (the limits then fall back to rlimits).
//!
//! A sandbox's cgroups go with it. [`Sandbox::destroy`](super::Sandbox::destroy) waits until
//! they are removed; dropping a sandbox does not wait: a cgroup the kernel still holds busy
//! (its last processes being torn down) is removed by a background thread, which counts and
//! logs what it could not remove ([`cgroup_removal_failures`]).

mod v1;
mod v2;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

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
    let v2 = v2::own_dir();
    for (controller, slot) in [("memory", 0), ("pids", 1)] {
        let mut home = None;
        if let Some(dir) = &v2 {
            // Delegated v2: our own cgroup's subtree_control already hands the controller down
            // and we may create children there.
            if v2::hands_down(dir, controller) && writable_dir(dir) {
                home = Some(CgroupHome { parent: dir.clone(), version: Enforcement::CgroupV2 });
            }
        }
        if home.is_none() {
            let v1_dir = v1::hierarchy(controller);
            let is_v1 = v1_dir.is_some();
            let v1 = v1_dir.unwrap_or_default();
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
            match home.version {
                Enforcement::CgroupV2 => v2::limit_memory(&dir, memory_bytes)?,
                _ => v1::limit_memory(&dir, memory_bytes)?,
            }
            cg.memory = Some(home.version);
        }
        if let Some(home) = &support.pids {
            let dir = home.parent.join(&name);
            if !cg.dirs.iter().any(|(d, _)| *d == dir) {
                fs::create_dir(&dir).map_err(|e| (format!("create {}", dir.display()), e))?;
                cg.dirs.push((dir.clone(), home.version));
            }
            fs::write(dir.join("pids.max"), max_processes.to_string()).map_err(|e| ("set pids.max".into(), e))?;
            cg.pids = Some(home.version);
        }
        Ok(cg)
    }

    /// The v1 cgroups' `tasks` files, handed to the sandbox's user (`uid`, `gid`), which the
    /// zygote joins itself (see [`v1::self_join_file`]).
    pub(crate) fn self_join_files(&self, uid: u32, gid: u32) -> Result<Vec<PathBuf>, (String, io::Error)> {
        let v1_dirs = self.dirs.iter().filter(|(_, version)| *version == Enforcement::CgroupV1);
        v1_dirs.map(|(dir, _)| v1::self_join_file(dir, uid, gid)).collect()
    }

    /// Moves process `pid` (and so all its future children) into the cgroups the zygote does
    /// not join itself (v2).
    pub(crate) fn attach(&self, pid: i32) -> Result<(), (String, io::Error)> {
        for (dir, version) in &self.dirs {
            if *version != Enforcement::CgroupV1 {
                v2::attach(dir, pid)?;
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

    /// Removes the cgroups, waiting (up to [`REMOVAL_PATIENCE`]) while the kernel finishes
    /// tearing their last processes down; their processes must be dead.
    pub(crate) fn remove(&mut self) -> io::Result<()> {
        let mut last = Ok(());
        for (dir, _) in self.dirs.drain(..) {
            if let Err(e) = remove_patiently(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove sandbox cgroup");
                REMOVAL_FAILURES.fetch_add(1, Ordering::Relaxed);
                last = Err(e);
            }
        }
        last
    }

    /// Removes the cgroups that can go now, and hands those still busy to the background
    /// remover: never blocks.
    pub(crate) fn remove_or_defer(&mut self) {
        for (dir, _) in self.dirs.drain(..) {
            match fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => remove_later(dir),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove sandbox cgroup");
                    REMOVAL_FAILURES.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

impl Drop for SandboxCgroups {
    fn drop(&mut self) {
        self.remove_or_defer();
    }
}

/// How long a cgroup may stay busy after its processes were killed before its removal counts
/// as failed. The kernel frees a cgroup once its last task is fully gone, which normally takes
/// a millisecond or two.
pub(crate) const REMOVAL_PATIENCE: Duration = Duration::from_secs(10);

/// Sandbox cgroups that could not be removed (and stay behind until a later sandbox host
/// finds them stale).
static REMOVAL_FAILURES: AtomicU64 = AtomicU64::new(0);

/// How many sandbox cgroups this process could not remove, in the foreground or the
/// background (each is also logged with `tracing` at warn level). They stay behind until
/// a later sandbox host, once this process is gone, removes them as stale.
pub fn cgroup_removal_failures() -> u64 {
    REMOVAL_FAILURES.load(Ordering::Relaxed)
}

/// `rmdir` of `dir`, again and again (1 ms, then doubling to 100 ms apart) while it is busy,
/// for up to [`REMOVAL_PATIENCE`]. A cgroup already gone counts as removed.
fn remove_patiently(dir: &Path) -> io::Result<()> {
    let deadline = Instant::now() + REMOVAL_PATIENCE;
    let mut pause = Duration::from_millis(1);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Hands a busy cgroup to the background remover, started on first use; where no thread can
/// be started, removes it here.
fn remove_later(dir: PathBuf) {
    static REMOVER: OnceLock<Option<mpsc::Sender<PathBuf>>> = OnceLock::new();
    let remover = REMOVER.get_or_init(|| {
        let (send, receive) = mpsc::channel::<PathBuf>();
        let started = std::thread::Builder::new().name("sandpool-cgroups".into()).spawn(move || {
            for dir in receive {
                if let Err(e) = remove_patiently(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove sandbox cgroup");
                    REMOVAL_FAILURES.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        match started {
            Ok(_) => Some(send),
            Err(e) => {
                tracing::warn!(error = %e, "no thread to remove busy cgroups in the background; removing them in place");
                None
            }
        }
    });
    let queued = remover.as_ref().and_then(|s| s.send(dir.clone()).ok());
    if queued.is_none() && remove_patiently(&dir).is_err() {
        tracing::warn!(dir = %dir.display(), "cannot remove sandbox cgroup");
        REMOVAL_FAILURES.fetch_add(1, Ordering::Relaxed);
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
