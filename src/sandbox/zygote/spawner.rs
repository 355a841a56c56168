//! A session's spawner: pid 1 of the session's pid namespace, the parent of every command,
//! and the judge of whether a session left anything behind (the untouched verdict).

use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::super::command::DEFAULT_PATH;
use super::super::landlock;
use super::super::network::NetworkWatch;
use super::super::protocol::{MAX_MESSAGE, Reply, Request, RunRequest, Usage};
use super::super::sys::{self, CommandSpec, CommandStack};
use super::rootfs::fresh_session_dirs;
use super::{StepResult, Zygote, cp, step, wait_for};

/// The size tmpfs and mqueue report for a directory holding only `.` and `..`: they count 20
/// bytes per entry (the kernel keeps it; a command cannot change it but by adding entries).
const EMPTY_DIR_SIZE: u64 = 40;

/// A run request turned into C strings, with the paths `execve` will try.
struct PreparedCommand {
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: CString,
    candidates: Vec<CString>,
}

impl PreparedCommand {
    fn new(req: &RunRequest) -> Result<Self, i32> {
        let to_c = |v: Vec<u8>| CString::new(v).map_err(|_| libc::EINVAL);
        let program = req.argv.first().cloned().ok_or(libc::EINVAL)?;
        let candidates = if program.contains(&b'/') {
            vec![to_c(program)?]
        } else {
            // Like execvp: each directory of the command's own PATH, in order.
            let path = req.env.iter().find_map(|e| e.strip_prefix(b"PATH=")).unwrap_or(DEFAULT_PATH.as_bytes());
            path.split(|&b| b == b':')
                .filter(|d| !d.is_empty())
                .map(|d| to_c([d, b"/", &program].concat()))
                .collect::<Result<_, _>>()?
        };
        Ok(PreparedCommand {
            argv: req.argv.iter().cloned().map(to_c).collect::<Result<_, _>>()?,
            envp: req.env.iter().cloned().map(to_c).collect::<Result<_, _>>()?,
            cwd: to_c(req.cwd.clone())?,
            candidates,
        })
    }
}

/// A session's spawner: a child of the zygote, pid 1 of the session's pid namespace, that
/// confines itself once (Landlock, seccomp, `no_new_privs`, one capability) so that each
/// command inherits all of it for free, starts commands, reports their end and whether they
/// left the session untouched, and kills everything on request. As its namespace's init it
/// inherits every process its commands leave behind; when it dies, they all do.
pub(super) struct Spawner {
    runner: OwnedFd,
    signals: OwnedFd,
    no_fork: Option<sys::SeccompProgram>,
    stack: CommandStack,
    running: Option<i32>,
    /// How the session directories look when the session starts (`None` if they could not
    /// be read, or hold plain directories for nested binds: then no session counts as
    /// untouched).
    pristine: Option<[SessionDir; 3]>,
    /// The sandbox's own network namespace, whose sockets and counters are session state;
    /// `None` with the host's network.
    network: Option<NetworkWatch>,
    /// The session directories, held open for their inode flags (one `ioctl` each).
    session_fds: Vec<OwnedFd>,
    /// The session's `ns_last_pid`, held open for writing.
    pid_counter: OwnedFd,
    /// The session's `kernel.{shm,msg,sem}_next_id`, set to 0 when it starts: the next System
    /// V object of each kind takes that id, as in a fresh IPC namespace, and sets it back to
    /// -1, which shows that the session made one even if it removed it since. `None` where
    /// the kernel lacks them (no `CONFIG_CHECKPOINT_RESTORE`).
    ipc_next_ids: Option<Vec<OwnedFd>>,
    /// The spawner's own settings as it started, which commands inherit (`None` if they could
    /// not be read: then no session counts as untouched).
    settings: Option<sys::OwnSettings>,
}

/// Opens `kernel.shm_next_id`, `msg_next_id` and `sem_next_id` of the session's IPC namespace
/// and sets each to 0 (see [`Spawner::no_ipc_object_made`]); `None` if this kernel has none.
fn first_ipc_ids() -> io::Result<Option<Vec<OwnedFd>>> {
    let mut files = Vec::new();
    for path in [c"/proc/sys/kernel/shm_next_id", c"/proc/sys/kernel/msg_next_id", c"/proc/sys/kernel/sem_next_id"] {
        match sys::open(path, libc::O_RDWR) {
            Ok(f) => files.push(f),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    for f in &files {
        sys::pwrite(f.as_fd(), b"0", 0)?;
    }
    Ok(Some(files))
}

/// The one capability the spawner keeps: `CAP_CHECKPOINT_RESTORE` (Linux 5.9+, number 40), or
/// `CAP_SYS_ADMIN` before it, for `ns_last_pid` and the `*_next_id` files. It never reaches a
/// command: the command's `execve` as a non-root uid, with no inheritable or ambient
/// capability and an empty bounding set, drops it.
fn pid_counter_capability(last_cap: u32) -> u32 {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_CHECKPOINT_RESTORE: u32 = 40;
    if last_cap >= CAP_CHECKPOINT_RESTORE { CAP_CHECKPOINT_RESTORE } else { CAP_SYS_ADMIN }
}

/// The directories a session can write to outside its binds, in the order `pristine` keeps.
const SESSION_DIRS: [&CStr; 3] = [c"/tmp", c"/dev/shm", c"/dev/mqueue"];

/// What [`Spawner::untouched`] compares of one session directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SessionDir {
    /// Mount, size (20 bytes per entry on tmpfs and mqueue), mode, owner and times (the
    /// time of a lease's last change is the lease's).
    stat: sys::PathStat,
    /// Its extended attribute names (a command may set `user.*` ones, or an ACL).
    xattrs: Vec<CString>,
    /// Its inode flags (the owner may set `nodump`, `noatime`, ... with `chattr`).
    flags: u32,
}

impl SessionDir {
    fn read(dir: &CStr, fd: &OwnedFd) -> Option<SessionDir> {
        let st = sys::path_stat(dir).ok()?;
        let xattrs = sys::xattr_names(dir).ok()?;
        let flags = sys::inode_flags_of(fd.as_fd()).ok()?;
        Some(SessionDir { stat: st, xattrs, flags })
    }
}

/// The session directories' state, for [`Spawner::untouched`].
fn session_dirs(fds: &[OwnedFd]) -> Option<[SessionDir; 3]> {
    let [a, b, c] = [0, 1, 2].map(|i| SessionDir::read(SESSION_DIRS[i], fds.get(i)?));
    Some([a?, b?, c?])
}

/// The pristine state of the session directories, or `None` if one holds a plain
/// directory of its own mount (the parent of a nested bind's mount point): what a command
/// adds in there does not show on the session directory, so every session gets a reset.
fn pristine_session_dirs(fds: &[OwnedFd]) -> Option<[SessionDir; 3]> {
    let dirs = session_dirs(fds)?;
    for (dir, state) in SESSION_DIRS.iter().zip(&dirs) {
        if state.stat.size <= EMPTY_DIR_SIZE {
            continue;
        }
        // Only binds' mount points may be there (a session starts with nothing else).
        let path = Path::new(std::ffi::OsStr::from_bytes(dir.to_bytes()));
        for entry in fs::read_dir(path).ok()? {
            let c_path = cp(&entry.ok()?.path()).ok()?;
            if sys::mount_id(&c_path).ok()? == state.stat.mount_id {
                return None;
            }
        }
    }
    Some(dirs)
}

impl Spawner {
    /// Runs in the freshly forked child of the zygote, pid 1 of a new pid namespace; returns
    /// the exit code. Its first message on `runner` says whether it is ready
    /// ([`Reply::ResetDone`]) or where it failed ([`Reply::SetupFailed`]).
    pub(super) fn start(runner: OwnedFd, zygote: &Zygote) -> i32 {
        sys::set_process_name(c"sandpool-spawn");
        let fail = |runner: BorrowedFd<'_>, (step, e): (String, io::Error)| {
            let reply = Reply::SetupFailed { step, errno: e.raw_os_error().unwrap_or(libc::EIO) };
            let _ = sys::send_with_fds(runner, &reply.encode(), &[]);
            1
        };
        if let Err(e) = Spawner::confine(zygote) {
            return fail(runner.as_fd(), e);
        }
        // Drop every descriptor of the zygote's (control socket, ruleset, trees) but stdio.
        let Ok(runner) = sys::keep_only_as_fd3(runner) else { return 1 };
        match Spawner::new(runner, zygote) {
            Ok(mut spawner) => {
                spawner.send(&Reply::ResetDone);
                spawner.serve()
            }
            Err((runner, e)) => fail(runner.as_fd(), e),
        }
    }

    /// Makes the session and confines the spawner for good, in this order: the highest
    /// `oom_score_adj` (which commands inherit), a mount namespace of its own with a `/proc`
    /// of the new pid namespace (`hidepid=invisible`: a process a command may not trace, the
    /// spawner first, is not even listed) and fresh session directories, then Landlock (which
    /// forbids mounting), the session's seccomp filter (on top of the sandbox's, inherited),
    /// `no_new_privs`, and no capability but the one that rewinds the pid counter and sets
    /// the next IPC ids.
    fn confine(zygote: &Zygote) -> StepResult<()> {
        // Commands inherit this; confine_spawner makes the spawner non-dumpable again
        // before any command exists.
        step("raise oom_score_adj", sys::raise_oom_score_adj())?;
        step("make the session's mount namespace", sys::unshare(libc::CLONE_NEWNS))?;
        step(
            "mount the session's /proc",
            sys::mount(
                Some(c"proc"),
                c"/proc",
                Some(c"proc"),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                Some(c"hidepid=2"),
            ),
        )?;
        fresh_session_dirs(&zygote.config, &zygote.binds)?;
        // Its working directory was the zygote's /tmp, now covered: no command child (which
        // copies it until its own chdir) should start from there.
        step("enter the session's /tmp", std::env::set_current_dir("/tmp"))?;
        // Landlock's rules name inodes: the session's own (its fresh directories and /proc),
        // in a ruleset of its own that goes with the session.
        let ruleset = match (&zygote.landlock, zygote.landlock_abi) {
            (Some(_), Some(abi)) => {
                let paths = zygote.writable_paths();
                let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
                Some(step("build the session's Landlock ruleset", landlock::build(abi, &refs))?)
            }
            _ => None,
        };
        let landlock = ruleset.as_ref().map(|l| l.fd.as_fd());
        sys::confine_spawner(landlock, Some(pid_counter_capability(zygote.config.last_cap)))
            .map_err(|(what, e)| (what.to_string(), e))?;
        // The sandbox's filter came with the fork; the session's closes what made the session.
        if let Some(f) = &zygote.filters {
            step(
                "install the session's seccomp filter",
                seccompiler::apply_filter(&f.session).map_err(|e| io::Error::other(e.to_string())),
            )?;
        }
        Ok(())
    }

    /// The spawner's state, once confined; on failure, the runner back (to report on).
    fn new(runner: OwnedFd, zygote: &Zygote) -> Result<Spawner, (OwnedFd, (String, io::Error))> {
        let parts = (|| {
            // Dispositions and the full mask come from the zygote.
            let signals = step("watch for children's ends", sys::child_signals())?;
            let network = match zygote.config.share_network {
                true => None,
                false => Some(step("watch the network namespace", NetworkWatch::open_interfaces())?),
            };
            let session_fds = step(
                "open the session directories",
                SESSION_DIRS.iter().map(|d| sys::open(d, libc::O_RDONLY | libc::O_DIRECTORY)).collect(),
            )?;
            let pid_counter = step("open ns_last_pid", sys::open(c"/proc/sys/kernel/ns_last_pid", libc::O_WRONLY))?;
            let ipc_next_ids = step("set the next System V IPC ids", first_ipc_ids())?;
            Ok((signals, network, session_fds, pid_counter, ipc_next_ids))
        })();
        let (signals, network, session_fds, pid_counter, ipc_next_ids) = match parts {
            Ok(p) => p,
            Err(e) => return Err((runner, e)),
        };
        let mut spawner = Spawner {
            runner,
            signals,
            no_fork: zygote.filters.as_ref().map(|f| f.no_fork.clone()),
            stack: CommandStack::new(),
            running: None,
            pristine: None,
            network,
            session_fds,
            pid_counter,
            ipc_next_ids,
            settings: None,
        };
        if let Err(e) = step("rewind the pid counter", spawner.rewind_pid_counter()) {
            return Err((spawner.runner, e));
        }
        spawner.pristine = pristine_session_dirs(&spawner.session_fds);
        spawner.settings = sys::OwnSettings::read().ok();
        Ok(spawner)
    }

    /// Makes the next process of the session pid 2 again, as in a fresh sandbox, so that no
    /// lease learns from its pids how many processes the one before made. Only while the
    /// spawner is alone in its namespace (`ns_last_pid` of the session's `/proc`, which needs
    /// `CAP_CHECKPOINT_RESTORE`).
    fn rewind_pid_counter(&self) -> io::Result<()> {
        sys::pwrite(self.pid_counter.as_fd(), b"1", 0).map(drop)
    }

    fn send(&self, reply: &Reply) {
        let _ = sys::send_with_fds(self.runner.as_fd(), &reply.encode(), &[]);
    }

    /// Whether the session is as it started: no process but this one, no entry added to
    /// `/tmp`, `/dev/shm` or `/dev/mqueue` (tmpfs and mqueue count 20 bytes of directory size
    /// per entry, and a session cannot remove the mount points of binds), their modes, owners,
    /// times, extended attributes and inode flags unchanged, no System V IPC object ever made,
    /// no packet through the sandbox's own network namespace (so no socket left in any state),
    /// and the spawner's own settings as they were. Processes come first: once none is left,
    /// nothing can change the rest. When all of it holds, the pid counter is rewound, so the
    /// next command is pid 2 as in a fresh sandbox.
    fn untouched(&self) -> bool {
        let Some(pristine) = &self.pristine else { return false };
        sys::surely_no_other_process()
            && session_dirs(&self.session_fds).as_ref() == Some(pristine)
            && self.no_ipc_object_made()
            && self.network.as_ref().is_none_or(NetworkWatch::quiet)
            && self.own_settings_intact()
            && self.rewind_pid_counter().is_ok()
    }

    /// Whether the session never made a System V IPC object (so none is left, and the next
    /// ids are still those of a fresh namespace); without the `*_next_id` files, whether none
    /// is left.
    fn no_ipc_object_made(&self) -> bool {
        match &self.ipc_next_ids {
            Some(files) => files.iter().all(|f| {
                let mut buf = [0u8; 8];
                matches!(sys::pread(f.as_fd(), &mut buf, 0), Ok(2) if &buf[..2] == b"0\n")
            }),
            None => matches!(sys::sysv_ipc_in_use(), Ok([0, 0, 0])),
        }
    }

    /// Whether the spawner's own settings (limits, scheduling, affinity, I/O priority, pending
    /// signals), which every later command inherits, are still as it started. The seccomp
    /// filter keeps commands from naming the spawner (pid 1); this is the wall behind it.
    fn own_settings_intact(&self) -> bool {
        self.settings.is_some() && sys::OwnSettings::read().ok() == self.settings
    }

    /// Records a reaped child; reports it if it was the running command.
    fn reaped(&mut self, pid: i32, status: i32, usage: sys::ChildUsage) {
        if Some(pid) == self.running {
            self.running = None;
            self.send(&Reply::Exited {
                status,
                usage: Usage { user_us: usage.user_us, system_us: usage.system_us, max_rss_kib: usage.max_rss_kib },
                untouched: self.untouched(),
            });
        }
    }

    /// Kills every process of the sandbox but the zygote and itself, and reaps them all (as a
    /// subreaper it is their parent), so the next command starts with nothing left running.
    fn kill_everything(&mut self) {
        loop {
            sys::kill_all_others();
            while let Ok(Some((pid, status, usage))) = sys::reap_any(true) {
                self.reaped(pid, status, usage);
            }
            if !sys::any_other_process() {
                break;
            }
        }
        sys::drain_signalfd(self.signals.as_fd());
    }

    /// Starts a command; on failure, the reply that says why.
    fn start_command(&mut self, req: RunRequest, mut fds: Vec<OwnedFd>) -> Result<(), Reply> {
        let expected = if req.has_stdin { 3 } else { 2 };
        if fds.len() != expected || self.running.is_some() {
            return Err(Reply::SpawnFailed { step: "receive the command".into(), errno: libc::EINVAL });
        }
        let stderr = fds.pop().expect("checked length");
        let stdout = fds.pop().expect("checked length");
        let stdin = fds.pop();
        let prepared = match PreparedCommand::new(&req) {
            Ok(v) => v,
            Err(errno) => return Err(Reply::SpawnFailed { step: "decode the command".into(), errno }),
        };
        let filters: Vec<&sys::SeccompProgram> = match (&self.no_fork, req.no_fork) {
            (Some(p), true) => vec![p],
            _ => Vec::new(),
        };
        let devnull = sys::borrow_stdin();
        let spec = CommandSpec {
            stdio: [stdin.as_ref().map_or(devnull, |f| f.as_fd()), stdout.as_fd(), stderr.as_fd()],
            cwd: &prepared.cwd,
            candidates: &prepared.candidates,
            argv: &prepared.argv,
            envp: &prepared.envp,
            filters: &filters,
            cpu_seconds: (req.cpu_seconds > 0).then_some(req.cpu_seconds),
        };
        match sys::spawn_command(&spec, &mut self.stack) {
            Ok(pid) => {
                self.running = Some(pid);
                Ok(())
            }
            Err(f) => Err(Reply::SpawnFailed {
                step: sys::COMMAND_STEPS.get(f.step).copied().unwrap_or("clone").to_string(),
                errno: f.error.raw_os_error().unwrap_or(libc::EIO),
            }),
        }
    }

    fn serve(&mut self) -> i32 {
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let (message, child_ended) = wait_for(&self.runner, &self.signals);
            if child_ended {
                while let Ok(Some((pid, status, usage))) = sys::reap_any(false) {
                    self.reaped(pid, status, usage);
                }
            }
            if !message {
                continue;
            }
            let mut received = Vec::new();
            let n = match sys::recv_with_fds(self.runner.as_fd(), &mut buf, &mut received) {
                Ok(0) | Err(_) => {
                    self.kill_everything();
                    return 0;
                }
                Ok(n) => n,
            };
            match Request::decode(&buf[..n]) {
                Ok(Request::Run(req)) => {
                    if let Err(reply) = self.start_command(req, received) {
                        self.send(&reply);
                    }
                }
                Ok(Request::Kill) => {
                    self.kill_everything();
                    self.send(&Reply::Killed);
                }
                _ => self.send(&Reply::SpawnFailed { step: "decode the request".into(), errno: libc::EPROTO }),
            }
        }
    }
}
