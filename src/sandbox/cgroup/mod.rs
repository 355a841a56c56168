//! Per-sandbox cgroups for the memory, process and CPU limits: cgroup v2 ([`v2`]) where our
//! own cgroup is delegated to us (or we are root) and offers the controllers, in a subtree
//! of our own; cgroup v1 ([`v1`]) where that is what the host has (a hybrid host: v2 holds
//! only `hugetlb`, `memory` and `pids` are v1); otherwise none (memory and processes then
//! fall back to rlimits, and a CPU share is not enforced).
//!
//! A sandbox's cgroups go with it. [`Sandbox::destroy`](super::Sandbox::destroy) waits until
//! they are removed; dropping a sandbox does not wait: a cgroup the kernel still holds busy
//! (its last processes being torn down) is removed by a background thread, which counts and
//! logs what it could not remove ([`cgroup_removal_failures`]).

mod v1;
mod v2;

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
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

/// Where the memory, pids and cpu controllers can be used, found once per process.
#[derive(Clone, Debug, Default)]
pub(crate) struct CgroupSupport {
    pub memory: Option<CgroupHome>,
    pub pids: Option<CgroupHome>,
    pub cpu: Option<CgroupHome>,
    /// Why a controller is unusable, for `doctor` and the isolation report.
    pub notes: Vec<String>,
    /// Why cgroup v2 is not used, and how to get it (`None` where it is used, or not mounted
    /// with the controllers at all).
    pub v2_unused: Option<String>,
    /// A cgroup file system mounted read-only (as in a container) where sandboxes' cgroups
    /// would go, if that is why none is usable.
    pub read_only: Option<PathBuf>,
}

/// Whether the file system holding `path` is mounted read-only.
fn on_read_only_mount(path: &Path) -> bool {
    rustix::fs::statvfs(path).is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
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
            for leaf in [COMMANDS, INIT_LEAF] {
                let _ = fs::remove_dir(entry.path().join(leaf));
            }
            match fs::remove_dir(entry.path()) {
                Ok(()) => tracing::info!(cgroup = %entry.path().display(), "removed a stale sandbox cgroup"),
                Err(e) => tracing::debug!(cgroup = %entry.path().display(), error = %e, "stale cgroup kept"),
            }
        }
    }
}

fn detect() -> CgroupSupport {
    let mut s = CgroupSupport::default();
    let v2 = match v2::prepare() {
        Ok(subtree) => Some(subtree),
        Err(why) => {
            if let Some(root) = v2::mount_root().filter(|r| on_read_only_mount(r)) {
                s.read_only = Some(root);
            }
            s.v2_unused = Some(why);
            None
        }
    };
    for controller in ["memory", "pids", "cpu"] {
        let mut home = None;
        if let Some(subtree) = v2.as_ref().filter(|t| t.controllers.iter().any(|c| c == controller)) {
            home = Some(CgroupHome { parent: subtree.parent.clone(), version: Enforcement::CgroupV2 });
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
            } else if is_v1 && on_read_only_mount(&v1) {
                s.notes.push(format!("{controller}: cgroup v1 at {} is mounted read-only", v1.display()));
                s.read_only.get_or_insert(v1.clone());
            } else if is_v1 {
                s.notes.push(format!("{controller}: cgroup v1 at {} is not writable by this user", v1.display()));
            } else {
                let why = s.v2_unused.clone().unwrap_or_else(|| "no cgroup v2 subtree".into());
                s.notes.push(format!("{controller}: no writable cgroup v1 hierarchy, and {why}"));
            }
        }
        if let Some(h) = &home {
            remove_stale(&h.parent);
        }
        match controller {
            "memory" => s.memory = home,
            "pids" => s.pids = home,
            _ => s.cpu = home,
        }
    }
    // A read-only mount that keeps nothing from working (v2's, on a host whose memory and
    // pids are v1 controllers) is no reason to refuse.
    if s.memory.is_some() && s.pids.is_some() {
        s.read_only = None;
    }
    s
}

/// The host's cgroup support, probed once.
pub(crate) fn support() -> &'static CgroupSupport {
    static SUPPORT: OnceLock<CgroupSupport> = OnceLock::new();
    SUPPORT.get_or_init(detect)
}

/// The commands' own memory cgroup, below the sandbox's: it carries the memory limit, and
/// holds the commands alone, so that out of memory the kernel picks its victim among them,
/// whatever a command did to its own `oom_score_adj`; the init and the spawners stay above
/// it, under the sandbox's cgroup, whose limit is the commands' plus [`OWN_MEMORY_MARGIN`].
///
/// On v1, the init and spawners stay in the sandbox's cgroup, and each command child joins
/// this one before its `execve`, by writing `0` to its `tasks` file through a descriptor the
/// host opened (a thread moving itself takes no global lock on v1). On v2, a cgroup that
/// hands controllers down holds no process, so the init moves to a leaf of its own,
/// [`INIT_LEAF`], and each command is born in this one (`clone3(CLONE_INTO_CGROUP)` from
/// its spawner; a move would take the threadgroup lock, whose RCU grace period costs
/// milliseconds when moves are sparse): see [`SandboxCgroups::split_for_commands`].
pub(crate) const COMMANDS: &str = "cmd";

/// The init's and the spawners' own leaf below a sandbox's v2 cgroup (see [`COMMANDS`]).
const INIT_LEAF: &str = "init";

/// What the sandbox's init and spawner may use above their commands' limit.
pub(crate) const OWN_MEMORY_MARGIN: u64 = 32 << 20;

/// A sandbox's own cgroups, removed on drop (once its processes are gone).
#[derive(Debug, Default)]
pub(crate) struct SandboxCgroups {
    /// Parents before their children (removed the other way round).
    dirs: Vec<(PathBuf, Enforcement)>,
    /// The commands' own memory cgroup (v1), if any: see [`COMMANDS`].
    commands: Option<PathBuf>,
    /// The sandbox's v2 cgroup and the memory limit its commands' cgroup gets once split
    /// (see [`SandboxCgroups::split_for_commands`]).
    v2_split: Option<(PathBuf, u64)>,
    /// Whether [`SandboxCgroups::split_for_commands`] made it.
    split_made: bool,
    /// The `pids.max` file and the limit written there.
    process_limit: Option<(PathBuf, u64)>,
    /// Whether [`SandboxCgroups::make_room_for_a_spare`] did (`None`: not asked yet).
    spare_room: Option<bool>,
    /// Where the memory cgroup counts its OOM kills (v2 `memory.events`, v1
    /// `memory.oom_control`).
    oom_events: Option<PathBuf>,
    pub memory: Option<Enforcement>,
    pub pids: Option<Enforcement>,
    pub cpu: Option<Enforcement>,
}

impl SandboxCgroups {
    /// Makes the sandbox's cgroups and sets their limits (`cpus`: a CPU share, if any).
    pub(crate) fn create(
        memory_bytes: u64,
        max_processes: u64,
        cpus: Option<f64>,
    ) -> Result<Self, (String, io::Error)> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name =
            format!("sb-{}-{}", rustix::process::getpid().as_raw_nonzero(), NEXT.fetch_add(1, Ordering::Relaxed));
        let support = support();
        let mut cg = SandboxCgroups::default();
        if let Some(home) = &support.memory {
            let dir = cg.dir(home, &name)?;
            match home.version {
                Enforcement::CgroupV2 => {
                    v2::limit_memory(&dir, memory_bytes)?;
                    cg.oom_events = Some(dir.join("memory.events"));
                    cg.v2_split = Some((dir, memory_bytes));
                }
                _ => {
                    let commands = dir.join(COMMANDS);
                    fs::create_dir(&commands).map_err(|e| (format!("create {}", commands.display()), e))?;
                    cg.dirs.push((commands.clone(), home.version));
                    let commands_limit = v1::limit_memory(&commands, memory_bytes)?;
                    v1::limit_processes(&dir, commands_limit + OWN_MEMORY_MARGIN)?;
                    cg.oom_events = Some(commands.join("memory.oom_control"));
                    cg.commands = Some(commands);
                }
            }
            cg.memory = Some(home.version);
        }
        if let Some(home) = &support.pids {
            let dir = cg.dir(home, &name)?;
            fs::write(dir.join("pids.max"), max_processes.to_string()).map_err(|e| ("set pids.max".into(), e))?;
            cg.process_limit = Some((dir.join("pids.max"), max_processes));
            cg.pids = Some(home.version);
        }
        if let (Some(home), Some(cpus)) = (&support.cpu, cpus) {
            let dir = cg.dir(home, &name)?;
            match home.version {
                Enforcement::CgroupV2 => v2::limit_cpu(&dir, cpus)?,
                _ => v1::limit_cpu(&dir, cpus)?,
            }
            cg.cpu = Some(home.version);
        }
        Ok(cg)
    }

    /// The sandbox's cgroup `name` under `home`, made on first use (v2 has one for every
    /// controller, v1 one per hierarchy).
    fn dir(&mut self, home: &CgroupHome, name: &str) -> Result<PathBuf, (String, io::Error)> {
        let dir = home.parent.join(name);
        if !self.dirs.iter().any(|(d, _)| *d == dir) {
            fs::create_dir(&dir).map_err(|e| (format!("create {}", dir.display()), e))?;
            self.dirs.push((dir.clone(), home.version));
        }
        Ok(dir)
    }

    /// The sandbox's v2 cgroup, opened for `clone3(CLONE_INTO_CGROUP)`: the zygote starts in
    /// it, so no process of the sandbox ever runs outside it.
    pub(crate) fn v2_dir(&self) -> Option<io::Result<OwnedFd>> {
        let (dir, _) = self.dirs.iter().find(|(_, v)| *v == Enforcement::CgroupV2)?;
        let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC;
        Some(rustix::fs::open(dir, flags, rustix::fs::Mode::empty()).map_err(io::Error::from))
    }

    /// The v1 cgroups' `tasks` files, handed to the sandbox's user (`uid`, `gid`), which the
    /// zygote joins itself (see [`v1::self_join_file`]); not the commands' own.
    pub(crate) fn self_join_files(&self, uid: u32, gid: u32) -> Result<Vec<PathBuf>, (String, io::Error)> {
        let v1_dirs = self
            .dirs
            .iter()
            .filter(|(dir, version)| *version == Enforcement::CgroupV1 && Some(dir) != self.commands.as_ref());
        v1_dirs.map(|(dir, _)| v1::self_join_file(dir, uid, gid)).collect()
    }

    /// The commands' own cgroup's `tasks` file, opened for writing by the host (the kernel
    /// checks the opener's credentials), for each command child to join itself by; `None`
    /// where there is none (see [`COMMANDS`]).
    pub(crate) fn commands_join_file(&self) -> Option<io::Result<OwnedFd>> {
        let tasks = self.commands.as_ref()?.join("tasks");
        let flags = rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC;
        Some(rustix::fs::open(&tasks, flags, rustix::fs::Mode::empty()).map_err(io::Error::from))
    }

    /// Makes the commands' own cgroup where memory is a v2 controller (see [`COMMANDS`]), for a
    /// zygote born in the sandbox's cgroup: [`INIT_LEAF`] and [`COMMANDS`] below it, the
    /// `cgroup.procs` of the commands' cgroup and of the sandbox's handed to its user (`uid`,
    /// `gid`): a spawner's `CLONE_INTO_CGROUP` needs its own credentials to allow a move into
    /// the destination and into the common parent of source and destination. The zygote then
    /// moves itself into its leaf, and [`Self::finish_split`] hands memory down. `None` where
    /// memory is not a v2 controller.
    pub(crate) fn split_for_commands(
        &mut self,
        uid: u32,
        gid: u32,
    ) -> Option<Result<CommandsSplit, (String, io::Error)>> {
        let (dir, _) = self.v2_split.clone()?;
        Some((|| {
            let init = dir.join(INIT_LEAF);
            let commands = dir.join(COMMANDS);
            for leaf in [&init, &commands] {
                fs::create_dir(leaf).map_err(|e| (format!("create {}", leaf.display()), e))?;
                self.dirs.push((leaf.clone(), Enforcement::CgroupV2));
            }
            self.split_made = true;
            for procs in [dir.join("cgroup.procs"), commands.join("cgroup.procs")] {
                std::os::unix::fs::chown(&procs, Some(uid), Some(gid))
                    .map_err(|e| (format!("hand {} to the sandbox", procs.display()), e))?;
            }
            let open = |path: &Path, flags: rustix::fs::OFlags| {
                rustix::fs::open(path, flags | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty())
                    .map_err(|e| (format!("open {}", path.display()), io::Error::from(e)))
            };
            Ok(CommandsSplit {
                commands_dir: open(&commands, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY)?,
                init_procs: open(&init.join("cgroup.procs"), rustix::fs::OFlags::WRONLY)?,
            })
        })())
    }

    /// Once the zygote has left the sandbox's v2 cgroup for its leaf: enables memory in the
    /// sandbox's `cgroup.subtree_control`, gives the commands' cgroup the limit and the
    /// sandbox's cgroup the limit plus [`OWN_MEMORY_MARGIN`].
    pub(crate) fn finish_split(&self) -> Result<(), (String, io::Error)> {
        let Some((dir, bytes)) = self.v2_split.as_ref().filter(|_| self.split_made) else { return Ok(()) };
        let control = dir.join("cgroup.subtree_control");
        fs::write(&control, "+memory").map_err(|e| (format!("enable memory in {}", control.display()), e))?;
        v2::limit_memory(&dir.join(COMMANDS), *bytes)?;
        v2::limit_memory(dir, bytes + OWN_MEMORY_MARGIN)
    }

    /// Raises the process limit by one, for the sandbox's own next session made ahead of need
    /// (a spare spawner), so that commands keep the whole of theirs. `false` where no cgroup
    /// counts processes (then no spare is made: it would take one of the commands').
    pub(crate) fn make_room_for_a_spare(&mut self) -> bool {
        if let Some(made) = self.spare_room {
            return made;
        }
        let Some((file, limit)) = &self.process_limit else { return false };
        let made = match fs::write(file, (limit + 1).to_string()) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "cannot make room for a spare session");
                false
            }
        };
        self.spare_room = Some(made);
        made
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

    /// Removes the cgroups, waiting (up to [`REMOVAL_PATIENCE`]) while the kernel finishes
    /// tearing their last processes down; their processes must be dead.
    pub(crate) fn remove(&mut self) -> io::Result<()> {
        self.kill_stragglers();
        let mut last = Ok(());
        for (dir, _) in self.dirs.drain(..).rev() {
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
        self.kill_stragglers();
        for (dir, _) in self.dirs.drain(..).rev() {
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

/// The commands' own v2 cgroup, opened for the zygote (see
/// [`SandboxCgroups::split_for_commands`]).
#[derive(Debug)]
pub(crate) struct CommandsSplit {
    /// The commands' cgroup directory, for the spawners' `clone3(CLONE_INTO_CGROUP)`.
    pub commands_dir: OwnedFd,
    /// The init's own leaf's `cgroup.procs`, opened for writing by the host (the kernel checks
    /// the opener's credentials and cgroup namespace), which the zygote writes `0` to.
    pub init_procs: OwnedFd,
}

/// The files a sandbox's usage is read from, held open so that each reading is one `pread`.
#[derive(Debug, Default)]
pub(crate) struct UsageFiles {
    /// v2 `cpu.stat`.
    cpu_stat: Option<OwnedFd>,
    /// The v2 cgroup directory, where memory is a v2 controller (for `memory.peak`).
    memory_dir: Option<OwnedFd>,
    /// Where the memory cgroup counts its OOM kills.
    oom_events: Option<OwnedFd>,
}

/// A watermark of the sandbox's memory taken from one moment on: a `memory.peak` descriptor
/// of its own, reset when opened (Linux 6.12+ keeps the peak per descriptor). The cgroup's
/// own peak is of its whole life, earlier leases of the sandbox included, and is never used.
#[derive(Debug)]
pub(crate) struct PeakSince(OwnedFd);

impl PeakSince {
    /// The peak since it was taken, bytes.
    pub(crate) fn read(&self) -> Option<u64> {
        read_file(&self.0)?.trim().parse().ok()
    }
}

fn read_file(fd: &OwnedFd) -> Option<String> {
    let mut buf = [0u8; 1024];
    let n = rustix::io::pread(fd, &mut buf, 0).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

impl UsageFiles {
    /// The CPU time the sandbox has used, µs (`usage_usec` of `cpu.stat`).
    pub(crate) fn cpu_usage_us(&self) -> Option<u64> {
        let text = read_file(self.cpu_stat.as_ref()?)?;
        text.lines().find_map(|l| l.strip_prefix("usage_usec ")).and_then(|v| v.trim().parse().ok())
    }

    /// How many processes of the sandbox the kernel has killed for memory, ever (`oom_kill`
    /// of the memory cgroup's events); `None` without a memory cgroup.
    pub(crate) fn oom_kills(&self) -> Option<u64> {
        let text = read_file(self.oom_events.as_ref()?)?;
        text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|v| v.trim().parse().ok())
    }

    /// Starts a watermark of the sandbox's memory from now on; `None` where the kernel keeps
    /// no peak per descriptor (before 6.12) or memory is not a v2 controller.
    pub(crate) fn peak_from_now(&self) -> Option<PeakSince> {
        let flags = rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC;
        let fd =
            rustix::fs::openat(self.memory_dir.as_ref()?, c"memory.peak", flags, rustix::fs::Mode::empty()).ok()?;
        // Any write resets this descriptor's peak to the current use; a kernel that cannot
        // refuses it.
        rustix::io::write(&fd, b"reset").ok()?;
        Some(PeakSince(fd))
    }
}

impl SandboxCgroups {
    /// Opens the files its usage is read from, where its cgroups keep them.
    pub(crate) fn usage_files(&self) -> UsageFiles {
        let open = |path: &Path, flags: rustix::fs::OFlags| {
            rustix::fs::open(path, flags | rustix::fs::OFlags::CLOEXEC, rustix::fs::Mode::empty()).ok()
        };
        let mut files = UsageFiles {
            oom_events: self.oom_events.as_ref().and_then(|p| open(p, rustix::fs::OFlags::RDONLY)),
            ..UsageFiles::default()
        };
        if let Some((dir, _)) = self.dirs.iter().find(|(_, v)| *v == Enforcement::CgroupV2) {
            files.cpu_stat = open(&dir.join("cpu.stat"), rustix::fs::OFlags::RDONLY);
            if self.memory == Some(Enforcement::CgroupV2) {
                files.memory_dir = open(dir, rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY);
            }
        }
        files
    }

    /// Kills whatever is left in the v2 cgroup (`cgroup.kill`): normally nothing, as the
    /// sandbox's processes die with its init.
    fn kill_stragglers(&self) {
        for (dir, _) in self.dirs.iter().filter(|(_, v)| *v == Enforcement::CgroupV2) {
            v2::kill_all(dir);
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
