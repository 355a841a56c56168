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
//! (pids, inode numbers, IPC ids). The network namespace outlives quiet sessions; after a
//! socket or a counter there moved, the next session gets a new one. None of this
//! depends on Landlock, which is a second wall: the tests run at Landlock ABI 7, capped at 5,
//! and without it. See [`SessionSeparation`].

mod cgroup;
mod channel;
mod child;
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
mod run;
pub mod runtime;
mod sys;
mod zygote;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::thread::UnshareFlags;

pub use cgroup::cgroup_removal_failures;
pub use child::{Child, ChildExit, ChildPty, ChildStderr, ChildStdin, ChildStdout, Killer};
pub use command::{
    Command, CommandError, DEFAULT_PATH, ExitStatus, KillReason, MAX_ARGS_BYTES, Output, ResourceUsage, Stdio,
    UsageSource,
};
pub use error::SandboxError;
pub use isolation::{
    Enforcement, Isolation, LandlockStatus, Limit, Namespaces, RuntimeSeparation, SeccompStatus, SessionSeparation,
};
pub use policy::{Bind, Network, Policy, PolicyBuilder, PolicyError, Requirement};
pub(crate) use readiness::Readiness;
pub use runtime::Runtime;

use cgroup::SandboxCgroups;
use child::SessionLink;
#[cfg(feature = "tokio")]
pub(crate) use child::take_terminal_now;
use host::{SpawnGuard, errno, escaped, last_cap, take_runner, wait_reply};
use protocol::{BindSpec, CommandsCgroup, Reply, Request, ZygoteConfig};
#[cfg(feature = "tokio")]
pub(crate) use run::read_available;
#[cfg(feature = "tokio")]
pub(crate) use sys::reactor;

/// The uid (and gid) commands run as inside every sandbox.
pub const SANDBOX_UID: u32 = zygote::SANDBOX_UID;

pub use host::uids::{HOST_UID_BASE, HOST_UID_COUNT};

/// The host uid (and gid) a sandbox's user maps to on a root host when it cannot have one of
/// its own (no root-only directory for the lock file that keeps them apart, or every uid of
/// [`HOST_UID_BASE`]`..+`[`HOST_UID_COUNT`] held): shared by every such sandbox, which
/// [`Isolation::missing`] then says. Otherwise each live sandbox of a root host has a host
/// uid of its own from that range, never shared: nothing in a sandbox ever acts as the
/// host's root, and no per-user budget or permission of the kernel is shared between
/// sandboxes. (An unprivileged host maps its own uid, the only one it may: its sandboxes
/// share it.)
pub const SHARED_HOST_UID: u32 = HOST_UID_BASE - 1;

/// Processes of the sandbox itself (its init and its spawner), allowed on top of the policy's
/// process limit.
const OWN_PROCESSES: u64 = 2;

/// The sandbox's own processes beside the commands': [`OWN_PROCESSES`], and with a runtime
/// the template of the current session and of the next one made ahead, and the child a
/// template forks ahead of the next command it serves.
fn own_processes(policy: &Policy) -> u64 {
    OWN_PROCESSES + if policy.runtime.is_some() { 3 } else { 0 }
}

/// How long the host waits for the zygote to answer a setup or reset before declaring it dead.
pub(crate) const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// How a reset left the sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResetKind {
    /// The same session, with fresh session directories (its commands had changed nothing
    /// else).
    InPlace,
    /// A new session, made ahead of need (the spare the zygote switched to).
    MadeAhead,
    /// A new session, made as the reset went.
    NewSession,
}

/// How long the host waits for a killed command to be reported before declaring the sandbox
/// dead (or its session unresponsive).
const KILL_GRACE: Duration = Duration::from_secs(10);

/// How long the host waits for room in a session's request queue: a spawner that reads no
/// request for that long has stopped answering.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// One live sandbox. Dropping it (or [`Sandbox::destroy`]) kills its init through the pidfd,
/// which takes every process of the sandbox with it, reaps it and removes its cgroups (when
/// dropped, in the background if the kernel still holds one busy: dropping never waits).
#[derive(Debug)]
pub struct Sandbox {
    /// To the zygote: the configuration, then resets (each one a new session); closing it
    /// tells the zygote to take the whole sandbox down.
    control: OwnedFd,
    /// To the current session's spawner: commands and kills.
    runner: Arc<SessionLink>,
    pidfd: OwnedFd,
    pid: i32,
    cgroups: SandboxCgroups,
    /// Its cgroups' usage files, which its children read.
    usage: Arc<cgroup::UsageFiles>,
    policy: Policy,
    isolation: Isolation,
    dead: bool,
    reaped: bool,
    /// The next command's token (its name in `Signal` requests).
    next_token: AtomicU64,
    /// Its memory cgroup's OOM kill count when the current lease (or session) began.
    oom_kills_before: AtomicU64,
    /// How the current session's runtime template started (`None` without a runtime).
    runtime: Option<RuntimeStatus>,
    /// On a root host, the host uid it holds alone; released after its init is reaped (fields
    /// drop after [`Drop::drop`]).
    _own_uid: Option<host::uids::HostUid>,
}

/// Whether a sandbox's runtime template serves (see [`Runtime`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuntimeStatus {
    /// The current session's template started: commands naming its interpreter are served.
    Ready,
    /// It could not start (the interpreter is missing, a preloaded module failed to import):
    /// every command is exec'd, as without a runtime.
    Failed {
        /// What the interpreter or the spawner said.
        reason: String,
    },
}

impl RuntimeStatus {
    /// From a session's report.
    fn from_report(report: &protocol::RuntimeReport) -> Option<RuntimeStatus> {
        match report {
            protocol::RuntimeReport::None => None,
            protocol::RuntimeReport::Ready => Some(RuntimeStatus::Ready),
            protocol::RuntimeReport::Failed(why) => Some(RuntimeStatus::Failed { reason: why.clone() }),
        }
    }
}

impl Sandbox {
    /// Makes a sandbox as `policy` says. Fails, saying which step and why, if any required
    /// layer cannot be applied; where the host refuses namespaces altogether (a container's
    /// seccomp profile, AppArmor's restriction, user namespaces off), with
    /// [`SandboxError::HostRefuses`], which says what refuses and how to allow it.
    ///
    /// On a cgroup v2 host, where this process's cgroup is delegated to it (or it runs as
    /// root), the first sandbox it makes prepares a subtree there once: cgroup v2 lets a
    /// cgroup hold processes or hand controllers down, not both, so *every process of that
    /// cgroup* moves into a leaf, `sandpool-host`, and sandboxes get cgroups under `sandpool`
    /// (README: "Limits, per kind of host"). Give sandpool a cgroup of its own (a
    /// `Delegate=yes` unit or scope) if other processes share yours.
    pub fn spawn(policy: &Policy) -> Result<Sandbox, SandboxError> {
        Sandbox::spawn_unexplained(policy).map_err(|e| {
            let refused = match &e {
                SandboxError::Clone { source, .. } => source.raw_os_error().map(|n| (n, true)),
                SandboxError::Setup { source, .. } | SandboxError::IdMap(source) => {
                    source.raw_os_error().map(|n| (n, false))
                }
                _ => None,
            };
            match refused.and_then(|(errno, at_clone)| host::what_refuses_namespaces(errno, at_clone)) {
                Some(reason) => SandboxError::HostRefuses { reason, source: Box::new(e) },
                None => e,
            }
        })
    }

    fn spawn_unexplained(policy: &Policy) -> Result<Sandbox, SandboxError> {
        // Keep the zygote's entry point linked into every image that spawns sandboxes.
        std::hint::black_box(&sys::ZYGOTE_ENTRY);
        let image = host::self_image()?;
        let null = host::dev_null()?;
        let (euid, egid) = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
        let privileged = euid == 0;
        let mut missing = Vec::new();
        let own_uid = match privileged.then(host::uids::claim) {
            Some(Ok(claimed)) => Some(claimed),
            Some(Err(e)) => {
                missing.push(format!(
                    "a host uid of its own: {e}; this sandbox runs as host uid {SHARED_HOST_UID}, shared with every \
                     sandbox of this host that has none either"
                ));
                None
            }
            None => None,
        };
        let (host_uid, host_gid) = match (&own_uid, privileged) {
            (Some(claimed), _) => (claimed.uid, claimed.uid),
            (None, true) => (SHARED_HOST_UID, SHARED_HOST_UID),
            (None, false) => (euid, egid),
        };

        let mut cgroups = if policy.cgroups == Requirement::Off {
            SandboxCgroups::default()
        } else {
            let cg = SandboxCgroups::create(
                policy.memory_bytes,
                policy.max_processes + own_processes(policy),
                policy.cpus(),
            )
            .map_err(|(step, source)| SandboxError::Cgroup { step, source })?;
            if cg.memory.is_none() || cg.pids.is_none() {
                let why = cgroup::support().notes.join("; ");
                if policy.cgroups == Requirement::Required {
                    return Err(SandboxError::LayerUnavailable { layer: "cgroups", reason: why });
                }
                missing.push(format!("cgroups: {why} (rlimits used instead)"));
            }
            if policy.cpu_millis.is_some() && cg.cpu.is_none() {
                let why = "no usable cpu controller (cgroup v2 or v1): the CPU share is not enforced";
                if policy.cgroups == Requirement::Required {
                    return Err(SandboxError::LayerUnavailable { layer: "cgroups", reason: why.into() });
                }
                missing.push(format!("cpu: {why}"));
            }
            cg
        };

        let (has_tree, trees) = if privileged {
            host::idmapped_trees(policy, host_uid, &mut missing)
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
        let cgroup_dir = cgroups
            .v2_dir()
            .transpose()
            .map_err(|source| SandboxError::Cgroup { step: "open the sandbox's cgroup v2 directory".into(), source })?;
        let spawn = |cgroup: Option<BorrowedFd<'_>>| {
            sys::spawn_zygote(&sys::ZygoteSpec {
                namespaces,
                exe: image,
                control: zygote_end.as_fd(),
                devnull: null,
                argv: &[sys::ZYGOTE_ARGV0],
                envp: &[sys::ZYGOTE_ENV],
                last_cap: last_cap(),
                cgroup,
            })
        };
        // Born in its cgroup where the kernel can (5.7+); moved in just after, otherwise.
        let (zygote, born_in_cgroup) = match cgroup_dir.as_ref().map(|dir| spawn(Some(dir.as_fd()))) {
            Some(Ok(zygote)) => (zygote, true),
            Some(Err((sys::ZygoteChildStep::Clone, e))) => {
                tracing::debug!(error = %e, "clone3 with CLONE_INTO_CGROUP refused; attaching after the clone");
                (spawn(None).map_err(|(step, source)| SandboxError::Clone { step: step.name(), source })?, false)
            }
            Some(Err((step, source))) => return Err(SandboxError::Clone { step: step.name(), source }),
            None => (spawn(None).map_err(|(step, source)| SandboxError::Clone { step: step.name(), source })?, false),
        };
        drop((zygote_end, cgroup_dir));
        let mut guard = SpawnGuard { pidfd: Some(zygote.pidfd) };
        let pidfd = guard.pidfd.as_ref().expect("just set").as_fd();

        if !born_in_cgroup {
            cgroups.attach(zygote.pid).map_err(|(step, source)| SandboxError::Cgroup { step, source })?;
        }
        let self_join = cgroups
            .self_join_files(host_uid, host_gid)
            .map_err(|(step, source)| SandboxError::Cgroup { step, source })?;
        host::write_id_maps(zygote.pid, host_uid, host_gid, privileged).map_err(SandboxError::IdMap)?;
        // The commands' own memory cgroup: joined by each command (v1), or, for a zygote born
        // in its cgroup, each command born in it (v2; see `cgroup::COMMANDS`).
        let split = if born_in_cgroup {
            cgroups
                .split_for_commands(host_uid, host_gid)
                .transpose()
                .map_err(|(step, source)| SandboxError::Cgroup { step, source })?
        } else {
            None
        };
        if cgroups.memory == Some(Enforcement::CgroupV2) && split.is_none() {
            missing.push(
                "memory: the commands share the init's cgroup (clone3 with CLONE_INTO_CGROUP is refused here): out \
                 of memory, a command that lowers its oom_score_adj can have the sandbox's init killed"
                    .into(),
            );
        }
        let commands_tasks = cgroups
            .commands_join_file()
            .transpose()
            .map_err(|source| SandboxError::Cgroup { step: "open the commands' cgroup".into(), source })?;
        let (commands_cgroup, commands_fds) = match (&split, &commands_tasks) {
            (Some(s), _) => (CommandsCgroup::BornIn, vec![s.commands_dir.as_fd(), s.init_procs.as_fd()]),
            (None, Some(tasks)) => (CommandsCgroup::JoinTasks, vec![tasks.as_fd()]),
            (None, None) => (CommandsCgroup::None, Vec::new()),
        };

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
            // Where a cgroup counts processes exactly, the rlimit is only a second fence, and
            // leaves room for a session made ahead (see `SandboxCgroups::make_room_for_a_spare`).
            max_processes: policy.max_processes + own_processes(policy) + u64::from(cgroups.pids.is_some()),
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
            commands_cgroup,
            runtime: policy.runtime.as_ref().map(|rt| protocol::RuntimeSpec {
                interpreter: rt.interpreter.as_os_str().as_encoded_bytes().to_vec(),
                preload: rt.preload.iter().map(|m| m.as_bytes().to_vec()).collect(),
                share_across_leases: rt.share_across_leases,
            }),
        };
        // The binds' trees, then the commands' cgroup (and the init's own leaf).
        let tree_fds: Vec<BorrowedFd<'_>> = trees.iter().map(|t| t.as_fd()).chain(commands_fds).collect();
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
        drop(split);
        // The zygote has moved into its own leaf: the sandbox's cgroup may hand memory down.
        cgroups.finish_split().map_err(|(step, source)| SandboxError::Cgroup { step, source })?;
        if policy.landlock == Requirement::BestEffort && !report.landlock_enforced {
            missing.push(format!("landlock: not enforced (kernel ABI {})", report.landlock_abi));
        }
        if policy.seccomp == Requirement::BestEffort && !report.seccomp_enforced {
            missing.push("seccomp: not available in this kernel".into());
        }
        let isolation = isolation::build_isolation(policy, &report, &cgroups, host_uid, own_uid.is_some(), missing);
        let pidfd = guard.pidfd.take().expect("guard holds the pidfd");
        if let protocol::RuntimeReport::Failed(why) = &report.runtime {
            tracing::warn!(pid = zygote.pid, reason = %why, "sandpool: the runtime's template did not start; commands are exec'd");
        }
        Ok(Sandbox {
            control: host_end,
            runner: Arc::new(SessionLink::new(runner)),
            pidfd,
            pid: zygote.pid,
            usage: Arc::new(cgroups.usage_files()),
            cgroups,
            policy: policy.clone(),
            isolation,
            dead: false,
            reaped: false,
            next_token: AtomicU64::new(1),
            oom_kills_before: AtomicU64::new(0),
            runtime: RuntimeStatus::from_report(&report.runtime),
            _own_uid: own_uid,
        })
    }

    /// What this sandbox actually applied, layer by layer.
    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    /// Whether the current session's runtime template serves; `None` if the policy has no
    /// runtime. A template that could not start is not an error: commands are then exec'd.
    ///
    /// ```no_run
    /// use sandpool::sandbox::{Policy, Runtime, RuntimeStatus, Sandbox};
    /// let policy = Policy::builder().runtime(Runtime::python3().preload(["numpy"])).build()?;
    /// let sandbox = Sandbox::spawn(&policy)?;
    /// if let Some(RuntimeStatus::Failed { reason }) = sandbox.runtime_status() {
    ///     eprintln!("python3 runs cold here: {reason}");
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn runtime_status(&self) -> Option<&RuntimeStatus> {
        self.runtime.as_ref()
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
        self.runner.is_clean()
    }

    /// Whether its init is alive and no fatal error has been seen (one `poll` on the pidfd).
    pub fn is_alive(&self) -> bool {
        !self.dead && !host::exited(self.pidfd.as_fd())
    }

    /// Ends the session and starts a fresh one: every process the session left dies with its
    /// pid namespace, and the next session gets new ones (pid, IPC, mount, with new
    /// `/proc`, `/tmp`, `/dev/shm` and `/dev/mqueue`), so nothing of this one shows, not even
    /// counters no call can rewind (pids, inode numbers, IPC ids, change times). Where the
    /// network namespace, which quiet sessions share, is not as it was made (a socket left in
    /// any state, a counter moved), the next session gets a new one. Makes the next session as
    /// it goes (a pool's sandboxes keep theirs made ahead).
    ///
    /// Where the session's commands changed nothing but files in `/tmp` and `/dev/shm` (no
    /// process left, nothing else changed: see [`Sandbox::is_clean`]), the reset keeps the
    /// session and mounts new file systems there instead (a new `/dev/pts` too, the mounts in
    /// a new session's order), which costs a fraction of a new session: a *reset in place*.
    /// The file systems are made with a session, and only with one made after such a lease:
    /// the first reset after one makes a session ready for the next 16. The next lease tells
    /// its session from a new one only by when its mounts were made.
    pub fn reset(&mut self) -> Result<(), SandboxError> {
        self.start_reset(false)?;
        self.finish_reset().map(drop)
    }

    /// Asks for a reset without waiting for it (one `sendmsg`): in place where the session's
    /// commands changed nothing but files in its `/tmp` and `/dev/shm` (the zygote mounts
    /// fresh ones in the session as it is), else a new session; [`Sandbox::finish_reset`]
    /// collects the answer, which arrives on [`Sandbox::runner_fd`]. Lets a pool start resets
    /// from the releasing thread and collect them elsewhere. With `ahead`, the zygote then
    /// keeps the next session made ahead of need, for the next reset to switch to (a pool's
    /// sandboxes, reset again and again), where a cgroup lets its process be one of the
    /// sandbox's own, not one of the commands'.
    pub(crate) fn start_reset(&mut self, ahead: bool) -> Result<(), SandboxError> {
        if self.dead {
            return Err(SandboxError::Dead);
        }
        let deadline = Instant::now() + CONTROL_TIMEOUT;
        let spare = ahead && self.cgroups.make_room_for_a_spare();
        let reset = Request::Reset { spare, in_place: self.runner.only_files_changed() }.encode();
        channel::send_within(self.control.as_fd(), &reset, &[], deadline).map_err(|source| {
            self.dead = true;
            SandboxError::Control { step: "asking for a reset", source }
        })
    }

    /// Waits for the answer to [`Sandbox::start_reset`]: how the sandbox was reset.
    pub(crate) fn finish_reset(&mut self) -> Result<ResetKind, SandboxError> {
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
            Ok((Reply::Ready(report), fds)) if report.in_place && fds.is_empty() => {
                // The same session, with fresh session directories, once its spawner has
                // moved to them.
                self.runner.renewed_in_place(self.pidfd.as_fd()).inspect_err(|_| self.dead = true)?;
                self.forget_oom_kills();
                Ok(ResetKind::InPlace)
            }
            Ok((Reply::Ready(report), fds)) => {
                // The new session's spawner; the old one's socket, and whatever it still held,
                // goes with it.
                self.runner = Arc::new(SessionLink::new(take_runner(fds).inspect_err(|_| self.dead = true)?));
                self.forget_oom_kills();
                self.runtime = RuntimeStatus::from_report(&report.runtime);
                Ok(if report.made_ahead { ResetKind::MadeAhead } else { ResetKind::NewSession })
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
    pub(crate) fn runner_fd(&self) -> BorrowedFd<'_> {
        self.control.as_fd()
    }

    /// Whether the kernel has killed a process of this sandbox for memory since it was made,
    /// last reset, or last handed back to its pool (cgroup-enforced memory limits only): what
    /// one lease ran out of is not the next lease's. For one command, see
    /// [`ResourceUsage::oom_killed`].
    pub fn oom_killed(&self) -> bool {
        self.usage.oom_kills().is_some_and(|n| n > self.oom_kills_before.load(Ordering::Relaxed))
    }

    /// Starts counting OOM kills for [`oom_killed`](Self::oom_killed) from now: at the end of
    /// a lease and after each reset.
    pub(crate) fn forget_oom_kills(&self) {
        if let Some(n) = self.usage.oom_kills() {
            self.oom_kills_before.store(n, Ordering::Relaxed);
        }
    }

    /// Kills the sandbox and everything in it, reaps its init and removes its cgroups, waiting
    /// while the kernel finishes tearing its last processes down (a millisecond or two as a
    /// rule; at most 10 s). Dropping a sandbox does the same but never waits for its cgroups:
    /// a busy one is removed in the background (see [`cgroup_removal_failures`]).
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
