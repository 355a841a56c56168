//! How the zygote makes, ends and switches sessions.
//!
//! A session is a spawner, pid 1 of a pid namespace of its own (with an IPC namespace, and a
//! mount namespace it makes itself), and everything its commands start. A reset ends the
//! current one and hands the host the next. Making one costs about a millisecond (the
//! spawner's mounts, Landlock ruleset and filter), so once the host allows it, the zygote
//! keeps the next session made ahead of need, a [`Spare`], right after each reset: the next
//! reset only ends the current session and switches to it, and the making happens while
//! the host's lease runs.
//!
//! A spare shares the zygote's network namespace, unless the last session to end left its
//! namespace unlike a new one (a lease that used the network): then it gets a new one of its
//! own, set up as the first. A spare sharing a namespace that the session before it then
//! used is no longer fresh, and is replaced on the spot.
//!
//! A session whose commands changed nothing but files in its `/tmp` and `/dev/shm` is not
//! ended: a *reset in place* mounts new file systems there, in the session's own mount
//! namespace ([`Zygote::renew_dirs_in_place`]). They are made with a session, mounted
//! nowhere ([`SpareDirs`]), so that its spawner's Landlock ruleset can name them; a session
//! gets them where the one before changed only files.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;

use rustix::fs::OFlags;
use rustix::process::{Pid, Signal, WaitOptions};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use super::super::channel;
use super::super::protocol::{LandlockEnforcement, Reply, RuntimeReport};
use super::super::sys;
use super::net::NetworkWatch;
use super::rootfs::{SpareDirs, keep_binds, renew_session_dirs};
use super::{Spawner, StepResult, Zygote, open, step};

/// The next session, made ahead of need: its spawner is confining itself, or waits, ready,
/// for its first command.
pub(super) struct Spare {
    /// Its spawner, by its pid here.
    pid: i32,
    /// The host's end of its runner socket, whose first message says whether it is ready.
    runner: OwnedFd,
    /// The watch of its own network namespace, if it has one (else it shares the current
    /// session's).
    network: Option<Rc<NetworkWatch>>,
    /// The session directories made ready for its resets in place.
    spare_dirs: Vec<SpareDirs>,
}

/// How many resets in place a session made after one that changed only files gets (each a
/// new `/tmp` and `/dev/shm`, made with the session; then it ends as any other): about 20 µs
/// and 4 KiB each. More means fewer whole sessions made and torn down for a run of such
/// leases (one in 17).
const SPARE_DIRS_PER_SESSION: usize = 16;

/// Kills `pid`, a spawner, and waits until it is reaped: a pid namespace's init dies only
/// once every other process of its namespace is gone, so then none of the session is left.
fn kill_and_reap(pid: i32) {
    let Some(pid) = Pid::from_raw(pid) else { return };
    let _ = rustix::process::kill_process(pid, Signal::KILL);
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::from_bits_retain(libc::__WALL as u32)) {
            Err(rustix::io::Errno::INTR) => continue,
            // Reaped, or reaped already (ECHILD).
            _ => return,
        }
    }
}

impl Zygote {
    /// Starts a session and waits until its spawner is ready: returns the host's end of its
    /// runner socket, and how much of its Landlock ruleset the kernel enforces.
    pub(super) fn start_spawner(&mut self) -> StepResult<(OwnedFd, LandlockEnforcement, RuntimeReport)> {
        let (pid, runner, spare_dirs) = self.fork_spawner(Vec::new())?;
        self.switch_to(pid, self.network.clone(), spare_dirs);
        let (landlock, runtime) = await_spawner(&runner)?;
        Ok((runner, landlock, runtime))
    }

    /// Forks a spawner into a pid and an IPC namespace of their own, below the zygote's, where
    /// it is pid 1 and every command is its child: commands never see the zygote, and the
    /// spawner ends them all when it goes. The spawner makes the session's mount namespace,
    /// confines itself (its Landlock ruleset names the roots of `spare_dirs`, the session's
    /// directories for its resets in place) and says, on its new socket, whether it is ready.
    /// Returns its pid, the host's end of that socket, and `spare_dirs`; does not wait.
    fn fork_spawner(&mut self, spare_dirs: Vec<SpareDirs>) -> StepResult<(i32, OwnedFd, Vec<SpareDirs>)> {
        let (host_end, spawner_end) = step("create the runner socket", channel::socket_pair())?;
        // The zygote's next child starts new namespaces; first make its own pid namespace
        // the one they are made below again (`unshare` only once moves where children go).
        let own = match self.own_pid_ns.take() {
            Some(fd) => fd,
            None => step("open the zygote's pid namespace", open(c"/proc/self/ns/pid", OFlags::RDONLY))?,
        };
        let own = self.own_pid_ns.insert(own);
        let entered = rustix::thread::move_into_link_name_space(own.as_fd(), Some(LinkNameSpaceType::ProcessID));
        step("return to the zygote's pid namespace", entered.map_err(io::Error::from))?;
        let made = sys::unshare_namespaces(UnshareFlags::NEWPID | UnshareFlags::NEWIPC);
        step("make the session's namespaces", made)?;
        // Where the new spawner finds them (its copy of the zygote's memory).
        self.forking_spare_dirs = spare_dirs;
        let forked = sys::fork_single_threaded();
        match step("fork the spawner", forked) {
            Err(e) => {
                self.forking_spare_dirs.clear();
                Err(e)
            }
            Ok(Some(pid)) => Ok((pid, host_end, std::mem::take(&mut self.forking_spare_dirs))),
            Ok(None) => {
                // This process is a spawner now: it never comes back to the zygote's code.
                drop(host_end);
                let code = Spawner::start(spawner_end, self);
                sys::exit_now(code)
            }
        }
    }

    /// Makes `pid` the current session's spawner, in the network namespace `network` watches,
    /// with `spare_dirs` for its resets in place: the page where spawners leave the child
    /// they wait for is its now.
    fn switch_to(&mut self, pid: i32, network: Option<Rc<NetworkWatch>>, spare_dirs: Vec<SpareDirs>) {
        if let Some(watch) = &self.vfork_watch {
            watch.clear();
        }
        self.spawner_pid = Some(pid);
        self.held_seen = None;
        self.session_network = network;
        self.session_spare_dirs = spare_dirs;
    }

    /// Ends the current session: its spawner is killed and reaped, and with it every process
    /// of its pid namespace.
    fn end_session(&mut self) {
        if let Some(pid) = self.spawner_pid.take() {
            kill_and_reap(pid);
        }
        self.session_spare_dirs.clear();
        channel::drain(self.channels().signals.as_fd());
    }

    /// A reset in place, after a session whose commands changed nothing but files in its
    /// `/tmp` and `/dev/shm`: the zygote enters the session's mount namespace, mounts fresh
    /// session directories there ([`renew_session_dirs`]), and comes back. The session keeps
    /// its spawner, namespaces and Landlock ruleset; its spawner, told by the host, moves to
    /// the new `/tmp` and records it as the session's start. A failure here leaves the
    /// session to a full reset; one that keeps the zygote from coming back ends the sandbox.
    pub(super) fn renew_dirs_in_place(&mut self) -> StepResult<()> {
        let pid =
            self.spawner_pid.ok_or(("find the session's spawner".into(), io::Error::from_raw_os_error(libc::ESRCH)))?;
        let Some(dirs) = self.session_spare_dirs.pop() else {
            return Err((
                "take the session's next directories (none left)".into(),
                io::Error::from_raw_os_error(libc::ENOSPC),
            ));
        };
        let session = open(&super::c(&format!("/proc/{pid}/ns/mnt")), OFlags::RDONLY);
        let session = step("open the session's mount namespace", session)?;
        let own = match self.own_mnt_ns.take() {
            Some(fd) => fd,
            None => step("open the zygote's mount namespace", open(c"/proc/self/ns/mnt", OFlags::RDONLY))?,
        };
        let own = self.own_mnt_ns.insert(own);
        // The binds below /tmp, from the zygote's own tree, before it enters the session's.
        let kept = keep_binds(&self.binds)?;
        let entered = rustix::thread::move_into_link_name_space(session.as_fd(), Some(LinkNameSpaceType::Mount));
        step("enter the session's mount namespace", entered.map_err(io::Error::from))?;
        let renewed = renew_session_dirs(&self.config, kept, dirs);
        // `setns` moved the zygote's root and working directory to the session's root: back to
        // its own namespace's, and to its /tmp, where it works.
        let back = rustix::thread::move_into_link_name_space(own.as_fd(), Some(LinkNameSpaceType::Mount))
            .map_err(io::Error::from)
            .and_then(|()| std::env::set_current_dir("/tmp"));
        if let Err(e) = back {
            // In the session's mount namespace, the zygote must make nothing more.
            tracing::error!(error = %e, "sandpool: the zygote could not return to its mount namespace");
            self.kill_everything();
            sys::exit_now(1);
        }
        renewed
    }

    /// Notes a child the zygote reaped: the current session's spawner, or the spare's.
    pub(super) fn reaped(&mut self, pid: i32) {
        if self.spawner_pid == Some(pid) {
            self.spawner_pid = None;
        }
        if self.spare.as_ref().is_some_and(|s| s.pid == pid) {
            self.spare = None;
        }
    }

    /// Whether the network namespace of the session that ended last was left as a new one
    /// (looked at once, then remembered); with the host's network, or none ended, yes.
    fn ended_network_fresh(&mut self) -> bool {
        match &mut self.ended_network {
            None => true,
            Some((_, Some(fresh))) => *fresh,
            Some((watch, looked)) => *looked.insert(watch.as_fresh().is_ok()),
        }
    }

    /// Ends the session and starts the next: the spare, if there is one it may use (its own
    /// network namespace, or a shared one still as new), else a new session, in a new network
    /// namespace if the zygote's is no longer as it was made (a socket left behind, a
    /// TIME_WAIT or an orphan, outlives every process, and no call resets a namespace's
    /// counters). An old namespace goes once the last socket in it is freed.
    /// A session made here (no spare to switch to) after one whose commands changed only
    /// files (`files_only`) gets session directories for its resets in place.
    /// Returns the host's end of the new session's runner socket, whether the session was
    /// made ahead, and how its runtime template started.
    pub(super) fn renew_session(&mut self, files_only: bool) -> StepResult<(OwnedFd, bool, RuntimeReport)> {
        self.end_session();
        self.ended_network = self.session_network.take().map(|watch| (watch, None));
        if let Some(spare) = self.spare.take() {
            if spare.network.is_some() || self.ended_network_fresh() {
                match await_spawner(&spare.runner) {
                    Ok((_, runtime)) => {
                        self.switch_to(spare.pid, spare.network.or_else(|| self.network.clone()), spare.spare_dirs);
                        return Ok((spare.runner, true, runtime));
                    }
                    Err((what, e)) => tracing::debug!(step = %what, error = %e, "the spare session failed"),
                }
            }
            // Unusable: it shares a namespace no longer new, or it failed.
            kill_and_reap(spare.pid);
        }
        // The zygote's namespace is the ended session's, or a failed spare's (new).
        let zygote_fresh = match (&self.network, &self.ended_network) {
            (Some(zygote), Some((ended, _))) if Rc::ptr_eq(zygote, ended) => self.ended_network_fresh(),
            (network, _) => network.as_ref().is_none_or(|n| n.as_fresh().is_ok()),
        };
        if !zygote_fresh {
            self.network = None;
            step("make a new network namespace", sys::unshare_namespaces(UnshareFlags::NEWNET))?;
            self.network = Some(Rc::new(self.set_up_network()?));
        }
        let (pid, runner, spare_dirs) = self.fork_spawner(self.spare_dirs_if(files_only))?;
        self.switch_to(pid, self.network.clone(), spare_dirs);
        let (_, runtime) = await_spawner(&runner)?;
        Ok((runner, false, runtime))
    }

    /// Makes the spare, if there is none: forks its spawner (in a network namespace of its
    /// own where the session that ended last left its own unlike new; with session
    /// directories for its resets in place where that session had changed only files,
    /// `files_only`) and leaves it to confine itself. A failure leaves no spare; the next
    /// reset then makes its session as it goes.
    pub(super) fn make_spare(&mut self, files_only: bool) {
        // A lease that used the network is likely followed by another.
        let own_network = !self.ended_network_fresh();
        self.ended_network = None;
        if self.spare.is_some() {
            return;
        }
        let network = match self.spare_network(own_network) {
            Ok(network) => network,
            Err((what, e)) => {
                tracing::debug!(step = %what, error = %e, "no spare session");
                return;
            }
        };
        let spare_dirs = self.spare_dirs_if(files_only);
        match self.fork_spawner(spare_dirs) {
            Ok((pid, runner, spare_dirs)) => self.spare = Some(Spare { pid, runner, network, spare_dirs }),
            Err((what, e)) => tracing::debug!(step = %what, error = %e, "no spare session"),
        }
    }

    /// Session directories for a new session's resets in place, if the session that ended
    /// last changed only files (`files_only`: a lease that did is likely followed by
    /// another); none if they cannot be made (its resets then end it).
    fn spare_dirs_if(&self, files_only: bool) -> Vec<SpareDirs> {
        if !files_only {
            return Vec::new();
        }
        let made: io::Result<Vec<SpareDirs>> =
            (0..SPARE_DIRS_PER_SESSION).map(|_| SpareDirs::new(&self.config)).collect();
        made.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "no session directories for resets in place");
            Vec::new()
        })
    }

    /// The spare's own network namespace, made and set up (the zygote moves into it), if it
    /// is to have one (`own`); `None` where it shares the zygote's.
    fn spare_network(&mut self, own: bool) -> StepResult<Option<Rc<NetworkWatch>>> {
        if !own || self.config.share_network {
            return Ok(None);
        }
        step("make the spare's network namespace", sys::unshare_namespaces(UnshareFlags::NEWNET))?;
        let network = Rc::new(self.set_up_network()?);
        self.network = Some(Rc::clone(&network));
        Ok(Some(network))
    }
}

/// Waits for a new spawner's first message: ready (with what its Landlock ruleset enforces,
/// and how its runtime template started), or the step that failed.
fn await_spawner(runner: &OwnedFd) -> StepResult<(LandlockEnforcement, RuntimeReport)> {
    // Its first message is short: ready, or a failed step (a path at most).
    let mut buf = [0u8; 8192];
    let mut fds = Vec::new();
    let n = step("hear from the spawner", channel::recv(runner.as_fd(), &mut buf, &mut fds))?;
    match Reply::decode(&buf[..n]) {
        Ok(Reply::ResetDone { landlock, runtime }) if fds.is_empty() => Ok((landlock, runtime)),
        Ok(Reply::SetupFailed { step, errno }) => Err((step, io::Error::from_raw_os_error(errno))),
        // A hang-up (0 bytes) or anything else: the spawner died before it was ready.
        _ => Err(("start the spawner".into(), io::Error::from_raw_os_error(libc::ECHILD))),
    }
}
