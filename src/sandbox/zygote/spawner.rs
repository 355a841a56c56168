//! A session's spawner: pid 1 of the session's pid namespace and the parent of every command.
//! After each command it asks the session's state ([`SessionState`]) whether the session is
//! still as it started (the untouched verdict), and says so with the command's end.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};
use rustix::thread::UnshareFlags;

use super::super::channel;
use super::super::command::DEFAULT_PATH;
use super::super::confine::landlock;
use super::super::policy::Requirement;
use super::super::protocol::{
    CommandsCgroup, LandlockEnforcement, Leftover, MAX_MESSAGE, Reply, Request, RunRequest, RuntimeReport, SpawnStep,
    Usage,
};
use super::super::sys::{self, CommandSpec, CommandStack};
use super::creds::{OomScore, confine_spawner, pid_counter_capability};
use super::net::NetworkWatch;
use super::rootfs::SpareDirs;
use super::rootfs::{fresh_session_dirs, mount_proc};
use super::session::SessionState;
use super::template::{Served, StartWith, TEMPLATE_PID, Template, is_own_child};
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

/// Most commands one session runs at once: each holds a status pipe in the spawner.
const MAX_CHILDREN: usize = 64;

/// A command the spawner started and has not reaped yet.
struct RunningChild {
    /// Its pid, which is also its process group's (it starts a session of its own).
    pid: i32,
    /// The host's name for it.
    token: u64,
    /// Where its `Exited` goes: the write end of a pipe (a socket passed with `SCM_RIGHTS`
    /// would cost each command the kernel's in-flight socket accounting).
    status: OwnedFd,
    /// When it runs past its timeout.
    deadline: Option<Instant>,
    /// Whether the spawner killed it for that.
    timed_out: bool,
    /// Whether the template served it (its parent, which reports its end).
    served: bool,
}

/// How long a kill goes round a command's process group at most (see
/// [`Spawner::signal_group`]).
const GROUP_KILL_BOUND: Duration = Duration::from_millis(500);

/// A session's spawner: a child of the zygote, pid 1 of the session's pid namespace, that
/// confines itself once (Landlock, seccomp, `no_new_privs`, one capability) so that each
/// command inherits all of it for free, starts commands (several may run at once), kills a
/// command's process group on request or at its timeout, reports each command's end on its
/// own status pipe with whether it left the session untouched, and kills everything when
/// the host hangs up. As its namespace's init it inherits every process its commands leave
/// behind; when it dies, they all do.
pub(super) struct Spawner {
    runner: OwnedFd,
    signals: OwnedFd,
    /// `/dev/null`, a command's stdio where the host gave none.
    devnull: OwnedFd,
    no_fork: Vec<sys::SeccompProgram>,
    /// The commands' own cgroup, which each command child joins or is born in (see
    /// `cgroup::COMMANDS`), where the sandbox has one.
    commands_cgroup: Option<(CommandsCgroup, OwnedFd)>,
    stack: CommandStack,
    /// Where it leaves the command child it is waiting for, which the zygote kills if it is
    /// held before its `execve` (see [`sys::VforkWatch`]).
    vfork_watch: Arc<sys::VforkWatch>,
    /// Its `oom_score_adj`: the highest for each clone of a command, its own otherwise.
    oom_score: OomScore,
    children: Vec<RunningChild>,
    /// While a kill goes round a process group, the ends reaped meanwhile, reported once the
    /// group is gone (so an `Exited` after a kill means nothing of the group is left alive,
    /// but a zombie or a process already dying when the kill gave up going round).
    held: Option<Vec<(i32, i32, sys::ChildUsage)>>,
    /// What the verdict after each command compares.
    session: SessionState,
    /// `Run` requests received this session (what the host counts as sent, once none is
    /// on its way).
    commands_received: u64,
    /// Whether a command was given a terminal: the host may still hold its near end, so the
    /// session is never again as it started.
    gave_a_terminal: bool,
    /// The runtime's template, until it is reaped (`None` without a runtime, or once it
    /// failed to start or was reaped: commands are then exec'd, as they are once it is
    /// retired).
    template: Option<Template>,
    /// Whether the session's template started (then it is part of the session's state; one
    /// that could not start leaves a session like one without a runtime).
    has_runtime: bool,
    /// Whether a session whose template served commands may be handed on untouched.
    share_template: bool,
    /// Its first message (`ResetDone`: ready, with what it enforces), sent again after each
    /// reset in place.
    ready: Vec<u8>,
}

/// A pseudo-terminal of the session's devpts: the near end (the master) goes to the host,
/// the far end is the command's.
struct Terminal {
    near: OwnedFd,
    far: OwnedFd,
}

impl Terminal {
    /// Opens one of `[rows, cols]`:
    /// [`posix_openpt(3)`](https://man7.org/linux/man-pages/man3/posix_openpt.3.html) on the
    /// session's `/dev/ptmx`, `unlockpt`, `TIOCSWINSZ`, and the far end through `TIOCGPTPEER`
    /// (no path lookup, so no other devpts can answer).
    fn open([rows, cols]: [u16; 2]) -> io::Result<Terminal> {
        use rustix::pty::OpenptFlags;
        let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
        let near = rustix::pty::openpt(flags)?;
        rustix::pty::unlockpt(&near)?;
        let size = rustix::termios::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        rustix::termios::tcsetwinsize(&near, size)?;
        let far = rustix::pty::ioctl_tiocgptpeer(&near, flags)?;
        Ok(Terminal { near, far })
    }
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
        let (landlock, oom_score) = match Spawner::confine(zygote) {
            Ok(confined) => confined,
            Err(e) => return fail(runner.as_fd(), e),
        };
        // The watch of the network namespace it was forked into, before the zygote's goes.
        let network = match zygote.network.as_ref().map(|n| n.interfaces()).transpose() {
            Ok(network) => network,
            Err(e) => return fail(runner.as_fd(), ("watch the network namespace".into(), e)),
        };
        // Close every descriptor of the zygote's (its control socket, signals, trees) but
        // /dev/null: the spawner keeps only what it owns.
        let devnull = zygote.close_descriptors();
        let commands_cgroup = zygote.commands_cgroup.take().map(|fd| (zygote.config.commands_cgroup, fd));
        match Spawner::new(runner, devnull, oom_score, commands_cgroup, network, zygote) {
            Ok((mut spawner, runtime)) => {
                spawner.ready = Reply::ResetDone { landlock, runtime }.encode();
                let _ = channel::send(spawner.runner.as_fd(), &spawner.ready, &[]);
                spawner.serve()
            }
            Err((runner, e)) => fail(runner.as_fd(), e),
        }
    }

    /// Makes the session and confines the spawner for good, in this order: its
    /// `oom_score_adj` held open (see [`OomScore`]), a mount namespace of its own with a
    /// `/proc` of the new pid namespace (`hidepid=invisible`: a process a command may not
    /// trace, the spawner first, is not even listed) and fresh session directories, then
    /// Landlock (which forbids mounting), the session's seccomp filter (on top of the
    /// sandbox's, inherited), `no_new_privs`, and no capability but the one that rewinds the
    /// pid counter and sets the next IPC ids.
    fn confine(zygote: &Zygote) -> StepResult<(LandlockEnforcement, OomScore)> {
        // confine_spawner makes the spawner non-dumpable again before any command exists.
        let oom_score = step("open its oom_score_adj", OomScore::open())?;
        step("make the session's mount namespace", sys::unshare_namespaces(UnshareFlags::NEWNS))?;
        step("mount the session's /proc", mount_proc(Some(c"hidepid=2")))?;
        fresh_session_dirs(&zygote.config, &zygote.binds)?;
        // Its working directory was the zygote's /tmp, now covered: no command child (which
        // copies it until its own chdir) should start from there.
        step("enter the session's /tmp", std::env::set_current_dir("/tmp"))?;
        // Landlock's rules name inodes: the session's own (its fresh directories and /proc),
        // in a ruleset of its own that goes with the session, and the roots of the file
        // systems the zygote made ready for its resets in place (see `SpareDirs`): a rule on
        // the directory a file system covers would not hold (the kernel's walk to the root
        // skips mount points).
        let ruleset = match (zygote.landlock_builds, zygote.landlock_abi) {
            (true, Some(abi)) => {
                let paths = zygote.writable_paths();
                let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
                let spare_roots: Vec<_> = zygote.forking_spare_dirs.iter().flat_map(SpareDirs::roots).collect();
                let built = landlock::build(abi, zygote.config.landlock, &refs, &spare_roots);
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
        Ok((landlock, oom_score))
    }

    /// The spawner's state, once confined, and how its runtime's template started; on
    /// failure, the runner back (to report on).
    fn new(
        runner: OwnedFd,
        devnull: OwnedFd,
        oom_score: OomScore,
        commands_cgroup: Option<(CommandsCgroup, OwnedFd)>,
        network: Option<NetworkWatch>,
        zygote: &Zygote,
    ) -> Result<(Spawner, RuntimeReport), (OwnedFd, (String, io::Error))> {
        // Dispositions and the full mask come from the zygote.
        let signals = match step("watch for children's ends", sys::child_signals()) {
            Ok(s) => s,
            Err(e) => return Err((runner, e)),
        };
        let Some(vfork_watch) = zygote.vfork_watch.clone() else {
            return Err((runner, ("share the zygote's watch".into(), io::Error::from_raw_os_error(libc::EINVAL))));
        };
        let mut stack = CommandStack::new();
        // The template first, so that it is pid 2 and the session's pid counter is rewound
        // to just after it.
        let template = zygote.config.runtime.as_ref().ok_or(String::new()).and_then(|spec| {
            // Without the filter's guard a command could lower the template's limits or
            // priority, which every later fork inherits: no template then.
            let Some(filters) = &zygote.filters else {
                return Err("a template needs the sandbox's seccomp filter, which is not enforced here".to_string());
            };
            let with = StartWith {
                devnull: devnull.as_fd(),
                stack: &mut stack,
                vfork_watch: &vfork_watch,
                cgroup: commands_cgroup.as_ref().map(|(how, fd)| match how {
                    CommandsCgroup::BornIn => sys::CommandCgroup::BornIn(fd.as_fd()),
                    _ => sys::CommandCgroup::JoinTasks(fd.as_fd()),
                }),
                oom_score: &oom_score,
                guard: &filters.template_guard,
            };
            Template::start(spec, with)
        });
        // The template's guard on the spawner too (every command it execs inherits it), now
        // that it holds the template's pidfd.
        if let (Ok(_), Some(filters)) = (&template, &zygote.filters) {
            let guarded =
                seccompiler::apply_filter(&filters.template_guard).map_err(|e| io::Error::other(e.to_string()));
            if let Err(e) = step("install the template's guard", guarded) {
                return Err((runner, e));
            }
        }
        let runtime_report = match (&zygote.config.runtime, &template) {
            (None, _) => RuntimeReport::None,
            (Some(_), Ok(_)) => RuntimeReport::Ready,
            (Some(_), Err(why)) => RuntimeReport::Failed(why.clone()),
        };
        let template = template.ok();
        let session = match SessionState::start(network, template.is_some()) {
            Ok(s) => s,
            Err(e) => return Err((runner, e)),
        };
        let spawner = Spawner {
            runner,
            signals,
            devnull,
            no_fork: zygote.filters.as_ref().map(|f| f.no_fork.clone()).unwrap_or_default(),
            commands_cgroup,
            stack,
            vfork_watch,
            oom_score,
            children: Vec::new(),
            held: None,
            session,
            gave_a_terminal: false,
            commands_received: 0,
            has_runtime: template.is_some(),
            template,
            share_template: zygote.config.runtime.as_ref().is_some_and(|r| r.share_across_leases),
            ready: Vec::new(),
        };
        Ok((spawner, runtime_report))
    }

    /// Records a reaped child; if it was a command, reports its end on its status pipe,
    /// which then closes.
    fn reaped(&mut self, pid: i32, status: i32, usage: sys::ChildUsage) {
        if let Some(held) = &mut self.held {
            held.push((pid, status, usage));
            return;
        }
        if pid == TEMPLATE_PID && self.has_runtime {
            self.template_reaped();
        }
        let Some(i) = self.children.iter().position(|c| c.pid == pid) else { return };
        let child = self.children.swap_remove(i);
        // Judged only once no command runs any more.
        let left = if self.children.is_empty() && !self.gave_a_terminal && self.runtime_untouched() {
            self.session.left()
        } else {
            Leftover::More
        };
        let reply = Reply::Exited {
            status,
            usage: Usage { user_us: usage.user_us, system_us: usage.system_us, max_rss_kib: usage.max_rss_kib },
            left,
            timed_out: child.timed_out,
            commands_received: self.commands_received,
        };
        let _ = channel::send_framed(child.status.as_fd(), &reply.encode());
    }

    /// After a reset in place: the zygote mounted fresh session directories over the old
    /// ones, which the spawner's working directory and its watch still hold; it moves to the
    /// new ones (what a command's relative paths start from until its own `chdir`).
    fn dirs_renewed(&mut self) -> io::Result<()> {
        std::env::set_current_dir("/tmp")?;
        self.session.dirs_renewed()
    }

    /// Whether the runtime's template is as it started (without a runtime, yes); the
    /// session's own check sees that no process but it is left.
    fn runtime_untouched(&self) -> bool {
        !self.has_runtime || self.template.as_ref().is_some_and(|t| t.untouched(self.share_template))
    }

    /// Reaps every child that has ended, without waiting.
    fn reap_ended(&mut self) {
        while let Ok(Some((pid, status, usage))) = sys::reap_any(false) {
            self.reaped(pid, status, usage);
        }
    }

    /// Sends `signal` to the process group of command `pid`. `SIGKILL` goes again until the
    /// group is gone, so that a process forked while the signal went round dies too, for at
    /// most [`GROUP_KILL_BOUND`]: a zombie of the group whose parent lives elsewhere (a
    /// process that left the group, then forked a child that joined it again and exited)
    /// keeps the group from ever being gone, and must not keep the spawner here. What is
    /// left then is a zombie, or a process with a `SIGKILL` pending; the verdict sees it, so
    /// the session is not handed on as untouched.
    fn signal_group(&mut self, pid: i32, signal: Signal) {
        let Some(group) = Pid::from_raw(pid) else { return };
        if signal != Signal::KILL {
            let _ = kill_process_group(group, signal);
            return;
        }
        self.held.get_or_insert_with(Vec::new);
        let give_up = Instant::now() + GROUP_KILL_BOUND;
        while kill_process_group(group, Signal::KILL).is_ok() && Instant::now() < give_up {
            self.reap_ended();
            // Let the killed processes exit (a wake-up on the next SIGCHLD, or 1 ms).
            let _ = channel::poll_each([Some(self.signals.as_fd())], Some(Duration::from_millis(1)));
            channel::drain(self.signals.as_fd());
        }
        // None of the group can take a signal any more: each is gone or a zombie, which a
        // last reap collects.
        self.reap_ended();
        for (pid, status, usage) in self.held.take().unwrap_or_default() {
            self.reaped(pid, status, usage);
        }
    }

    /// Kills the process group of every command past its timeout.
    fn enforce_deadlines(&mut self) {
        let now = Instant::now();
        while let Some(late) = self.children.iter_mut().find(|c| c.deadline.is_some_and(|d| d <= now)) {
            late.deadline = None;
            late.timed_out = true;
            let pid = late.pid;
            self.signal_group(pid, Signal::KILL);
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

    /// Starts a command: its given stdio, then (for a terminal) the socket its near end goes
    /// back on, then its status pipe, travel with the request. Its `Started` (or
    /// `SpawnFailed`) goes on the status pipe; a request whose descriptors do not match is
    /// dropped, which closes them (the host sees its status pipe hang up).
    fn start_command(&mut self, req: RunRequest, mut fds: Vec<OwnedFd>) {
        let given = req.given.iter().filter(|g| **g).count();
        let with_terminal = req.terminal.is_some();
        if fds.len() != given + 1 + usize::from(with_terminal) || (with_terminal && given > 0) {
            return;
        }
        let status = fds.pop().expect("checked length");
        let terminal_return = if with_terminal { fds.pop() } else { None };
        let fail = |step, errno: i32| {
            let _ = channel::send_framed(status.as_fd(), &Reply::SpawnFailed { step, errno }.encode());
        };
        if self.children.len() >= MAX_CHILDREN {
            return fail(SpawnStep::Receive, libc::EAGAIN);
        }
        let mut given_fds = fds.into_iter();
        let stdio = req.given.map(|g| if g { given_fds.next() } else { None });
        let prepared = match PreparedCommand::new(&req) {
            Ok(v) => v,
            Err(errno) => return fail(SpawnStep::Decode, errno),
        };
        let terminal = match req.terminal.map(Terminal::open).transpose() {
            Ok(t) => t,
            Err(e) => return fail(SpawnStep::Terminal, e.raw_os_error().unwrap_or(libc::EIO)),
        };
        let filters: Vec<&sys::SeccompProgram> = if req.no_fork { self.no_fork.iter().collect() } else { Vec::new() };
        let spec = CommandSpec {
            stdio: match &terminal {
                Some(t) => [t.far.as_fd(); 3],
                None => [0, 1, 2].map(|i| stdio[i].as_ref().unwrap_or(&self.devnull).as_fd()),
            },
            cwd: &prepared.cwd,
            candidates: &prepared.candidates,
            argv: &prepared.argv,
            envp: &prepared.envp,
            filters: &filters,
            cpu_seconds: (req.cpu_seconds > 0).then_some(req.cpu_seconds),
            terminal: terminal.as_ref().map(|t| t.far.as_fd()),
            cgroup: self.commands_cgroup.as_ref().map(|(how, fd)| match how {
                CommandsCgroup::BornIn => sys::CommandCgroup::BornIn(fd.as_fd()),
                _ => sys::CommandCgroup::JoinTasks(fd.as_fd()),
            }),
        };
        let served = match self.template.as_mut() {
            Some(template) if terminal.is_none() && template.may_serve(&req) => {
                match template.serve(&req, spec.stdio) {
                    Ok(Served::Running(pid)) => Some(pid),
                    Ok(Served::CannotEnter(errno)) => return fail(SpawnStep::WorkingDirectory, errno),
                    // Declined; or gone or stuck, and retired: this command and the session's
                    // later ones are exec'd.
                    Ok(Served::Declined) | Err(_) => None,
                }
            }
            _ => None,
        };
        let spawned = match served {
            Some(pid) => Ok(pid),
            None => {
                self.oom_score.for_commands();
                let spawned = sys::spawn_command(&spec, &mut self.stack, &self.vfork_watch);
                self.oom_score.back_to_own();
                spawned
            }
        };
        match spawned {
            Ok(pid) => {
                // The near end goes to the host before the start is heard of; the spawner
                // keeps neither end (the far one is the command's alone).
                if let (Some(t), Some(back)) = (&terminal, &terminal_return) {
                    self.gave_a_terminal = true;
                    let _ = channel::send(back.as_fd(), b"T", &[t.near.as_fd()]);
                }
                if req.report_start {
                    let _ = channel::send_framed(status.as_fd(), &Reply::Started { pid }.encode());
                }
                let deadline = (req.timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(req.timeout_ms));
                let served = served.is_some();
                self.children.push(RunningChild { pid, token: req.token, status, deadline, timed_out: false, served });
                if served {
                    // Its end may have come before its pid, if it was killed at once.
                    self.hear_from_template();
                }
            }
            Err(f) => fail(f.step, f.error.raw_os_error().unwrap_or(libc::EIO)),
        }
    }

    /// Reports the ends of the children the template served that it has sent (retiring a
    /// template that is gone or says something else).
    fn hear_from_template(&mut self) {
        let Some(template) = self.template.as_mut() else { return };
        for (pid, status, usage) in template.take_ended() {
            self.reaped(pid, status, usage);
        }
    }

    /// The template died (or was killed) and is reaped: the ends it sent before are
    /// reported, and so is, as killed, a served child whose end it took with it (it reaped
    /// the child and died before it said so); the others, orphans now, are the spawner's
    /// own children, reaped as any. Without it, such a child's end would never come.
    fn template_reaped(&mut self) {
        let Some(mut template) = self.template.take() else { return };
        for (pid, status, usage) in template.take_ended() {
            self.reaped(pid, status, usage);
        }
        let lost: Vec<i32> = self.children.iter().filter(|c| c.served && !is_own_child(c.pid)).map(|c| c.pid).collect();
        for pid in lost {
            tracing::warn!(pid, "the runtime's template died with a served command's end; reported as killed");
            self.reaped(pid, libc::SIGKILL, sys::ChildUsage::default());
        }
    }

    /// Waits for a request, a child's end (`SIGCHLD`), or word from the template, at most
    /// `timeout`: whether a request came, and whether a child may have ended.
    fn wait(&mut self, timeout: Option<Duration>) -> (bool, bool) {
        if self.template.as_ref().is_some_and(Template::has_ended) {
            self.hear_from_template();
        }
        let Some(template) = self.template.as_ref().filter(|t| t.serves()) else {
            return wait_for(&self.runner, &self.signals, timeout);
        };
        let watched = [Some(self.runner.as_fd()), Some(self.signals.as_fd()), Some(template.socket())];
        let Ok([message, signal, said]) = channel::poll_each(watched, timeout) else { return (false, false) };
        if !signal.is_empty() {
            channel::drain(self.signals.as_fd());
        }
        if !said.is_empty() {
            self.hear_from_template();
        }
        (!message.is_empty(), !signal.is_empty())
    }

    fn serve(&mut self) -> i32 {
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let next_deadline = self.children.iter().filter_map(|c| c.deadline).min();
            let timeout = next_deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let (message, child_ended) = self.wait(timeout);
            self.enforce_deadlines();
            if child_ended {
                self.reap_ended();
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
                    self.commands_received += 1;
                    self.start_command(req, received);
                }
                Ok(Request::Signal { token, signal }) => {
                    let pid = self.children.iter().find(|c| c.token == token).map(|c| c.pid);
                    if let (Some(pid), Some(signal)) = (pid, Signal::from_named_raw(signal)) {
                        self.signal_group(pid, signal);
                    }
                }
                Ok(Request::DirsRenewed) => {
                    if let Err(e) = self.dirs_renewed() {
                        // A spawner whose working directory is the old /tmp must not start
                        // anything: the session ends, and the host sees it go.
                        let errno = e.raw_os_error().unwrap_or(libc::EIO);
                        let reply = Reply::ResetFailed { step: "record the renewed session directories".into(), errno };
                        let _ = channel::send(self.runner.as_fd(), &reply.encode(), &[]);
                        self.kill_everything();
                        return 1;
                    }
                    let _ = channel::send(self.runner.as_fd(), &self.ready, &[]);
                }
                // Anything else: nothing to do.
                _ => {}
            }
        }
    }
}
