//! The zygote: the sandbox's init, pid 1 of its pid namespace.
//!
//! It is this very program image, re-executed by [`spawn_zygote`](super::sys::spawn_zygote)
//! and entered through a constructor before `main` (so the host needs no hook). Being a fresh,
//! single-threaded image, it may allocate freely while it builds the sandbox, in the order
//! [`Zygote::setup`] lists: the sandbox's uid ([`creds`]), its cgroups, the minimal root,
//! `/proc`, `/dev`, `/tmp` and the binds ([`rootfs`]), hostname, loopback and routes
//! ([`net`]), limits, a trial Landlock ruleset, the seccomp programs, then the capabilities
//! it drops and the filter it runs under. Then, for each session, it forks a spawner
//! ([`spawner`]) into a pid and an IPC namespace of their own, where the spawner is pid 1,
//! makes the session's mounts, confines itself for good, and starts each command with
//! `clone(CLONE_VM | CLONE_VFORK)` (the zygote kills a child held before its `execve`): the
//! child only sets up its stdio and execs. After each
//! command the spawner judges whether the session is still as it started ([`session`]). The
//! zygote itself runs no command and stays out of the commands' pid namespace.

mod creds;
mod net;
mod rootfs;
mod session;
mod sessions;
mod spawner;
mod template;

use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::net::AddressFamily;
use rustix::process::Resource;
use rustix::thread::UnshareFlags;

use super::channel;
use super::confine::landlock;
use super::confine::seccomp::{self, Filters};
use super::policy::Requirement;
use super::protocol::{
    CommandsCgroup, LandlockEnforcement, MAX_MESSAGE, Reply, Request, RuntimeReport, ZygoteConfig, ZygoteReport,
};
use super::sys::{self, ZygoteStart};
use net::{NetworkWatch, add_unreachable_default_route, cap_socket_buffers, loopback_up};
use rootfs::{UserBind, build_root};
use sessions::Spare;
use spawner::Spawner;
use std::rc::Rc;

/// The uid and gid commands run as inside.
pub(crate) const SANDBOX_UID: u32 = 1000;

type StepResult<T> = Result<T, (String, io::Error)>;

fn step<T>(name: impl Into<String>, r: io::Result<T>) -> StepResult<T> {
    r.map_err(|e| (name.into(), e))
}

fn c(path: &str) -> CString {
    CString::new(path).expect("internal paths have no NUL")
}

fn cp(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in path"))
}

/// `open(2)` of an absolute path, close-on-exec.
fn open(path: &CStr, flags: OFlags) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, flags | OFlags::CLOEXEC, Mode::empty())?)
}

/// `setrlimit(2)` with soft = hard = `value` (0 leaves the limit as it is, but for
/// `RLIMIT_CORE`, which is always 0).
fn apply_limits(config: &ZygoteConfig) -> StepResult<()> {
    let set = |name: &str, resource, value: u64| {
        let limit = rustix::process::Rlimit { current: Some(value), maximum: Some(value) };
        let applied = if value > 0 || resource == Resource::Core {
            rustix::process::setrlimit(resource, limit).map_err(io::Error::from)
        } else {
            Ok(())
        };
        step(format!("set {name}"), applied)
    };
    set("RLIMIT_NPROC", Resource::Nproc, config.max_processes)?;
    set("RLIMIT_AS", Resource::As, config.address_space)?;
    set("RLIMIT_FSIZE", Resource::Fsize, config.max_file_size)?;
    set("RLIMIT_NOFILE", Resource::Nofile, config.max_open_files)?;
    set("RLIMIT_CORE", Resource::Core, 0)?;
    Ok(())
}

/// Waits until `socket` has a message (or hang-up) or `signals` reports a child's end, or
/// `timeout` passes; says which (the signalfd is drained).
fn wait_for(socket: &OwnedFd, signals: &OwnedFd, timeout: Option<std::time::Duration>) -> (bool, bool) {
    let Ok([message, signal]) = channel::poll_each([Some(socket.as_fd()), Some(signals.as_fd())], timeout) else {
        return (false, false);
    };
    if !signal.is_empty() {
        channel::drain(signals.as_fd());
    }
    (!message.is_empty(), !signal.is_empty())
}

/// What the zygote talks and listens on, open until it forks a spawner, which closes them.
struct Channels {
    /// To the host.
    control: OwnedFd,
    /// `SIGCHLD`, as a signalfd.
    signals: OwnedFd,
    /// `/dev/null`, the commands' stdin when they have none.
    devnull: OwnedFd,
}

/// The sandbox's init: builds the sandbox, keeps the privileges that making sessions needs
/// (under the sandbox's seccomp filter), starts one per reset, and never runs a command
/// itself.
struct Zygote {
    /// `None` only in a spawner, once it has closed them.
    channels: Option<Channels>,
    config: ZygoteConfig,
    binds: Vec<UserBind>,
    filters: Option<Filters>,
    /// The Landlock ABI to build rulesets for: the kernel's, or the policy's cap if lower.
    landlock_abi: Option<u32>,
    /// Whether a ruleset built on the zygote's tree took (each session builds its own on its
    /// own directories, and its spawner says what the kernel enforced).
    landlock_builds: bool,
    /// Whether that ruleset asks for scoping (abstract sockets, signals; ABI 6).
    landlock_scopes: bool,
    /// What it applied, sent with each new session's socket.
    report: ZygoteReport,
    /// Its own pid namespace, to start each session's from.
    own_pid_ns: Option<OwnedFd>,
    /// Its own mount namespace, to come back to after a reset in place.
    own_mnt_ns: Option<OwnedFd>,
    /// The current session's directories for its resets in place (see [`SpareDirs`](rootfs::SpareDirs)).
    session_spare_dirs: Vec<rootfs::SpareDirs>,
    /// Those of the session whose spawner is being forked (which its Landlock ruleset
    /// names).
    forking_spare_dirs: Vec<rootfs::SpareDirs>,
    /// The network namespace the zygote is in, where the next session it makes will be
    /// (`None` with the host's network).
    network: Option<Rc<NetworkWatch>>,
    /// The current session's network namespace: the zygote's, or an older one where a spare
    /// of its own moved the zygote on.
    session_network: Option<Rc<NetworkWatch>>,
    /// The next session, made ahead of need (see [`Spare`]).
    spare: Option<Spare>,
    /// The network namespace of the session that ended last, and whether it was left as new
    /// (once looked at): the next spare gets one of its own if not.
    ended_network: Option<(Rc<NetworkWatch>, Option<bool>)>,
    /// The commands' own cgroup (a v1 memory `tasks` file the host opened, or a v2 cgroup
    /// directory: `config.commands_cgroup` says which), which each session's spawner has its
    /// command children join, or be born in.
    commands_cgroup: Option<OwnedFd>,
    /// The init's own leaf's `cgroup.procs` (v2, with commands born in a cgroup of their
    /// own), which the host opened and the zygote joins in `setup`.
    own_leaf: Option<OwnedFd>,
    /// The page where each spawner leaves the command child it is waiting for.
    pub(super) vfork_watch: Option<std::sync::Arc<sys::VforkWatch>>,
    /// The current session's spawner (its pid here), and what the zygote last saw it waiting
    /// for, and when.
    spawner_pid: Option<i32>,
    held_seen: Option<(i32, u64)>,
    last_look: std::time::Instant,
}

impl Zygote {
    fn channels(&self) -> &Channels {
        self.channels.as_ref().expect("the zygote's channels are open until it forks a spawner")
    }

    fn send(&self, reply: &Reply, fds: &[std::os::fd::BorrowedFd<'_>]) {
        // A failed send means the host is gone; the next receive sees the hang-up.
        let _ = channel::send(self.channels().control.as_fd(), &reply.encode(), fds);
    }

    /// In a freshly forked spawner: closes the zygote's descriptors (its control socket to the
    /// host, its signalfd, its pid namespace, its network watches, a spare's runner socket) but
    /// `/dev/null`, which it returns.
    fn close_descriptors(&mut self) -> OwnedFd {
        self.own_pid_ns = None;
        self.own_mnt_ns = None;
        self.session_spare_dirs.clear();
        self.forking_spare_dirs.clear();
        self.network = None;
        self.session_network = None;
        self.ended_network = None;
        self.spare = None;
        let channels = self.channels.take().expect("a zygote forks a spawner with its channels open");
        channels.devnull
    }

    fn writable_paths(&self) -> Vec<String> {
        let mut paths = vec!["/tmp".to_string(), "/dev/shm".to_string(), "/dev/mqueue".to_string()];
        for b in &self.binds {
            if b.spec.writable {
                paths.push(b.path().to_string_lossy().into_owned());
            }
        }
        paths
    }

    fn build_landlock(&mut self) -> StepResult<()> {
        self.landlock_builds = false;
        if self.config.landlock == Requirement::Off {
            return Ok(());
        }
        let Some(abi) = self.landlock_abi else {
            if self.config.landlock == Requirement::Required {
                return Err((
                    "enforce Landlock (not supported by this kernel)".into(),
                    io::Error::from_raw_os_error(libc::EOPNOTSUPP),
                ));
            }
            return Ok(());
        };
        let paths = self.writable_paths();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        match landlock::build(abi, self.config.landlock, &refs, &[]) {
            Ok(ruleset) => {
                self.landlock_builds = true;
                self.landlock_scopes = ruleset.scoped;
            }
            Err(e) if self.config.landlock == Requirement::Required => {
                return Err(("build the Landlock ruleset".into(), e));
            }
            Err(_) => {}
        }
        Ok(())
    }

    /// Builds the sandbox, step by step, and says what it applied (but Landlock, which the
    /// first session's spawner reports).
    fn setup(&mut self, trees: Vec<OwnedFd>) -> StepResult<ZygoteReport> {
        step("take the sandbox's uid", creds::become_user(SANDBOX_UID, SANDBOX_UID))?;
        // Join the cgroups first, before anything is charged or forked (the host's file
        // system is still in view: the root is not pivoted yet).
        for tasks in &self.config.cgroup_tasks {
            let path = Path::new(std::ffi::OsStr::from_bytes(tasks));
            step(format!("join the cgroup {}", path.display()), fs::write(path, "0"))?;
        }
        // A cgroup namespace rooted where the sandbox now lives: the one it was cloned with is
        // rooted at the host's cgroup wherever the sandbox joined its own after the clone (v1,
        // and v2 without `CLONE_INTO_CGROUP`), and would show the host's cgroup paths inside.
        step("root the cgroup namespace at its cgroup", sys::unshare_namespaces(UnshareFlags::NEWCGROUP))?;
        self.binds = build_root(&self.config, trees)?;
        let named = rustix::system::sethostname(b"sandpool").and_then(|()| rustix::system::setdomainname(b"sandpool"));
        step("set the hostname", named.map_err(io::Error::from))?;
        if !self.config.share_network {
            let network = Rc::new(self.set_up_network()?);
            self.session_network = Some(Rc::clone(&network));
            self.network = Some(network);
        }
        // No user namespace may be made inside, whatever the filter lets through (`clone3`,
        // where spawners need it: see `seccomp::unreadable_calls`): the sandbox's own limit,
        // in its user namespace, which no command can raise (it needs `CAP_SYS_RESOURCE`
        // there). Sessions need none.
        step("allow no user namespace inside", fs::write("/proc/sys/user/max_user_namespaces", "0"))?;
        step("enter /tmp", std::env::set_current_dir("/tmp"))?;
        self.vfork_watch = Some(std::sync::Arc::new(step("map the spawners' watch", sys::VforkWatch::new())?));
        apply_limits(&self.config)?;
        let cap = self.config.landlock_max_abi;
        self.landlock_abi = sys::landlock_abi().map(|abi| abi.min(cap)).filter(|&abi| abi > 0);
        self.build_landlock()?;
        if self.config.seccomp != Requirement::Off {
            match seccomp::build(self.config.commands_cgroup == CommandsCgroup::BornIn) {
                Ok(f) if rustix::thread::secure_computing_mode().is_ok() => self.filters = Some(f),
                Ok(_) if self.config.seccomp == Requirement::Required => {
                    return Err((
                        "install seccomp (not supported by this kernel)".into(),
                        io::Error::from_raw_os_error(libc::EOPNOTSUPP),
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(("compile the seccomp filter".into(), io::Error::other(e.to_string()))),
            }
        }
        step("drop the capability bounding set", creds::drop_bounding_set_and_lock(self.config.last_cap))?;
        step("make the init non-dumpable", creds::set_not_dumpable())?;
        // Last: the zygote itself runs under the sandbox's filter from here on (what it still
        // does, making sessions, that filter leaves to it; each spawner closes it).
        if let Some(f) = &self.filters {
            for prog in &f.sandbox {
                step("install seccomp", seccompiler::apply_filter(prog).map_err(|e| io::Error::other(e.to_string())))?;
            }
        }
        // v2 with the commands' own cgroup: the sandbox's cgroup is to hand memory down to its
        // two leaves (no process may stay in it then), and a spawner may start a command in
        // the commands' leaf only if its cgroup namespace's root holds both: the init leaves
        // it for its own leaf now that the namespace is rooted there. Last, just before the
        // host enables memory there: each takes the threadgroup lock, whose RCU grace period
        // (milliseconds) only the first of two close together waits for.
        if let Some(leaf) = self.own_leaf.take() {
            step("join the init's own cgroup", rustix::io::write(&leaf, b"0").map(drop).map_err(io::Error::from))?;
        }
        Ok(ZygoteReport {
            landlock_abi: self.landlock_abi.unwrap_or(0),
            // Set from what the first session's spawner enforced.
            landlock_enforced: false,
            landlock_scoped: false,
            seccomp_enforced: self.filters.is_some(),
            seccomp_denied: seccomp::denied_count(),
            loopback_only: !self.config.share_network,
            made_ahead: false,
            in_place: false,
            // Set from what the first session's spawner started.
            runtime: RuntimeReport::None,
        })
    }

    /// Sets up the network namespace it is in as every sandbox's starts: loopback up, nothing
    /// else routed, TCP buffers capped; returns its watch.
    fn set_up_network(&self) -> StepResult<NetworkWatch> {
        step("bring up loopback", loopback_up())?;
        step("route nothing but loopback (IPv4)", add_unreachable_default_route(AddressFamily::INET))?;
        match add_unreachable_default_route(AddressFamily::INET6) {
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {} // no IPv6 here
            other => step("route nothing but loopback (IPv6)", other)?,
        }
        if self.config.socket_buffer_max > 0 {
            for name in ["tcp_rmem", "tcp_wmem"] {
                step(format!("cap net.ipv4.{name}"), cap_socket_buffers(name, self.config.socket_buffer_max))?;
            }
        }
        step("watch the network namespace", NetworkWatch::open())
    }

    /// Kills every other process of the sandbox (the spawner too) and reaps them, looping
    /// until none is left: a process forking while the kill went round survives one pass.
    fn kill_everything(&mut self) {
        loop {
            sys::kill_all_others();
            while let Ok(Some(_)) = sys::reap_any(true) {}
            if !sys::any_other_process() {
                break;
            }
        }
        channel::drain(self.channels().signals.as_fd());
    }

    /// Kills the command child the spawner has been waiting for since the last look, if any:
    /// one stopped before its `execve` by another command would hold the spawner for ever (see
    /// [`sys::VforkWatch`]). The zygote is outside the commands' pid namespace, where no
    /// command can reach it. Looks at most every [`sys::HELD_CHILD_LOOK`].
    fn release_held_child(&mut self) {
        if self.last_look.elapsed() < sys::HELD_CHILD_LOOK {
            return;
        }
        self.last_look = std::time::Instant::now();
        let waiting = self.vfork_watch.as_ref().and_then(|w| w.waiting_for());
        if waiting.is_none() || waiting != self.held_seen {
            self.held_seen = waiting;
            return;
        }
        self.held_seen = None;
        if let (Some((tid, _)), Some(spawner)) = (waiting, self.spawner_pid) {
            kill_child_of(spawner, tid);
        }
    }

    fn serve(&mut self) -> i32 {
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let look = Some(sys::HELD_CHILD_LOOK);
            let (message, child_ended) = wait_for(&self.channels().control, &self.channels().signals, look);
            self.release_held_child();
            if child_ended {
                // A spawner ended (killed from inside, or crashed): the host notices by its
                // socket (a spare's end, when it is switched to). Reap it.
                while let Ok(Some((pid, _, _))) = sys::reap_any(false) {
                    self.reaped(pid);
                }
            }
            if !message {
                continue;
            }
            let mut received = Vec::new();
            match channel::recv(self.channels().control.as_fd(), &mut buf, &mut received) {
                Ok(0) | Err(_) => {
                    // The host closed the channel (or died): take everything down with us.
                    self.kill_everything();
                    return 0;
                }
                Ok(n) => match Request::decode(&buf[..n]) {
                    Ok(Request::Reset { spare, in_place }) if received.is_empty() => {
                        if in_place {
                            match self.renew_dirs_in_place() {
                                Ok(()) => {
                                    let report = ZygoteReport { in_place: true, ..self.report.clone() };
                                    self.send(&Reply::Ready(report), &[]);
                                    continue;
                                }
                                Err((step, e)) => {
                                    tracing::debug!(step = %step, error = %e, "a reset in place failed; ending the session")
                                }
                            }
                        }
                        match self.renew_session(in_place) {
                            Ok((runner, made_ahead, runtime)) => {
                                let report = ZygoteReport { made_ahead, runtime, ..self.report.clone() };
                                self.send(&Reply::Ready(report), &[runner.as_fd()]);
                            }
                            Err((step, e)) => {
                                let errno = e.raw_os_error().unwrap_or(libc::EIO);
                                self.send(&Reply::ResetFailed { step, errno }, &[]);
                                continue;
                            }
                        }
                        // Off the host's path: the next session, while this one serves.
                        if spare {
                            self.make_spare(in_place);
                        }
                    }
                    _ => self.send(&Reply::SetupFailed { step: "decode the request".into(), errno: libc::EPROTO }, &[]),
                },
            }
        }
    }
}

/// Kills the child of `spawner` (its pid here) whose pid in the spawner's own namespace is
/// `tid`: found by `/proc/<pid>/status`, whose `NSpid` line ends with that pid and whose
/// `PPid` is the spawner.
fn kill_child_of(spawner: i32, tid: i32) {
    let Ok(entries) = fs::read_dir("/proc") else { return };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
        let parent = field("PPid:").and_then(|p| p.parse::<i32>().ok());
        let inner = field("NSpid:").and_then(|p| p.split_whitespace().last()).and_then(|p| p.parse::<i32>().ok());
        if parent == Some(spawner) && inner == Some(tid) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            return;
        }
    }
}

/// The zygote's `main`: build the sandbox as configured, start the first session, report,
/// then serve resets until the host hangs up.
pub(crate) fn main(start: ZygoteStart) -> i32 {
    let _ = rustix::thread::set_name(c"sandpool-zygote");
    let ZygoteStart { control, devnull } = start;
    // Its own session: the host's terminal signals stay with the host. (Cannot fail: a fresh
    // process is never a group leader.)
    let _ = rustix::process::setsid();
    let signals = match sys::take_over_signals() {
        Ok(fd) => fd,
        Err(e) => {
            let reply =
                Reply::SetupFailed { step: "take over signals".into(), errno: e.raw_os_error().unwrap_or(libc::EIO) };
            let _ = channel::send(control.as_fd(), &reply.encode(), &[]);
            return 1;
        }
    };
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut trees = Vec::new();
    let config = match channel::recv(control.as_fd(), &mut buf, &mut trees) {
        Ok(n) if n > 0 => match Request::decode(&buf[..n]) {
            Ok(Request::Configure(c)) => c,
            _ => return 2,
        },
        _ => return 2,
    };
    drop(buf);
    // The binds' trees come first, the commands' cgroup (and the init's own leaf) last.
    let own_leaf = if config.commands_cgroup == CommandsCgroup::BornIn { trees.pop() } else { None };
    let commands_cgroup = if config.commands_cgroup == CommandsCgroup::None { None } else { trees.pop() };
    let mut zygote = Zygote {
        channels: Some(Channels { control, signals, devnull }),
        config,
        binds: Vec::new(),
        filters: None,
        landlock_abi: None,
        landlock_builds: false,
        landlock_scopes: false,
        report: ZygoteReport::default(),
        own_pid_ns: None,
        own_mnt_ns: None,
        session_spare_dirs: Vec::new(),
        forking_spare_dirs: Vec::new(),
        network: None,
        session_network: None,
        spare: None,
        ended_network: None,
        commands_cgroup,
        own_leaf,
        vfork_watch: None,
        spawner_pid: None,
        held_seen: None,
        last_look: std::time::Instant::now(),
    };
    let started = zygote.setup(trees).and_then(|report| {
        zygote.report = report;
        zygote.start_spawner()
    });
    match started {
        Ok((runner, landlock, runtime)) => {
            zygote.report.runtime = runtime;
            zygote.report.landlock_enforced = landlock != LandlockEnforcement::None;
            zygote.report.landlock_scoped = landlock == LandlockEnforcement::Full && zygote.landlock_scopes;
            zygote.send(&Reply::Ready(zygote.report.clone()), &[runner.as_fd()])
        }
        Err((step, e)) => {
            zygote.send(&Reply::SetupFailed { step, errno: e.raw_os_error().unwrap_or(libc::EIO) }, &[]);
            return 1;
        }
    }
    zygote.serve()
}
