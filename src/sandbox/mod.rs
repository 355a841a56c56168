//! The Linux sandbox: one isolated, reusable place to run untrusted commands.
//!
//! A [`Sandbox`] is a small init process (the *zygote*) in its own user, pid, mount, network,
//! IPC, UTS and cgroup namespaces, with a minimal root (read-only system directories, a fresh
//! `/proc`, a tiny `/dev`, a private size-capped `/tmp`), resource limits, and — on every
//! command it starts — Landlock, seccomp, `no_new_privs` and no capabilities. Making one costs
//! a few milliseconds (namespaces, mounts, a re-exec); running a command in a live one costs
//! about what a bare `vfork+exec` does.
//!
//! ```no_run
//! use sandpool::sandbox::{Command, Policy, Sandbox};
//! let mut sandbox = Sandbox::spawn(&Policy::default())?;
//! let out = sandbox.run(&Command::new("sh").args(["-c", "echo hello > f; cat f"]))?;
//! assert_eq!(out.stdout, b"hello\n");
//! sandbox.reset()?; // ends the session: a fresh one, with an empty /tmp
//! # Ok::<(), sandpool::sandbox::SandboxError>(())
//! ```
//!
//! How it is built without copying or endangering the host: the host calls `clone3` with
//! `CLONE_VM | CLONE_VFORK` and the namespace flags, and the child only makes raw system calls
//! until it re-executes this very program image, which a constructor turns into the zygote
//! before `main` runs. No page table of the host is copied, whatever its size, and nothing
//! between clone and exec allocates, locks or can panic.
//!
//! # Sessions: what separates one lease from the next
//!
//! Everything a sandbox runs between two resets is one *session* (in a pool, one lease). For
//! each session the zygote forks a *spawner* into a pid and an IPC namespace of their own; the
//! spawner makes a mount namespace with a `/proc` of its pid namespace that lists no process a
//! command may not trace (`hidepid=invisible`) and fresh `/tmp`, `/dev/shm` and `/dev/mqueue`.
//! It is pid 1 there, and every command is its child. So a command cannot name the zygote at
//! all, and reaches the spawner only as pid 1, on which the seccomp filter refuses every call
//! that takes a pid (signals, `pidfd_open`, `prlimit64`, scheduling, I/O priority,
//! `F_SETOWN`) and `clone(CLONE_PARENT)`. Behind that wall, after each command the spawner
//! compares its own settings (limits, scheduling, affinity, I/O priority, pending signals),
//! the session directories (entries, mode, owner, times, inode flags, extended attributes),
//! System V IPC (ever made, not just left) and the network namespace's counters with the
//! session's start: if all hold the session is *untouched*, the pid counter is rewound (the
//! next command is pid 2 again), and a pool hands the sandbox to the next lease as it is.
//! Otherwise [`Sandbox::reset`] ends the session, and the next one starts with new
//! namespaces and file systems: nothing is left to wipe, not even counters no call rewinds
//! (pids, inode numbers, IPC ids). The network namespace outlives sessions; a socket or a
//! counter there that moved makes the reset refuse, and the sandbox is replaced. None of this
//! depends on Landlock, which is a second wall: the tests run at Landlock ABI 7, capped at 5,
//! and without it. See [`SessionSeparation`].

mod cgroup;
mod channel;
mod command;
mod confine;
mod error;
mod host;
mod isolation;
mod policy;
pub mod probe;
#[doc(hidden)]
pub mod protocol;
mod readiness;
mod sys;
mod zygote;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use rustix::thread::UnshareFlags;

pub use cgroup::cgroup_removal_failures;
pub use command::{Command, CommandError, DEFAULT_PATH, ExitStatus, KillReason, MAX_ARGS_BYTES, Output, ResourceUsage};
pub use error::SandboxError;
pub use isolation::{Enforcement, Isolation, LandlockStatus, Limit, Namespaces, SeccompStatus, SessionSeparation};
pub use policy::{Bind, Network, Policy, PolicyBuilder, PolicyError, Requirement};
pub use readiness::Readiness;

use cgroup::SandboxCgroups;
use host::{SpawnGuard, errno, escaped, last_cap, recv_reply, take_runner, wait_reply};
use protocol::{BindSpec, Reply, Request, RunRequest, SpawnStep, ZygoteConfig, ZygoteReport};

/// The uid (and gid) commands run as inside every sandbox.
pub const SANDBOX_UID: u32 = zygote::SANDBOX_UID;

/// The host uid (and gid) a sandbox's user maps to when the host runs as root: a dedicated,
/// unprivileged id, so that nothing in a sandbox ever acts as the host's root. (An unprivileged
/// host maps its own uid, the only one it may.)
pub const HOST_UID_WHEN_ROOT: u32 = 1_000_000_000;

/// Processes of the sandbox itself (its init and its spawner), allowed on top of the policy's
/// process limit.
const OWN_PROCESSES: u64 = 2;

/// How long the host waits for the zygote to answer a setup or reset before declaring it dead.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the host waits for a killed command to be reported before declaring the sandbox
/// dead.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// One live sandbox. Dropping it (or [`Sandbox::destroy`]) kills its init through the pidfd,
/// which takes every process of the sandbox with it, reaps it and removes its cgroups (when
/// dropped, in the background if the kernel still holds one busy: dropping never waits).
#[derive(Debug)]
pub struct Sandbox {
    /// To the zygote: the configuration, then resets (each one a new session); closing it
    /// tells the zygote to take the whole sandbox down.
    control: OwnedFd,
    /// To the current session's spawner: commands and kills.
    runner: OwnedFd,
    pidfd: OwnedFd,
    pid: i32,
    cgroups: SandboxCgroups,
    policy: Policy,
    isolation: Isolation,
    dead: bool,
    reaped: bool,
    /// A command ran since the last reset.
    used: bool,
}

impl Sandbox {
    /// Makes a sandbox as `policy` says. Fails, saying which step and why, if any required
    /// layer cannot be applied.
    pub fn spawn(policy: &Policy) -> Result<Sandbox, SandboxError> {
        // Keep the zygote's entry point linked into every image that spawns sandboxes.
        std::hint::black_box(&sys::ZYGOTE_ENTRY);
        let image = host::self_image()?;
        let null = host::dev_null()?;
        let (euid, egid) = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
        let privileged = euid == 0;
        let (host_uid, host_gid) = if privileged { (HOST_UID_WHEN_ROOT, HOST_UID_WHEN_ROOT) } else { (euid, egid) };

        let mut missing = Vec::new();
        let cgroups = if policy.cgroups == Requirement::Off {
            SandboxCgroups::default()
        } else {
            let cg = SandboxCgroups::create(policy.memory_bytes, policy.max_processes + OWN_PROCESSES)
                .map_err(|(step, source)| SandboxError::Cgroup { step, source })?;
            if cg.memory.is_none() || cg.pids.is_none() {
                let why = cgroup::support().notes.join("; ");
                if policy.cgroups == Requirement::Required {
                    return Err(SandboxError::LayerUnavailable { layer: "cgroups", reason: why });
                }
                missing.push(format!("cgroups: {why} (rlimits used instead)"));
            }
            cg
        };

        let (has_tree, trees) = if privileged {
            host::idmapped_trees(policy, &mut missing)
        } else {
            (vec![false; policy.binds.len()], Vec::new())
        };
        let (host_end, zygote_end) =
            channel::socket_pair().map_err(|source| SandboxError::Channel { what: "control socket", source })?;
        let mut namespaces = UnshareFlags::NEWUSER
            | UnshareFlags::NEWNS
            | UnshareFlags::NEWPID
            | UnshareFlags::NEWIPC
            | UnshareFlags::NEWUTS
            | UnshareFlags::NEWCGROUP;
        if policy.network == Network::LoopbackOnly {
            namespaces |= UnshareFlags::NEWNET;
        }
        let zygote = sys::spawn_zygote(
            namespaces,
            image,
            zygote_end.as_fd(),
            null,
            &[sys::ZYGOTE_ARGV0],
            &[sys::ZYGOTE_ENV],
            last_cap(),
        )
        .map_err(|(step, source)| SandboxError::Clone { step: step.name(), source })?;
        drop(zygote_end);
        let mut guard = SpawnGuard { pidfd: Some(zygote.pidfd) };
        let pidfd = guard.pidfd.as_ref().expect("just set").as_fd();

        cgroups.attach(zygote.pid).map_err(|(step, source)| SandboxError::Cgroup { step, source })?;
        let self_join = cgroups
            .self_join_files(host_uid, host_gid)
            .map_err(|(step, source)| SandboxError::Cgroup { step, source })?;
        host::write_id_maps(zygote.pid, host_uid, host_gid, privileged).map_err(SandboxError::IdMap)?;

        let config = ZygoteConfig {
            share_network: policy.network == Network::Host,
            tmp_size: policy.tmp_size,
            binds: policy
                .binds
                .iter()
                .zip(&has_tree)
                .map(|(b, &has_tree)| BindSpec {
                    path: std::os::unix::ffi::OsStrExt::as_bytes(b.path.as_os_str()).to_vec(),
                    writable: b.writable,
                    has_tree,
                })
                .collect(),
            max_processes: policy.max_processes + OWN_PROCESSES,
            address_space: if cgroups.memory.is_some() { 0 } else { policy.memory_bytes },
            max_file_size: policy.max_file_size,
            max_open_files: policy.max_open_files,
            landlock: policy.landlock,
            seccomp: policy.seccomp,
            last_cap: last_cap(),
            landlock_max_abi: policy.landlock_max_abi.unwrap_or(u32::MAX),
            cgroup_tasks: self_join
                .iter()
                .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec())
                .collect(),
            socket_buffer_max: host::socket_buffer_max(policy.memory_bytes),
        };
        let tree_fds: Vec<BorrowedFd<'_>> = trees.iter().map(|t| t.as_fd()).collect();
        channel::send(host_end.as_fd(), &Request::Configure(config).encode(), &tree_fds)
            .map_err(|source| SandboxError::Control { step: "sending the configuration", source })?;
        let (report, runner) = match wait_reply(
            host_end.as_fd(),
            pidfd,
            Instant::now() + CONTROL_TIMEOUT,
            "waiting for the sandbox to be ready",
        )? {
            (Reply::Ready(report), fds) => (report, take_runner(fds)?),
            (Reply::SetupFailed { step, errno: e }, _) => {
                return Err(SandboxError::Setup { step: escaped(&step), source: errno(e) });
            }
            _ => return Err(SandboxError::Protocol(protocol::DecodeError::unexpected())),
        };
        if policy.landlock == Requirement::BestEffort && !report.landlock_enforced {
            missing.push(format!("landlock: not enforced (kernel ABI {})", report.landlock_abi));
        }
        if policy.seccomp == Requirement::BestEffort && !report.seccomp_enforced {
            missing.push("seccomp: not available in this kernel".into());
        }
        let isolation = build_isolation(policy, &report, &cgroups, host_uid, missing);
        let pidfd = guard.pidfd.take().expect("guard holds the pidfd");
        Ok(Sandbox {
            control: host_end,
            runner,
            pidfd,
            pid: zygote.pid,
            cgroups,
            policy: policy.clone(),
            isolation,
            dead: false,
            reaped: false,
            used: false,
        })
    }

    /// What this sandbox actually applied, layer by layer.
    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    /// The policy it was made with.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The pid of its init (the zygote) in the host's pid namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// A pidfd of its init: readable once the init has died (for `epoll`-based watchers).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Whether the session is as a reset leaves it, so a reset would change nothing: no
    /// command ran since the sandbox was made or last reset, or the last one left nothing
    /// behind. The spawner checks that after each command, before reporting its end: no
    /// process left, no entry added to `/tmp`, `/dev/shm` or `/dev/mqueue`, their modes and
    /// owners as they were, no System V IPC object. Writes inside binds persist by design and
    /// do not count.
    pub fn is_clean(&self) -> bool {
        !self.used
    }

    /// Whether its init is alive and no fatal error has been seen (one `poll` on the pidfd).
    pub fn is_alive(&self) -> bool {
        !self.dead && !host::exited(self.pidfd.as_fd())
    }

    /// Runs one command and waits for it: output captured up to the cap (then truncated and the
    /// command killed), the timeout enforced (the command and everything it started killed).
    /// Commands in the same sandbox share `/tmp` until [`Sandbox::reset`].
    ///
    /// Errors are about the sandbox or the input; a command that fails is an `Ok` [`Output`]
    /// with its exit status.
    pub fn run(&mut self, cmd: &Command) -> Result<Output, SandboxError> {
        if self.dead {
            return Err(SandboxError::Dead);
        }
        self.used = true;
        let command::EncodedCommand { argv, env, cwd } = cmd.encode()?;
        let program = cmd.get_program().to_string_lossy().into_owned();
        let timeout = cmd.get_timeout().unwrap_or(self.policy.timeout);
        let cap = cmd.get_output_limit().unwrap_or(self.policy.output_limit);
        let to_error = |what| move |source| SandboxError::Channel { what, source };
        let (out_r, out_w) = channel::pipe(true).map_err(to_error("stdout pipe"))?;
        let (err_r, err_w) = channel::pipe(true).map_err(to_error("stderr pipe"))?;
        let stdin = match cmd.get_stdin() {
            Some(bytes) => Some(channel::memfd_with(c"sandpool-stdin", bytes).map_err(to_error("stdin buffer"))?),
            None => None,
        };
        let request = Request::Run(RunRequest {
            argv,
            env,
            cwd,
            no_fork: cmd.get_no_fork(),
            cpu_seconds: self.policy.cpu_time.map_or(0, |t| t.as_secs().max(1)),
            has_stdin: stdin.is_some(),
        });
        let mut fds = Vec::with_capacity(3);
        if let Some(s) = &stdin {
            fds.push(s.as_fd());
        }
        fds.push(out_w.as_fd());
        fds.push(err_w.as_fd());
        let start = Instant::now();
        if let Err(source) = channel::send(self.runner.as_fd(), &request.encode(), &fds) {
            self.dead = true;
            return Err(SandboxError::Control { step: "sending the command", source });
        }
        drop(fds);
        drop((out_w, err_w, stdin));

        let mut streams = [Stream::new(out_r, cap), Stream::new(err_r, cap)];
        let mut deadline = start + timeout;
        let mut kill_sent: Option<KillReason> = None;
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if kill_sent.is_some() {
                    // The init did not report the killed command in time: it is unusable.
                    self.dead = true;
                    return Err(SandboxError::Dead);
                }
                kill_sent = Some(KillReason::Timeout);
                self.send_kill()?;
                deadline = Instant::now() + KILL_GRACE;
                continue;
            }
            let watched =
                [streams[0].poll_fd(), streams[1].poll_fd(), Some(self.runner.as_fd()), Some(self.pidfd.as_fd())];
            let ready = match channel::poll_each(watched, Some(left)) {
                Ok(ready) => ready,
                Err(source) => {
                    // The command's end would arrive later and confuse the next run.
                    self.dead = true;
                    return Err(SandboxError::Control { step: "waiting for the command", source });
                }
            };
            for (i, s) in streams.iter_mut().enumerate() {
                if !ready[i].is_empty() && s.read_available() && kill_sent.is_none() {
                    kill_sent = Some(KillReason::OutputLimit);
                    self.send_kill()?;
                    deadline = Instant::now() + KILL_GRACE;
                }
            }
            if ready[2].contains(PollFlags::IN) {
                match recv_reply(self.runner.as_fd(), "waiting for the command") {
                    Ok((reply, _)) => break reply,
                    Err(e) => {
                        self.dead = true;
                        return Err(e);
                    }
                }
            }
            if !ready[2].is_empty() || !ready[3].is_empty() {
                self.dead = true;
                return Err(SandboxError::Dead);
            }
        };
        let duration = start.elapsed();
        if kill_sent.is_some() && matches!(result, Reply::Exited { .. }) {
            // The spawner confirms the kill after the command's end: take that answer now,
            // within the same grace the kill started.
            if let Err(e) = self.wait_killed(deadline) {
                self.dead = true;
                return Err(e);
            }
        }
        let (status, usage) = match result {
            Reply::Exited { status, usage, untouched } => {
                // The spawner looked once the command ended: a session it left as a reset
                // would needs no reset (the pool then hands the sandbox on at once).
                self.used = !untouched;
                (status, usage)
            }
            Reply::SpawnFailed { step, errno: e } => {
                return Err(if step == SpawnStep::Exec {
                    if e == libc::ENOENT {
                        SandboxError::ProgramNotFound { program }
                    } else {
                        SandboxError::Exec { program, source: errno(e) }
                    }
                } else {
                    SandboxError::CommandSetup { step: step.name().into(), source: errno(e) }
                });
            }
            _ => {
                self.dead = true;
                return Err(SandboxError::Protocol(protocol::DecodeError::unexpected()));
            }
        };
        // The command has exited: what it wrote is in the pipes. Take it without waiting for
        // an end of file that a background process holding the pipe could delay forever.
        for s in &mut streams {
            s.read_available();
        }
        let status = if libc::WIFSIGNALED(status) {
            ExitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        };
        let killed = matches!(status, ExitStatus::Signaled(libc::SIGKILL));
        let killed_by_sandbox = kill_sent.filter(|_| killed);
        let [out, err] = streams;
        Ok(Output {
            status,
            timed_out: killed_by_sandbox == Some(KillReason::Timeout),
            killed_by_sandbox,
            stdout_truncated: out.truncated,
            stderr_truncated: err.truncated,
            stdout: out.data,
            stderr: err.data,
            duration,
            usage: ResourceUsage {
                user_time: Duration::from_micros(usage.user_us),
                system_time: Duration::from_micros(usage.system_us),
                max_rss_kib: usage.max_rss_kib,
            },
        })
    }

    fn send_kill(&mut self) -> Result<(), SandboxError> {
        channel::send(self.runner.as_fd(), &Request::Kill.encode(), &[]).map_err(|source| {
            self.dead = true;
            SandboxError::Control { step: "asking the sandbox to kill the command", source }
        })
    }

    /// Ends the session and starts a fresh one: every process the session left dies with its
    /// pid namespace, and the next session gets new ones (pid, IPC, mount, with new
    /// `/proc`, `/tmp`, `/dev/shm` and `/dev/mqueue`), so nothing of this one shows, not even
    /// counters no call can rewind (pids, inode numbers, IPC ids, change times). Fails if the
    /// network namespace, which sessions share, is not as it was made (a socket left in any
    /// state, a counter moved); then the sandbox must not be reused.
    pub fn reset(&mut self) -> Result<(), SandboxError> {
        self.start_reset()?;
        self.finish_reset()
    }

    /// Asks for a reset without waiting for it (one `sendmsg`); [`Sandbox::finish_reset`]
    /// collects the answer, which arrives on [`Sandbox::runner_fd`]. Lets a pool start resets
    /// from the releasing thread and collect them elsewhere.
    pub fn start_reset(&mut self) -> Result<(), SandboxError> {
        if self.dead {
            return Err(SandboxError::Dead);
        }
        channel::send(self.control.as_fd(), &Request::Reset.encode(), &[]).map_err(|source| {
            self.dead = true;
            SandboxError::Control { step: "asking for a reset", source }
        })
    }

    /// Waits for the answer to [`Sandbox::start_reset`].
    pub fn finish_reset(&mut self) -> Result<(), SandboxError> {
        if self.dead {
            return Err(SandboxError::Dead);
        }
        let reply = wait_reply(
            self.control.as_fd(),
            self.pidfd.as_fd(),
            Instant::now() + CONTROL_TIMEOUT,
            "waiting for the reset",
        );
        match reply {
            Ok((Reply::Ready(_), fds)) => {
                // The new session's spawner; the old one's socket, and whatever it still held,
                // goes with it.
                self.runner = take_runner(fds).inspect_err(|_| self.dead = true)?;
                self.used = false;
                Ok(())
            }
            Ok((Reply::ResetFailed { step, errno: e }, _)) => {
                self.dead = true;
                Err(SandboxError::Reset { step: escaped(&step), source: errno(e) })
            }
            Ok(_) => {
                self.dead = true;
                Err(SandboxError::Protocol(protocol::DecodeError::unexpected()))
            }
            Err(e) => {
                self.dead = true;
                Err(e)
            }
        }
    }

    /// The socket the answer to a started reset arrives on: readable once it is done (for
    /// `epoll`-based collectors).
    pub fn runner_fd(&self) -> BorrowedFd<'_> {
        self.control.as_fd()
    }

    /// Waits for the spawner's `Killed`, skipping the `Exited` of a command killed on the way;
    /// all of it by `deadline` (the kill's grace), however many replies the sandbox sends.
    fn wait_killed(&mut self, deadline: Instant) -> Result<(), SandboxError> {
        loop {
            match wait_reply(self.runner.as_fd(), self.pidfd.as_fd(), deadline, "waiting for the kill")? {
                (Reply::Killed, _) => return Ok(()),
                (Reply::Exited { .. }, _) => continue,
                _ => return Err(SandboxError::Protocol(protocol::DecodeError::unexpected())),
            }
        }
    }

    /// Whether the memory cgroup has killed a process of this sandbox for running out of
    /// memory (cgroup-enforced memory limits only).
    pub fn oom_killed(&self) -> bool {
        self.cgroups.oom_killed()
    }

    /// Kills the sandbox and everything in it, reaps its init and removes its cgroups, waiting
    /// while the kernel finishes tearing its last processes down (a millisecond or two as a
    /// rule; at most [`REMOVAL_PATIENCE`](cgroup::REMOVAL_PATIENCE), 10 s). Dropping a
    /// sandbox does the same but never waits for its cgroups: a busy one is removed in the
    /// background (see [`cgroup_removal_failures`]).
    pub fn destroy(mut self) -> Result<(), SandboxError> {
        self.teardown(true)
    }

    /// [`Sandbox::destroy`] that does not wait for the cgroups, as a drop does: for a pool,
    /// which may destroy a sandbox on the thread that releases it.
    pub(crate) fn destroy_without_waiting(mut self) -> Result<(), SandboxError> {
        self.teardown(false)
    }

    fn teardown(&mut self, wait_for_cgroups: bool) -> Result<(), SandboxError> {
        if self.reaped {
            return Ok(());
        }
        self.reaped = true;
        // ESRCH (already dead) is fine; the wait reaps it either way.
        host::kill_and_reap(self.pidfd.as_fd())
            .map_err(|source| SandboxError::Control { step: "reaping the init", source })?;
        if !wait_for_cgroups {
            self.cgroups.remove_or_defer();
            return Ok(());
        }
        self.cgroups
            .remove()
            .map_err(|source| SandboxError::Cgroup { step: "remove the sandbox's cgroup".into(), source })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Err(e) = self.teardown(false) {
            tracing::warn!(pid = self.pid, error = %e, "sandbox teardown failed");
        }
    }
}

/// One captured output stream.
struct Stream {
    fd: Option<OwnedFd>,
    data: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Stream {
    fn new(fd: OwnedFd, cap: usize) -> Self {
        Stream { fd: Some(fd), data: Vec::new(), cap, truncated: false }
    }

    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// Reads what is there without blocking; returns true the first time the cap is passed.
    fn read_available(&mut self) -> bool {
        let Some(fd) = &self.fd else { return false };
        let mut chunk = [0u8; 64 * 1024];
        let was_truncated = self.truncated;
        loop {
            match rustix::io::read(fd, &mut chunk) {
                Ok(0) => {
                    self.fd = None;
                    break;
                }
                Ok(n) => {
                    let room = self.cap.saturating_sub(self.data.len());
                    self.data.extend_from_slice(&chunk[..n.min(room)]);
                    if n > room {
                        self.truncated = true;
                    }
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break, // EAGAIN: nothing more for now
            }
        }
        self.truncated && !was_truncated
    }
}

fn build_isolation(
    policy: &Policy,
    report: &ZygoteReport,
    cgroups: &SandboxCgroups,
    host_uid: u32,
    missing: Vec<String>,
) -> Isolation {
    let ms = |d: Duration| d.as_millis().min(u64::MAX as u128) as u64;
    let mut limits = vec![
        match cgroups.memory {
            Some(e) => Limit { name: "memory", value: policy.memory_bytes, enforced_by: e, note: "whole sandbox" },
            None => Limit {
                name: "memory",
                value: policy.memory_bytes,
                enforced_by: Enforcement::Rlimit,
                note: "per process (RLIMIT_AS): no writable memory cgroup",
            },
        },
        match cgroups.pids {
            Some(e) => Limit {
                name: "processes",
                value: policy.max_processes,
                enforced_by: e,
                note: "whole sandbox, its init and spawner not counted",
            },
            None => Limit {
                name: "processes",
                value: policy.max_processes,
                enforced_by: Enforcement::Rlimit,
                note: "whole sandbox (RLIMIT_NPROC, counted in its own user namespace), its init and spawner not counted",
            },
        },
        Limit {
            name: "tmp_size",
            value: policy.tmp_size,
            enforced_by: Enforcement::Tmpfs,
            note: "/tmp and /dev/shm each",
        },
        Limit {
            name: "timeout",
            value: ms(policy.timeout),
            enforced_by: Enforcement::Host,
            note: "default per command, ms",
        },
        Limit {
            name: "output",
            value: policy.output_limit as u64,
            enforced_by: Enforcement::Host,
            note: "per stream, bytes; truncated and killed past it",
        },
        Limit {
            name: "file_size",
            value: policy.max_file_size,
            enforced_by: Enforcement::Rlimit,
            note: "per file (RLIMIT_FSIZE)",
        },
        Limit {
            name: "open_files",
            value: policy.max_open_files,
            enforced_by: Enforcement::Rlimit,
            note: "per process (RLIMIT_NOFILE)",
        },
    ];
    if let Some(cpu) = policy.cpu_time {
        limits.push(Limit {
            name: "cpu_time",
            value: ms(cpu),
            enforced_by: Enforcement::Rlimit,
            note: "per process (RLIMIT_CPU), ms",
        });
    }
    Isolation {
        namespaces: Namespaces {
            user: true,
            pid: true,
            mount: true,
            network: policy.network == Network::LoopbackOnly,
            ipc: true,
            uts: true,
            cgroup: true,
        },
        sessions: SessionSeparation {
            own_pid_namespace: true,
            pid_counter_rewound: true,
            calls_on_the_spawner_refused: report.seccomp_enforced,
            spawner_settings_checked: true,
            fresh_session_on_reset: true,
        },
        network: policy.network,
        loopback_only: report.loopback_only,
        root: "minimal: tmpfs root via pivot_root, read-only system dirs, fresh /proc, tiny /dev, private /tmp",
        landlock: LandlockStatus {
            abi: (report.landlock_abi > 0).then_some(report.landlock_abi),
            enforced: report.landlock_enforced,
            scoped: report.landlock_scoped,
        },
        seccomp: SeccompStatus {
            enforced: report.seccomp_enforced,
            denied_syscalls: if report.seccomp_enforced { report.seccomp_denied } else { 0 },
        },
        no_new_privs: true,
        capabilities_dropped: true,
        uid: SANDBOX_UID,
        host_uid,
        limits,
        missing,
    }
}

#[cfg(test)]
mod tests {
    use super::escaped;

    #[test]
    fn what_a_sandbox_says_is_escaped_before_it_is_printed() {
        assert_eq!(escaped("mount /proc"), "mount /proc");
        assert_eq!(escaped("\u{1b}[2J\u{1b}]0;owned\u{7}x\n"), "\\u{1b}[2J\\u{1b}]0;owned\\u{7}x\\n");
        assert_eq!(escaped("a\\b"), "a\\\\b");
        let long = "é".repeat(500);
        assert_eq!(escaped(&long).chars().count(), 203);
    }
}
