//! A session's spawner: pid 1 of the session's pid namespace and the parent of every command.
//! After each command it asks the session's state ([`SessionState`]) whether the session is
//! still as it started (the untouched verdict), and says so with the command's end.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::mount::MountFlags;
use rustix::thread::UnshareFlags;

use super::super::channel;
use super::super::command::DEFAULT_PATH;
use super::super::confine::landlock;
use super::super::policy::Requirement;
use super::super::protocol::{LandlockEnforcement, MAX_MESSAGE, Reply, Request, RunRequest, SpawnStep, Usage};
use super::super::sys::{self, CommandSpec, CommandStack};
use super::creds::{confine_spawner, pid_counter_capability, raise_oom_score_adj};
use super::rootfs::fresh_session_dirs;
use super::session::SessionState;
use super::{StepResult, Zygote, step, wait_for};

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
    /// `/dev/null`, a command's stdin when it has none.
    devnull: OwnedFd,
    no_fork: Option<sys::SeccompProgram>,
    stack: CommandStack,
    running: Option<i32>,
    /// What the verdict after each command compares.
    session: SessionState,
}

impl Spawner {
    /// Runs in the freshly forked child of the zygote, pid 1 of a new pid namespace; returns
    /// the exit code. Its first message on `runner` says whether it is ready
    /// ([`Reply::ResetDone`]) or where it failed ([`Reply::SetupFailed`]).
    pub(super) fn start(runner: OwnedFd, zygote: &mut Zygote) -> i32 {
        let _ = rustix::thread::set_name(c"sandpool-spawn");
        let fail = |runner: BorrowedFd<'_>, (step, e): (String, io::Error)| {
            let reply = Reply::SetupFailed { step, errno: e.raw_os_error().unwrap_or(libc::EIO) };
            let _ = channel::send(runner, &reply.encode(), &[]);
            1
        };
        let landlock = match Spawner::confine(zygote) {
            Ok(landlock) => landlock,
            Err(e) => return fail(runner.as_fd(), e),
        };
        // Close every descriptor of the zygote's (its control socket, signals, trees) but
        // /dev/null: the spawner keeps only what it owns.
        let devnull = zygote.close_descriptors();
        match Spawner::new(runner, devnull, zygote) {
            Ok(mut spawner) => {
                spawner.send(&Reply::ResetDone { landlock });
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
    fn confine(zygote: &Zygote) -> StepResult<LandlockEnforcement> {
        // Commands inherit this; confine_spawner makes the spawner non-dumpable again
        // before any command exists.
        step("raise oom_score_adj", raise_oom_score_adj())?;
        step("make the session's mount namespace", sys::unshare_namespaces(UnshareFlags::NEWNS))?;
        step(
            "mount the session's /proc",
            rustix::mount::mount(
                c"proc",
                c"/proc",
                c"proc",
                MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                c"hidepid=2",
            )
            .map_err(io::Error::from),
        )?;
        fresh_session_dirs(&zygote.config, &zygote.binds)?;
        // Its working directory was the zygote's /tmp, now covered: no command child (which
        // copies it until its own chdir) should start from there.
        step("enter the session's /tmp", std::env::set_current_dir("/tmp"))?;
        // Landlock's rules name inodes: the session's own (its fresh directories and /proc),
        // in a ruleset of its own that goes with the session.
        let ruleset = match (zygote.landlock_builds, zygote.landlock_abi) {
            (true, Some(abi)) => {
                let paths = zygote.writable_paths();
                let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
                let built = landlock::build(abi, zygote.config.landlock, &refs);
                Some(step("build the session's Landlock ruleset", built)?)
            }
            _ => None,
        };
        let restrict = || match ruleset {
            Some(ruleset) => ruleset.restrict_self(),
            None => Ok(LandlockEnforcement::None),
        };
        let landlock = confine_spawner(pid_counter_capability(zygote.config.last_cap), restrict)
            .map_err(|(what, e)| (what.to_string(), e))?;
        if zygote.config.landlock == Requirement::Required && landlock != LandlockEnforcement::Full {
            return Err(("enforce Landlock in full".into(), io::Error::from_raw_os_error(libc::EOPNOTSUPP)));
        }
        // The sandbox's filter came with the fork; the session's closes what made the session.
        if let Some(f) = &zygote.filters {
            step(
                "install the session's seccomp filter",
                seccompiler::apply_filter(&f.session).map_err(|e| io::Error::other(e.to_string())),
            )?;
        }
        Ok(landlock)
    }

    /// The spawner's state, once confined; on failure, the runner back (to report on).
    fn new(runner: OwnedFd, devnull: OwnedFd, zygote: &Zygote) -> Result<Spawner, (OwnedFd, (String, io::Error))> {
        // Dispositions and the full mask come from the zygote.
        let signals = match step("watch for children's ends", sys::child_signals()) {
            Ok(s) => s,
            Err(e) => return Err((runner, e)),
        };
        let session = match SessionState::start(zygote.config.share_network) {
            Ok(s) => s,
            Err(e) => return Err((runner, e)),
        };
        Ok(Spawner {
            runner,
            signals,
            devnull,
            no_fork: zygote.filters.as_ref().map(|f| f.no_fork.clone()),
            stack: CommandStack::new(),
            running: None,
            session,
        })
    }

    fn send(&self, reply: &Reply) {
        let _ = channel::send(self.runner.as_fd(), &reply.encode(), &[]);
    }

    /// Records a reaped child; reports it if it was the running command.
    fn reaped(&mut self, pid: i32, status: i32, usage: sys::ChildUsage) {
        if Some(pid) == self.running {
            self.running = None;
            self.send(&Reply::Exited {
                status,
                usage: Usage { user_us: usage.user_us, system_us: usage.system_us, max_rss_kib: usage.max_rss_kib },
                untouched: self.session.untouched(),
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
        channel::drain(self.signals.as_fd());
    }

    /// Starts a command; on failure, the reply that says why.
    fn start_command(&mut self, req: RunRequest, mut fds: Vec<OwnedFd>) -> Result<(), Reply> {
        let expected = if req.has_stdin { 3 } else { 2 };
        if fds.len() != expected || self.running.is_some() {
            return Err(Reply::SpawnFailed { step: SpawnStep::Receive, errno: libc::EINVAL });
        }
        let stderr = fds.pop().expect("checked length");
        let stdout = fds.pop().expect("checked length");
        let stdin = fds.pop();
        let prepared = match PreparedCommand::new(&req) {
            Ok(v) => v,
            Err(errno) => return Err(Reply::SpawnFailed { step: SpawnStep::Decode, errno }),
        };
        let filters: Vec<&sys::SeccompProgram> = match (&self.no_fork, req.no_fork) {
            (Some(p), true) => vec![p],
            _ => Vec::new(),
        };
        let spec = CommandSpec {
            stdio: [stdin.as_ref().unwrap_or(&self.devnull).as_fd(), stdout.as_fd(), stderr.as_fd()],
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
            Err(f) => Err(Reply::SpawnFailed { step: f.step, errno: f.error.raw_os_error().unwrap_or(libc::EIO) }),
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
            let n = match channel::recv(self.runner.as_fd(), &mut buf, &mut received) {
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
                _ => self.send(&Reply::SpawnFailed { step: SpawnStep::Decode, errno: libc::EPROTO }),
            }
        }
    }
}
