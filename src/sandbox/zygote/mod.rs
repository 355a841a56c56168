//! The zygote: the sandbox's init, pid 1 of its pid namespace.
//!
//! It is this very program image, re-executed by [`super::sys::spawn_zygote`] and entered
//! through a constructor before `main` (so the host needs no hook). Being a fresh,
//! single-threaded image, it may allocate freely while it builds the sandbox: the minimal root,
//! `/proc`, `/dev`, `/tmp`, the binds ([`rootfs`]), hostname, loopback, limits, the Landlock
//! ruleset and the seccomp programs. Then, for each session, it forks a spawner
//! ([`spawner`]) into a pid and an IPC namespace of their own, where the spawner is pid 1,
//! makes the session's mounts, confines itself for good, and starts each command with
//! `clone(CLONE_VM | CLONE_VFORK)`: the child only sets up its stdio and execs. The zygote
//! itself runs no command and stays out of the commands' pid namespace.

mod rootfs;
mod spawner;

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::landlock;
use super::network::{NetworkWatch, cap_socket_buffers};
use super::protocol::{MAX_MESSAGE, Reply, Request, ZygoteConfig, ZygoteReport};
use super::seccomp::{self, Filters};
use super::sys;
use rootfs::{UserBind, build_root};
use spawner::Spawner;

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

fn apply_limits(config: &ZygoteConfig) -> StepResult<()> {
    let set =
        |name: &str, res, v: u64| step(format!("set {name}"), if v > 0 { sys::set_rlimit(res, v) } else { Ok(()) });
    set("RLIMIT_NPROC", libc::RLIMIT_NPROC, config.max_processes)?;
    set("RLIMIT_AS", libc::RLIMIT_AS, config.address_space)?;
    set("RLIMIT_FSIZE", libc::RLIMIT_FSIZE, config.max_file_size)?;
    set("RLIMIT_NOFILE", libc::RLIMIT_NOFILE, config.max_open_files)?;
    step("set RLIMIT_CORE", sys::set_rlimit(libc::RLIMIT_CORE, 0))?;
    Ok(())
}

/// Waits until `socket` has a message (or hang-up) or `signals` reports a child's end; says
/// which (the signalfd is drained).
fn wait_for(socket: &OwnedFd, signals: &OwnedFd) -> (bool, bool) {
    let mut fds = [
        libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: signals.as_raw_fd(), events: libc::POLLIN, revents: 0 },
    ];
    if sys::poll(&mut fds, None).is_err() {
        return (false, false);
    }
    if fds[1].revents != 0 {
        sys::drain_signalfd(signals.as_fd());
    }
    (fds[0].revents != 0, fds[1].revents != 0)
}

/// The sandbox's init: builds the sandbox, keeps the privileges that making sessions needs
/// (under the sandbox's seccomp filter), starts one per reset, and never runs a command
/// itself.
struct Zygote {
    control: OwnedFd,
    signals: OwnedFd,
    config: ZygoteConfig,
    binds: Vec<UserBind>,
    filters: Option<Filters>,
    landlock_abi: Option<u32>,
    /// The ruleset built once to see that this kernel takes it (what the report says); each
    /// session builds its own on its own directories.
    landlock: Option<landlock::Ruleset>,
    /// What it applied, sent with each new session's socket.
    report: ZygoteReport,
    /// Its own pid namespace, to start each session's from.
    own_pid_ns: Option<OwnedFd>,
    /// The sandbox's own network namespace as it was made, which no session may change.
    network: Option<NetworkWatch>,
}

impl Zygote {
    fn send(&self, reply: &Reply, fds: &[i32]) {
        // A failed send means the host is gone; the next receive sees the hang-up.
        let _ = sys::send_with_fds(self.control.as_fd(), &reply.encode(), fds);
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
        self.landlock = None;
        if self.config.landlock == 0 {
            return Ok(());
        }
        let Some(abi) = self.landlock_abi else {
            if self.config.landlock == 2 {
                return Err((
                    "enforce Landlock (not supported by this kernel)".into(),
                    io::Error::from_raw_os_error(libc::EOPNOTSUPP),
                ));
            }
            return Ok(());
        };
        let paths = self.writable_paths();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        match landlock::build(abi, &refs) {
            Ok(r) => self.landlock = Some(r),
            Err(e) if self.config.landlock == 2 => return Err(("build the Landlock ruleset".into(), e)),
            Err(_) => {}
        }
        Ok(())
    }

    fn setup(&mut self, trees: Vec<OwnedFd>) -> StepResult<ZygoteReport> {
        step("take the sandbox's uid", sys::become_user(SANDBOX_UID, SANDBOX_UID))?;
        // Join the cgroups first, before anything is charged or forked (the host's file
        // system is still in view: the root is not pivoted yet).
        for tasks in &self.config.cgroup_tasks {
            let path = Path::new(std::ffi::OsStr::from_bytes(tasks));
            step(format!("join the cgroup {}", path.display()), fs::write(path, "0"))?;
        }
        self.binds = build_root(&self.config, trees)?;
        step("set the hostname", sys::set_host_and_domain_name("sandpool", "sandpool"))?;
        if !self.config.share_network {
            step("bring up loopback", sys::loopback_up())?;
            step("route nothing but loopback (IPv4)", sys::add_unreachable_default_route(libc::AF_INET))?;
            match sys::add_unreachable_default_route(libc::AF_INET6) {
                Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {} // no IPv6 here
                other => step("route nothing but loopback (IPv6)", other)?,
            }
            if self.config.socket_buffer_max > 0 {
                for name in ["tcp_rmem", "tcp_wmem"] {
                    step(format!("cap net.ipv4.{name}"), cap_socket_buffers(name, self.config.socket_buffer_max))?;
                }
            }
            self.network = Some(step("watch the network namespace", NetworkWatch::open())?);
        }
        step("enter /tmp", std::env::set_current_dir("/tmp"))?;
        apply_limits(&self.config)?;
        let cap = self.config.landlock_max_abi;
        self.landlock_abi = sys::landlock_abi().map(|abi| abi.min(cap)).filter(|&abi| abi > 0);
        self.build_landlock()?;
        if self.config.seccomp != 0 {
            match seccomp::build() {
                Ok(f) if sys::seccomp_available() => self.filters = Some(f),
                Ok(_) if self.config.seccomp == 2 => {
                    return Err((
                        "install seccomp (not supported by this kernel)".into(),
                        io::Error::from_raw_os_error(libc::EOPNOTSUPP),
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(("compile the seccomp filter".into(), io::Error::other(e.to_string()))),
            }
        }
        step("drop the capability bounding set", sys::drop_bounding_set_and_lock(self.config.last_cap))?;
        step("make the init non-dumpable", sys::set_not_dumpable())?;
        // Last: the zygote itself runs under the sandbox's filter from here on (what it still
        // does, making sessions, that filter leaves to it; each spawner closes it).
        if let Some(f) = &self.filters {
            for prog in &f.sandbox {
                step("install seccomp", seccompiler::apply_filter(prog).map_err(|e| io::Error::other(e.to_string())))?;
            }
        }
        Ok(ZygoteReport {
            landlock_abi: self.landlock_abi.unwrap_or(0),
            landlock_enforced: self.landlock.is_some(),
            landlock_scoped: self.landlock.as_ref().is_some_and(|l| l.scoped),
            seccomp_enforced: self.filters.is_some(),
            seccomp_denied: seccomp::denied_count(),
            loopback_only: !self.config.share_network,
        })
    }

    /// Starts a session: forks the spawner into a pid and an IPC namespace of their own, below
    /// the zygote's, where it is pid 1 and every command is its child: commands never see the
    /// zygote, and the spawner ends them all when it goes. The spawner makes the session's
    /// mount namespace, confines itself and says, on its new socket, whether it is ready;
    /// returns the host's end of that socket.
    fn start_spawner(&mut self) -> StepResult<OwnedFd> {
        let (host_end, spawner_end) = step("create the runner socket", sys::seqpacket_pair())?;
        // The zygote's next child starts new namespaces; first make its own pid namespace
        // the one they are made below again (`unshare` only once moves where children go).
        let own = match self.own_pid_ns.take() {
            Some(fd) => fd,
            None => step("open the zygote's pid namespace", sys::open(c"/proc/self/ns/pid", libc::O_RDONLY))?,
        };
        let own = self.own_pid_ns.insert(own);
        step("return to the zygote's pid namespace", sys::set_pid_ns_for_children(own.as_fd()))?;
        step("make the session's namespaces", sys::unshare(libc::CLONE_NEWPID | libc::CLONE_NEWIPC))?;
        match step("fork the spawner", sys::fork_zygote())? {
            Some(_) => {
                drop(spawner_end);
                // Its first message is short: ready, or a failed step (a path at most).
                let mut buf = [0u8; 8192];
                let mut fds = Vec::new();
                let n = step("hear from the spawner", sys::recv_with_fds(host_end.as_fd(), &mut buf, &mut fds))?;
                match Reply::decode(&buf[..n]) {
                    Ok(Reply::ResetDone) if fds.is_empty() => Ok(host_end),
                    Ok(Reply::SetupFailed { step, errno }) => Err((step, io::Error::from_raw_os_error(errno))),
                    // A hang-up (0 bytes) or anything else: the spawner died before it was ready.
                    _ => Err(("start the spawner".into(), io::Error::from_raw_os_error(libc::ECHILD))),
                }
            }
            None => {
                drop(host_end);
                let code = Spawner::start(spawner_end, self);
                sys::exit_now(code)
            }
        }
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
        sys::drain_signalfd(self.signals.as_fd());
    }

    fn serve(&mut self) -> i32 {
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let (message, child_ended) = wait_for(&self.control, &self.signals);
            if child_ended {
                // The spawner ended (killed from inside, or crashed): the host notices by its
                // socket. Reap it.
                while let Ok(Some(_)) = sys::reap_any(false) {}
            }
            if !message {
                continue;
            }
            let mut received = Vec::new();
            match sys::recv_with_fds(self.control.as_fd(), &mut buf, &mut received) {
                Ok(0) | Err(_) => {
                    // The host closed the channel (or died): take everything down with us.
                    self.kill_everything();
                    return 0;
                }
                Ok(n) => match Request::decode(&buf[..n]) {
                    Ok(Request::Reset) if received.is_empty() => match self.renew_session() {
                        Ok(runner) => self.send(&Reply::Ready(self.report.clone()), &[runner.as_raw_fd()]),
                        Err((step, e)) => {
                            self.send(&Reply::ResetFailed { step, errno: e.raw_os_error().unwrap_or(libc::EIO) }, &[])
                        }
                    },
                    _ => self.send(&Reply::SetupFailed { step: "decode the request".into(), errno: libc::EPROTO }, &[]),
                },
            }
        }
    }

    /// Ends the session (the spawner and every process of its namespace die) and starts a new
    /// one, unless the network namespace, which outlives sessions, is no longer as it was
    /// made: then the sandbox must be replaced.
    fn renew_session(&mut self) -> StepResult<OwnedFd> {
        self.kill_everything();
        if let Some(network) = &self.network {
            // A socket left behind (a TIME_WAIT, an orphan, a fragment queue) outlives every
            // process, and no call resets the namespace's counters: only a new network
            // namespace would.
            if let Err(what) = network.as_fresh() {
                return Err((
                    format!("leave the network namespace as it was ({what}); the sandbox must be replaced"),
                    io::Error::from_raw_os_error(libc::EBUSY),
                ));
            }
        }
        self.start_spawner()
    }
}

/// The zygote's `main`: build the sandbox as configured, start the spawner, report, then wait
/// until the host hangs up.
pub(crate) fn main() -> i32 {
    sys::set_process_name(c"sandpool-zygote");
    let control = sys::take_control_socket();
    // Its own session: the host's terminal signals stay with the host. (Cannot fail: a fresh
    // process is never a group leader.)
    let _ = sys::new_session();
    let signals = match sys::take_over_signals() {
        Ok(fd) => fd,
        Err(e) => {
            let reply =
                Reply::SetupFailed { step: "take over signals".into(), errno: e.raw_os_error().unwrap_or(libc::EIO) };
            let _ = sys::send_with_fds(control.as_fd(), &reply.encode(), &[]);
            return 1;
        }
    };
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut trees = Vec::new();
    let config = match sys::recv_with_fds(control.as_fd(), &mut buf, &mut trees) {
        Ok(n) if n > 0 => match Request::decode(&buf[..n]) {
            Ok(Request::Configure(c)) => c,
            _ => return 2,
        },
        _ => return 2,
    };
    drop(buf);
    let mut zygote = Zygote {
        control,
        signals,
        config,
        binds: Vec::new(),
        filters: None,
        landlock_abi: None,
        landlock: None,
        report: ZygoteReport::default(),
        own_pid_ns: None,
        network: None,
    };
    let started = zygote.setup(trees).and_then(|report| {
        zygote.report = report;
        zygote.start_spawner()
    });
    match started {
        Ok(runner) => zygote.send(&Reply::Ready(zygote.report.clone()), &[runner.as_raw_fd()]),
        Err((step, e)) => {
            zygote.send(&Reply::SetupFailed { step, errno: e.raw_os_error().unwrap_or(libc::EIO) }, &[]);
            return 1;
        }
    }
    zygote.serve()
}
