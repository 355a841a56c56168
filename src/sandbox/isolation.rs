//! The honest report of what a sandbox actually applied, layer by layer.

use std::time::Duration;

use super::SANDBOX_UID;
use super::cgroup::SandboxCgroups;
use super::confine::seccomp;
use super::policy::Policy;
use super::protocol::ZygoteReport;

use std::fmt;

use super::policy::Network;

/// How a limit is enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(rename_all = "snake_case"))]
pub enum Enforcement {
    /// A cgroup v2 controller, for the whole sandbox.
    CgroupV2,
    /// A cgroup v1 controller, for the whole sandbox.
    CgroupV1,
    /// A resource limit (`setrlimit`), per process unless noted.
    Rlimit,
    /// The size cap of a tmpfs mount.
    Tmpfs,
    /// The host, which watches the command and kills it.
    Host,
    /// Not enforced.
    None,
}

impl fmt::Display for Enforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Enforcement::CgroupV2 => "cgroup v2",
            Enforcement::CgroupV1 => "cgroup v1",
            Enforcement::Rlimit => "rlimit",
            Enforcement::Tmpfs => "tmpfs size",
            Enforcement::Host => "host watchdog",
            Enforcement::None => "not enforced",
        })
    }
}

/// One limit and how it is enforced.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Limit {
    /// What it limits (`memory`, `processes`, `cpu`, `cpu_time`, `file_size`, `open_files`,
    /// `tmp_size`, `timeout`, `output`).
    pub name: &'static str,
    /// Its value (bytes, count, or milliseconds for times).
    pub value: u64,
    /// How it is enforced.
    pub enforced_by: Enforcement,
    /// Scope or caveat, e.g. "per process".
    pub note: &'static str,
}

/// Namespaces the sandbox lives in.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Namespaces {
    /// Own user namespace.
    pub user: bool,
    /// Own pid namespace (the zygote is its init; commands run one level below, see
    /// [`SessionSeparation`]).
    pub pid: bool,
    /// Own mount namespace with a minimal root (pivot_root).
    pub mount: bool,
    /// Own network namespace.
    pub network: bool,
    /// Own IPC namespace (its System V objects removed at each reset).
    pub ipc: bool,
    /// Own UTS namespace (hostname `sandpool`).
    pub uts: bool,
    /// Own cgroup namespace.
    pub cgroup: bool,
}

/// What keeps one lease (session) of a reused sandbox from reaching the next, and from the
/// sandbox's own processes. Every field is what was applied: a sandbox whose spawner could not
/// set up its session is not made at all.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SessionSeparation {
    /// Commands run in a pid namespace of their own, one level below the init's, whose pid 1
    /// is the spawner: the init is not in it at all, and the spawner (which no command may
    /// trace) is not listed in its `/proc` (`hidepid=invisible`).
    pub own_pid_namespace: bool,
    /// The pid counter of that namespace is rewound whenever no command process is left, so
    /// each lease starts at pid 2, as a fresh sandbox does.
    pub pid_counter_rewound: bool,
    /// The seccomp filter refuses every call that acts on a process by pid (signals,
    /// `pidfd_open`, `prlimit64`, scheduling, I/O priority, `F_SETOWN`) when aimed at the
    /// spawner, and `clone(CLONE_PARENT)`.
    pub calls_on_the_spawner_refused: bool,
    /// The untouched verdict compares the spawner's own settings (limits, scheduling,
    /// affinity, I/O priority, pending signals), which commands inherit; a changed spawner
    /// means a reset, which starts a new one.
    pub spawner_settings_checked: bool,
    /// A reset starts a new session: new pid, IPC and mount namespaces, with new `/proc`,
    /// `/tmp`, `/dev/shm` and `/dev/mqueue`, so that no counter of the last one (pids, inode
    /// numbers, IPC ids) shows. After a lease whose commands changed nothing but files in
    /// `/tmp` and `/dev/shm` (no process left, nothing else changed), a pool's reset keeps the
    /// session and mounts new file systems there instead (a reset in place): the next lease
    /// finds the same, but can tell from its mount table (mount ids) that its `/tmp` is newer
    /// than its session.
    pub fresh_session_on_reset: bool,
}

/// What a warm runtime's served commands share, and what keeps its template out of their
/// reach (see [`Runtime`](super::Runtime)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RuntimeSeparation {
    /// The interpreter each session starts.
    pub interpreter: String,
    /// The modules its template imports before it forks.
    pub preloaded: Vec<String>,
    /// What every command a template serves shares with it and with each other, since they
    /// are forks of one interpreter: its address layout (ASLR), its string-hash secret,
    /// and the state of the modules it imported as they were imported.
    pub served_commands_share: Vec<&'static str>,
    /// Whether a template that served a lease's commands may serve the next lease's too
    /// ([`Runtime::share_across_leases`](super::Runtime::share_across_leases)); otherwise
    /// each lease that used one gets a new session, with a new template.
    pub shared_across_leases: bool,
    /// Whether the seccomp filter refuses the calls that act on a process by pid aimed at the
    /// template (pid 2) or its process group, as at the spawner. The template is also not
    /// dumpable (no `ptrace`, no `/proc/2`), blocks every signal, and the verdict checks it.
    pub calls_on_the_template_refused: bool,
}

/// Landlock's part.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct LandlockStatus {
    /// ABI version in use, if any: the kernel's, or the policy's
    /// [`landlock_max_abi`](super::PolicyBuilder::landlock_max_abi) if lower.
    pub abi: Option<u32>,
    /// Whether a ruleset is enforced on every command.
    pub enforced: bool,
    /// Whether abstract-socket and signal scoping (ABI 6) is part of it.
    pub scoped: bool,
}

/// Seccomp's part.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SeccompStatus {
    /// Whether the filter is installed on every command.
    pub enforced: bool,
    /// How many system calls it denies with `EPERM`, outright or for some arguments.
    pub denied_syscalls: u32,
    /// The socket families a command may make (with the netlink protocol allowed); every
    /// other family answers `EAFNOSUPPORT` and, within these, every protocol but the
    /// default, TCP, UDP and ICMP answers `EPROTONOSUPPORT`, before the kernel could load a
    /// module for it. Empty when the filter is not enforced.
    pub socket_families: Vec<&'static str>,
    /// Whether every call that sets a file mode (the `chmod` family, creating `open`,
    /// `creat`, `mknod`) is refused a setuid or setgid bit, so no bind or handed-in
    /// descriptor can be left with one.
    pub set_id_modes_refused: bool,
}

/// What a sandbox actually applied. Nothing here is what was *asked*: each field is what the
/// kernel accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Isolation {
    /// Namespaces.
    pub namespaces: Namespaces,
    /// Network mode.
    pub network: Network,
    /// Whether only `lo` exists (own network namespace, loopback up).
    pub loopback_only: bool,
    /// The root the command sees.
    pub root: &'static str,
    /// Landlock.
    pub landlock: LandlockStatus,
    /// Seccomp.
    pub seccomp: SeccompStatus,
    /// What separates one lease from the next.
    pub sessions: SessionSeparation,
    /// `no_new_privs` on every command.
    pub no_new_privs: bool,
    /// Whether commands run with every capability dropped (and the bounding set empty).
    pub capabilities_dropped: bool,
    /// The uid commands run as inside.
    pub uid: u32,
    /// The host uid that uid maps to.
    pub host_uid: u32,
    /// Whether that host uid is this sandbox's alone while it lives (a root host's, from
    /// [`HOST_UID_BASE`](super::HOST_UID_BASE)); otherwise it is shared: an unprivileged
    /// host's own uid, which all its sandboxes and the host's own processes have, so they
    /// share what the kernel budgets per user (pipe buffers, `RLIMIT_NPROC` counted by the
    /// host, inotify and key quotas).
    pub host_uid_own: bool,
    /// Each limit and how it is enforced.
    pub limits: Vec<Limit>,
    /// With a warm runtime in the policy: what its served commands share, and what guards
    /// its template.
    pub runtime: Option<RuntimeSeparation>,
    /// Layers asked for as best effort that could not be applied, with why.
    pub missing: Vec<String>,
}

impl Isolation {
    /// The limit called `name`, if reported.
    pub fn limit(&self, name: &str) -> Option<&Limit> {
        self.limits.iter().find(|l| l.name == name)
    }
}

/// The report of a sandbox as built: what the policy asked, what the zygote applied, and what
/// was missing.
pub(super) fn build_isolation(
    policy: &Policy,
    report: &ZygoteReport,
    cgroups: &SandboxCgroups,
    host_uid: u32,
    host_uid_own: bool,
    missing: Vec<String>,
) -> Isolation {
    let ms = |d: Duration| d.as_millis().min(u64::MAX as u128) as u64;
    let mut missing = missing;
    if cgroups.memory.is_none() {
        missing.push(
            "a memory limit for the whole sandbox (no writable memory cgroup): RLIMIT_AS bounds each process's \
             mapped memory only; what no process maps (memfd files, pipe and socket buffers, System V shared \
             memory) is charged to no limit"
                .to_string(),
        );
    }
    if policy.network == Network::Host && !report.landlock_scoped {
        missing.push(
            "the host's abstract unix sockets (shared network, no Landlock scoping: ABI 6+): a command can \
             connect to any the host listens on (D-Bus, X11, containerd-shim)"
                .to_string(),
        );
    }
    let mut limits = vec![
        match cgroups.memory {
            Some(e) => Limit { name: "memory", value: policy.memory_bytes, enforced_by: e, note: "whole sandbox" },
            None => Limit {
                name: "memory",
                value: policy.memory_bytes,
                enforced_by: Enforcement::Rlimit,
                note: "per process (RLIMIT_AS): no writable memory cgroup; memory no process maps (memfd files, pipe and socket buffers, System V shared memory) is not bounded",
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
    if let Some(millis) = policy.cpu_millis {
        limits.push(Limit {
            name: "cpu",
            value: millis,
            enforced_by: cgroups.cpu.unwrap_or(Enforcement::None),
            note: "whole sandbox, thousandths of a CPU per 100 ms period",
        });
    }
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
        runtime: policy.runtime().map(|rt| RuntimeSeparation {
            interpreter: rt.interpreter_path().display().to_string(),
            preloaded: rt.preloaded().to_vec(),
            served_commands_share: vec![
                "the template's address layout (ASLR)",
                "the template's string-hash secret (PYTHONHASHSEED)",
                "the preloaded modules' state as the template imported them",
            ],
            shared_across_leases: rt.shares_across_leases(),
            calls_on_the_template_refused: report.seccomp_enforced,
        }),
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
            socket_families: if report.seccomp_enforced { seccomp::allowed_family_names() } else { Vec::new() },
            set_id_modes_refused: report.seccomp_enforced,
        },
        no_new_privs: true,
        capabilities_dropped: true,
        uid: SANDBOX_UID,
        host_uid,
        host_uid_own,
        limits,
        missing,
    }
}
