//! cgroup v2 as systemd delegates it: a cgroup of our own (a `Delegate=yes` unit, a user's
//! `user@UID.service`, or any cgroup when we are root) in which we make a subtree.
//!
//! cgroup v2 lets a non-root cgroup either hold processes or hand controllers down to
//! children, not both ("no internal processes"). So where our cgroup holds processes,
//! [`prepare`] first moves every process of it into a leaf, `sandpool-host`, then enables
//! the controllers in it and in `sandpool`, under which each sandbox gets its cgroup:
//!
//! ```text
//! <our cgroup>/                 subtree_control: memory pids cpu
//!     sandpool-host/            the processes that were in <our cgroup>, sandpool's host among them
//!     sandpool/                 subtree_control: memory pids cpu
//!         sb-<pid>-<n>/         one sandbox: memory.max, memory.swap.max, pids.max, cpu.max
//! ```
//!
//! A second host started in `sandpool-host` finds the subtree ready and uses it. In the root
//! cgroup (which may hold processes and hand controllers down) nothing is moved.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The leaf the processes of our cgroup move into.
const HOST_LEAF: &str = "sandpool-host";
/// The cgroup that sandboxes' cgroups go under.
const SANDBOXES: &str = "sandpool";
/// The controllers a sandbox uses; memory and pids are needed, cpu is used where offered.
const NEEDED: [&str; 2] = ["memory", "pids"];

/// Where cgroup v2 is mounted, if it is.
pub(super) fn mount_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(PathBuf::from)
        .find(|m| m.join("cgroup.controllers").exists())
}

/// The v2 cgroup this process lives in, if v2 is mounted.
pub(super) fn own_dir() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(mount_root()?.join(rel.trim_start_matches('/')))
}

/// The controllers listed in `dir`'s `file` (`cgroup.controllers` or `cgroup.subtree_control`).
fn listed(dir: &Path, file: &str) -> Vec<String> {
    fs::read_to_string(dir.join(file)).map(|t| t.split_whitespace().map(str::to_string).collect()).unwrap_or_default()
}

/// Whether `path` may be written by this process (its effective ids).
fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    rustix::fs::accessat(rustix::fs::CWD, c.as_c_str(), rustix::fs::Access::WRITE_OK, rustix::fs::AtFlags::EACCESS)
        .is_ok()
}

/// A subtree ready for sandboxes' cgroups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Subtree {
    /// The cgroup sandboxes' cgroups go under.
    pub parent: PathBuf,
    /// The controllers enabled for them (memory and pids, and cpu where offered).
    pub controllers: Vec<String>,
}

/// Makes (or finds) the subtree for sandboxes in our cgroup, moving our cgroup's processes
/// into a leaf where the no-internal-processes rule requires; or says why it cannot, and how
/// to get it.
pub(super) fn prepare() -> Result<Subtree, String> {
    let root = mount_root().ok_or("cgroup v2 is not mounted")?;
    let own = own_dir().ok_or("this process has no cgroup v2 entry in /proc/self/cgroup")?;
    // An earlier host of this cgroup made the subtree and moved us into its leaf.
    if own.file_name().is_some_and(|n| n == HOST_LEAF)
        && let Some(base) = own.parent()
        && base.join(SANDBOXES).is_dir()
    {
        return ready(&base.join(SANDBOXES));
    }
    let offered = listed(&own, "cgroup.controllers");
    if !NEEDED.iter().all(|c| offered.iter().any(|o| o == c)) {
        return Err(format!(
            "cgroup v2: {} offers [{}], not memory and pids (they are cgroup v1 controllers here, or \
             not delegated to this cgroup)",
            own.display(),
            offered.join(" ")
        ));
    }
    let uid = rustix::process::geteuid().as_raw();
    if !(writable(&own) && writable(&own.join("cgroup.procs")) && writable(&own.join("cgroup.subtree_control"))) {
        return Err(format!(
            "cgroup v2: {} is not delegated to uid {uid}; run sandpool as root, in a unit with \
             Delegate=yes, or under `systemd-run --user --scope -p Delegate=yes sandpool ...`",
            own.display()
        ));
    }
    let wanted: Vec<&str> = ["memory", "pids", "cpu"].into_iter().filter(|c| offered.iter().any(|o| o == c)).collect();
    let said = |(what, e): (String, io::Error)| format!("cgroup v2: {what}: {e}");
    if own == root {
        enable(&own, &wanted).map_err(said)?;
    } else {
        // A process started in our cgroup between the move and the enabling makes the kernel
        // refuse it (EBUSY): move again.
        let mut attempts = 0;
        loop {
            if !NEEDED.iter().all(|c| listed(&own, "cgroup.subtree_control").iter().any(|e| e == c)) {
                move_processes_to_leaf(&own)?;
            }
            match enable(&own, &wanted) {
                Ok(()) => break,
                Err((_, e)) if attempts < 4 && e.raw_os_error() == Some(libc::EBUSY) => attempts += 1,
                Err(e) => return Err(said(e)),
            }
        }
    }
    let parent = own.join(SANDBOXES);
    match fs::create_dir(&parent) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cgroup v2: cannot create {}: {e}", parent.display())),
    }
    enable(&parent, &wanted).map_err(said)?;
    ready(&parent)
}

/// The subtree at `parent`, if it hands down what sandboxes need.
fn ready(parent: &Path) -> Result<Subtree, String> {
    let controllers = listed(parent, "cgroup.subtree_control");
    if !NEEDED.iter().all(|c| controllers.iter().any(|e| e == c)) || !writable(parent) {
        return Err(format!("cgroup v2: {} does not hand memory and pids down, or is not writable", parent.display()));
    }
    Ok(Subtree { parent: parent.to_path_buf(), controllers })
}

/// Moves every process of cgroup `dir` into its leaf [`HOST_LEAF`], this process among them,
/// so that `dir` may hand controllers down. Processes that start meanwhile are moved on a
/// later round.
fn move_processes_to_leaf(dir: &Path) -> Result<(), String> {
    let leaf = dir.join(HOST_LEAF);
    match fs::create_dir(&leaf) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cgroup v2: cannot create {}: {e}", leaf.display())),
    }
    for _ in 0..16 {
        let procs = fs::read_to_string(dir.join("cgroup.procs"))
            .map_err(|e| format!("cgroup v2: cannot read {}/cgroup.procs: {e}", dir.display()))?;
        if procs.trim().is_empty() {
            tracing::info!(cgroup = %dir.display(), leaf = %leaf.display(), "moved the cgroup's processes into a leaf");
            return Ok(());
        }
        for pid in procs.lines() {
            match fs::write(leaf.join("cgroup.procs"), pid) {
                Ok(()) => {}
                // Gone meanwhile.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => {
                    return Err(format!("cgroup v2: cannot move process {pid} into {}: {e}", leaf.display()));
                }
            }
        }
    }
    Err(format!("cgroup v2: processes keep appearing in {}; cannot empty it", dir.display()))
}

/// Enables `controllers` in `dir`'s `cgroup.subtree_control`: memory and pids must take, cpu
/// may fail (a real-time thread in the subtree keeps it off on older kernels).
fn enable(dir: &Path, controllers: &[&str]) -> Result<(), (String, io::Error)> {
    let control = dir.join("cgroup.subtree_control");
    let enabled = listed(dir, "cgroup.subtree_control");
    for c in controllers.iter().filter(|c| !enabled.iter().any(|e| e == *c)) {
        if let Err(e) = fs::write(&control, format!("+{c}")) {
            if NEEDED.contains(c) {
                return Err((format!("cannot enable {c} in {}", control.display()), e));
            }
            tracing::info!(controller = c, cgroup = %dir.display(), error = %e, "controller not enabled");
        }
    }
    Ok(())
}

/// Sets a sandbox's memory limit: `memory.max`, and no swap (`memory.swap.max` 0, where the
/// kernel has swap accounting): the limit is on memory, not memory that spills to disk. v2
/// charges socket buffers to `memory.max` too.
pub(super) fn limit_memory(dir: &Path, bytes: u64) -> Result<(), (String, io::Error)> {
    fs::write(dir.join("memory.max"), bytes.to_string()).map_err(|e| ("set memory.max".into(), e))?;
    let _ = fs::write(dir.join("memory.swap.max"), "0");
    Ok(())
}

/// The period of `cpu.max`, µs.
const CPU_PERIOD_US: u64 = 100_000;

/// Sets a sandbox's CPU share: `cpu.max`, `cpus` CPUs' worth of time per 100 ms period.
pub(super) fn limit_cpu(dir: &Path, cpus: f64) -> Result<(), (String, io::Error)> {
    let quota = ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000);
    fs::write(dir.join("cpu.max"), format!("{quota} {CPU_PERIOD_US}")).map_err(|e| ("set cpu.max".into(), e))
}

/// Moves process `pid` (and so all its future children) into the cgroup `dir`.
pub(super) fn attach(dir: &Path, pid: i32) -> Result<(), (String, io::Error)> {
    fs::write(dir.join("cgroup.procs"), pid.to_string()).map_err(|e| (format!("attach to {}", dir.display()), e))
}

/// Kills every process left in the cgroup `dir` at once (`cgroup.kill`, Linux 5.14+; nothing
/// where the kernel lacks it).
pub(super) fn kill_all(dir: &Path) {
    let _ = fs::write(dir.join("cgroup.kill"), "1");
}
