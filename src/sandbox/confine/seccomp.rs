//! The seccomp filters, in the spirit of Docker's default profile: ordinary programs (`sh`,
//! coreutils, `python3`, `cc`) work; the kernel's sharp edges fail with `EPERM`.
//!
//! Installing a filter compiles it, which for the big one costs a few hundred microseconds:
//! too much per command, and too much per session. So there are three sets:
//!
//! - The *sandbox's* programs, installed once on the zygote when the sandbox is built; every
//!   session's spawner and every command inherit them. In install order:
//!   1. on x86_64, a hand-written guard that refuses the x32 ABI (its syscall numbers would
//!      bypass lists keyed on x86_64 numbers, and share their architecture value);
//!   2. the deny list (built with `seccompiler`, like the rest), with `clone` refused when it
//!      asks for a new namespace or `CLONE_PARENT`, `unshare` allowed only the namespaces a
//!      session is made of (pid, IPC, mount, network), and the calls that act on another process by
//!      pid refused when aimed at the spawner, pid 1 of the commands' pid namespace (see
//!      `calls_on_the_spawner`): signals, `pidfd_open`, `prlimit64`, the scheduler and I/O
//!      priority setters, `F_SETOWN`. A command cannot see the zygote at all, and its `/proc`
//!      does not list the spawner; this keeps it from changing what the spawner passes on to
//!      every later command. Docker has no such rules: its init is not shared between
//!      tenants;
//!   3. `clone3` and `openat2` answer `ENOSYS`, so libc falls back to `clone` and `openat`,
//!      whose flags a filter can see (`unreadable_calls`). Where the spawner starts each
//!      command in the commands' own cgroup with `clone3(CLONE_INTO_CGROUP)` (cgroup v2),
//!      `clone3` stays allowed (see `unreadable_calls` for why that opens nothing);
//!   4. `open`/`openat` with `O_TMPFILE` answer `EOPNOTSUPP` (see `no_unnamed_files`: an
//!      unnamed file moves a counter the next lease could read);
//!   5. `socket` and `socketpair` of a family outside [`ALLOWED_FAMILIES`] answer
//!      `EAFNOSUPPORT`, and in an allowed family a protocol or type outside the allow-lists
//!      answers `EPROTONOSUPPORT` (see `unlisted_families`, `unlisted_protocols`): asking for
//!      one the kernel has not loaded would load its module, for every tenant and the host.
//!
//!   The deny list also refuses a mode with the setuid or setgid bit on every call that sets
//!   one (`set_id_modes`: binds and handed-in descriptors are the host's files), and the
//!   `TIOCSETD` ioctl (line disciplines are modules too).
//!
//!   The kernel runs every filter on every call, but caches the calls all of them allow
//!   whatever the arguments, so the small ones cost the commands' hot calls nothing.
//! - The *session's* program, small, installed by each spawner once it has made its session:
//!   the calls that make one (`mount` and the new mount API, `unshare`, `setns`) fail with
//!   `EPERM`. The zygote keeps them, under the sandbox's filter, to make sessions; nothing
//!   below a spawner has them.
//! - A `--no-fork` command adds a small program of its own: no `fork`, `vfork`, or `clone`
//!   without `CLONE_THREAD`.
//!
//! Against Docker's default profile it is as strict or stricter: it also refuses NUMA
//! placement (`mbind`, `set_mempolicy`, `migrate_pages`, `move_pages`), `fanotify_init` and
//! `personality` beyond Docker's five values, as Docker does for a container without
//! `CAP_SYS_ADMIN`/`CAP_SYS_NICE`. Differences kept on purpose: `ptrace` and
//! `process_vm_*` are refused outright (Docker allows them on 4.8+ kernels; here a command
//! must never reach another process), and so are `io_uring_*`, whose requests this filter
//! cannot see; `clone3` answers `ENOSYS`, as in Docker, so `clone`'s flags stay visible.
//! Docker lets `socket` make any family but `AF_VSOCK` and leaves the rest to capabilities
//! (so an unprivileged container process can still make the kernel load SCTP, DCCP, TIPC,
//! `AF_ALG`, ...); here four families and, within them, the protocols above. gVisor's
//! netstack offers about the same set (`AF_UNIX`, `AF_INET`, `AF_INET6`, `AF_NETLINK` with
//! route and uevent, `AF_PACKET` with capabilities); the differences: no `AF_PACKET` (it
//! needs `CAP_NET_RAW`, which commands never have) and no uevent netlink (device events of
//! the host). Docker allows `TIOCSETD` and every mode bit; gVisor's own file systems
//! ignore setuid bits.

use std::collections::BTreeMap;

use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

use super::super::sys::SeccompProgram;
#[cfg(target_arch = "x86_64")]
use seccompiler::sock_filter;

/// System calls denied with `EPERM` for every command.
fn denied_syscalls() -> Vec<(&'static str, i64)> {
    let mut v: Vec<(&'static str, i64)> = vec![
        ("pivot_root", libc::SYS_pivot_root),
        ("chroot", libc::SYS_chroot),
        ("ptrace", libc::SYS_ptrace),
        ("process_vm_readv", libc::SYS_process_vm_readv),
        ("process_vm_writev", libc::SYS_process_vm_writev),
        ("bpf", libc::SYS_bpf),
        ("perf_event_open", libc::SYS_perf_event_open),
        ("keyctl", libc::SYS_keyctl),
        ("add_key", libc::SYS_add_key),
        ("request_key", libc::SYS_request_key),
        ("kexec_load", libc::SYS_kexec_load),
        ("kexec_file_load", libc::SYS_kexec_file_load),
        ("init_module", libc::SYS_init_module),
        ("finit_module", libc::SYS_finit_module),
        ("delete_module", libc::SYS_delete_module),
        ("reboot", libc::SYS_reboot),
        ("swapon", libc::SYS_swapon),
        ("swapoff", libc::SYS_swapoff),
        ("settimeofday", libc::SYS_settimeofday),
        ("clock_settime", libc::SYS_clock_settime),
        ("clock_adjtime", libc::SYS_clock_adjtime),
        ("adjtimex", libc::SYS_adjtimex),
        ("acct", libc::SYS_acct),
        ("quotactl", libc::SYS_quotactl),
        ("quotactl_fd", libc::SYS_quotactl_fd),
        ("open_by_handle_at", libc::SYS_open_by_handle_at),
        ("name_to_handle_at", libc::SYS_name_to_handle_at),
        ("userfaultfd", libc::SYS_userfaultfd),
        ("syslog", libc::SYS_syslog),
        ("vhangup", libc::SYS_vhangup),
        ("sethostname", libc::SYS_sethostname),
        ("setdomainname", libc::SYS_setdomainname),
        ("kcmp", libc::SYS_kcmp),
        ("pidfd_getfd", libc::SYS_pidfd_getfd),
        ("io_uring_setup", libc::SYS_io_uring_setup),
        ("io_uring_enter", libc::SYS_io_uring_enter),
        ("io_uring_register", libc::SYS_io_uring_register),
        ("lookup_dcookie", libc::SYS_lookup_dcookie),
        ("nfsservctl", libc::SYS_nfsservctl),
        // As in Docker's default profile (which allows them only with CAP_SYS_NICE or
        // CAP_SYS_ADMIN, which commands never have): NUMA placement, which can move other
        // processes' pages, and fanotify, a file-system-wide watch.
        ("mbind", libc::SYS_mbind),
        ("set_mempolicy", libc::SYS_set_mempolicy),
        ("migrate_pages", libc::SYS_migrate_pages),
        ("move_pages", libc::SYS_move_pages),
        ("fanotify_init", libc::SYS_fanotify_init),
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        ("iopl", libc::SYS_iopl),
        ("ioperm", libc::SYS_ioperm),
        ("uselib", libc::SYS_uselib),
        ("_sysctl", libc::SYS__sysctl),
        ("modify_ldt", libc::SYS_modify_ldt),
    ]);
    v
}

/// The calls that make a session, denied with `EPERM` by the session's own filter, which each
/// spawner installs once it has made its session: the zygote and a spawner still being made
/// need them (new namespaces, the session's mounts), so the sandbox's filter, which the zygote
/// itself runs under, leaves them to it.
fn session_making_syscalls() -> Vec<(&'static str, i64)> {
    vec![
        ("mount", libc::SYS_mount),
        ("umount2", libc::SYS_umount2),
        ("unshare", libc::SYS_unshare),
        ("setns", libc::SYS_setns),
        ("fsopen", libc::SYS_fsopen),
        ("fsconfig", libc::SYS_fsconfig),
        ("fsmount", libc::SYS_fsmount),
        ("fspick", libc::SYS_fspick),
        ("move_mount", libc::SYS_move_mount),
        ("open_tree", libc::SYS_open_tree),
        ("mount_setattr", libc::SYS_mount_setattr),
    ]
}

/// The namespaces a session is made of (`unshare` by the zygote and a new spawner; the
/// network's, by the zygote, after a session that used it): the only ones the sandbox's
/// filter lets `unshare` ask for.
const SESSION_NAMESPACES: u64 =
    (libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWNS | libc::CLONE_NEWNET) as u64;

/// Every namespace flag `clone` may ask for.
const NAMESPACE_FLAGS: [u64; 8] = [
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
    0x80, // CLONE_NEWTIME
];

fn target() -> TargetArch {
    #[cfg(target_arch = "x86_64")]
    return TargetArch::x86_64;
    #[cfg(target_arch = "aarch64")]
    return TargetArch::aarch64;
}

/// Compiles `rules` into a program that fails the calls they match with `errno` and allows
/// everything else.
fn program(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<SeccompProgram, seccompiler::BackendError> {
    SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno as u32), target())?.try_into()
}

fn flag_set(flag: u64) -> SeccompRule {
    SeccompRule::new(vec![
        SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag)
            .expect("valid seccomp condition"),
    ])
    .expect("valid seccomp rule")
}

/// The `personality(2)` values Docker's default profile allows: the default (`PER_LINUX`),
/// `PER_LINUX32`, `UNAME26` with either, and the query `0xffffffff`. Any other persona
/// (`ADDR_NO_RANDOMIZE`, `READ_IMPLIES_EXEC`, ...) weakens the command's own hardening.
const ALLOWED_PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Matches `personality` with any value Docker does not allow.
fn personality_not_allowed() -> SeccompRule {
    SeccompRule::new(
        ALLOWED_PERSONALITIES
            .iter()
            .map(|&p| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, p).expect("valid condition"))
            .collect(),
    )
    .expect("valid seccomp rule")
}

/// The spawner's pid in the commands' pid namespace.
const SPAWNER_PID: u64 = 1;

/// `arg` (a 32-bit pid, uid or selector) equals `value`.
fn arg_is(arg: u8, value: u64) -> SeccompCondition {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value).expect("valid condition")
}

fn rule(conditions: Vec<SeccompCondition>) -> SeccompRule {
    SeccompRule::new(conditions).expect("valid seccomp rule")
}

/// The calls that act on another process by its pid, with the rules that match the spawner
/// (pid 1 of the commands' namespace; the zygote is not in it at all). A command may still
/// use each on its own processes. `setpriority` and `ioprio_set` also take a process group
/// (the spawner leads none; refused for pgid 1 all the same) or a whole uid, which would
/// reach the spawner: refused. `fcntl(F_SETOWN)` would aim `SIGIO` at it (pid 1, or group 1
/// as -1), `F_SETOWN_EX` and the `FIOSETOWN`/`SIOCSPGRP` ioctls take a pointer this filter
/// cannot read: refused. `clone(CLONE_PARENT)` would make the spawner the parent of the new
/// process, and its exit signal (any signal) the spawner's: refused.
fn calls_on_the_spawner() -> Vec<(i64, Vec<SeccompRule>)> {
    calls_on_process(SPAWNER_PID)
}

/// The rules of [`calls_on_the_spawner`] for the process `pid` (and process group `pid`
/// where a call takes one).
fn calls_on_process(target: u64) -> Vec<(i64, Vec<SeccompRule>)> {
    const PRIO_PROCESS: u64 = 0;
    const PRIO_PGRP: u64 = 1;
    const PRIO_USER: u64 = 2;
    const IOPRIO_WHO_PROCESS: u64 = 1;
    const IOPRIO_WHO_PGRP: u64 = 2;
    const IOPRIO_WHO_USER: u64 = 3;
    const FIOSETOWN: u64 = 0x8901;
    const SIOCSPGRP: u64 = 0x8902;
    const F_SETOWN_EX: u64 = 15;
    let first_is_spawner = || vec![rule(vec![arg_is(0, target)])];
    let either_is_spawner = || vec![rule(vec![arg_is(0, target)]), rule(vec![arg_is(1, target)])];
    let who_is_spawner_or_user = |process: u64, group: u64, user: u64| {
        vec![
            rule(vec![arg_is(0, process), arg_is(1, target)]),
            rule(vec![arg_is(0, group), arg_is(1, target)]),
            rule(vec![arg_is(0, user)]),
        ]
    };
    vec![
        (libc::SYS_kill, first_is_spawner()),
        (libc::SYS_tkill, first_is_spawner()),
        (libc::SYS_tgkill, either_is_spawner()),
        (libc::SYS_rt_sigqueueinfo, first_is_spawner()),
        (libc::SYS_rt_tgsigqueueinfo, either_is_spawner()),
        (libc::SYS_pidfd_open, first_is_spawner()),
        (libc::SYS_prlimit64, first_is_spawner()),
        (libc::SYS_sched_setaffinity, first_is_spawner()),
        (libc::SYS_sched_setparam, first_is_spawner()),
        (libc::SYS_sched_setscheduler, first_is_spawner()),
        (libc::SYS_sched_setattr, first_is_spawner()),
        (libc::SYS_setpriority, who_is_spawner_or_user(PRIO_PROCESS, PRIO_PGRP, PRIO_USER)),
        (libc::SYS_ioprio_set, who_is_spawner_or_user(IOPRIO_WHO_PROCESS, IOPRIO_WHO_PGRP, IOPRIO_WHO_USER)),
        (
            libc::SYS_fcntl,
            vec![
                rule(vec![arg_is(1, libc::F_SETOWN as u64), arg_is(2, target)]),
                rule(vec![arg_is(1, libc::F_SETOWN as u64), arg_is(2, u32::MAX as u64)]),
                rule(vec![arg_is(1, F_SETOWN_EX)]),
            ],
        ),
        (libc::SYS_ioctl, vec![rule(vec![arg_is(1, FIOSETOWN)]), rule(vec![arg_is(1, SIOCSPGRP)])]),
    ]
}

/// `TIOCSTI` pushes bytes into a terminal's input as if typed, and `TIOCLINUX` reaches the
/// console: through a terminal of the host's handed in as a descriptor (`Stdio::fd`), a
/// command could type into the host's shell. Refused on every terminal (the command's own
/// included: a program that types to itself has no need of it). `TIOCSETD` changes a
/// terminal's line discipline, and asking for one the kernel has not loaded loads its module
/// (`n_hdlc`, `ppp`, `slip`, ...: `tty-ldisc-N`): refused too. Its argument is a pointer
/// this filter cannot read, so even `N_TTY`, which every terminal already has and which
/// setting again changes nothing, is refused.
fn terminal_injection() -> Vec<SeccompRule> {
    vec![
        rule(vec![arg_is(1, libc::TIOCSTI)]),
        rule(vec![arg_is(1, libc::TIOCLINUX)]),
        rule(vec![arg_is(1, libc::TIOCSETD)]),
    ]
}

/// `S_ISUID` and `S_ISGID`.
const SET_ID_BITS: [u64; 2] = [libc::S_ISUID as u64, libc::S_ISGID as u64];

/// `fchmodat2(2)` (Linux 6.6), which the libc crate may not name on every target.
const SYS_FCHMODAT2: i64 = 452;

/// The calls that set a file's mode, with the position of their mode argument, and whether
/// the mode only counts with `O_CREAT` (then the flags are the argument before it).
fn mode_setting_calls() -> Vec<(i64, u8, bool)> {
    let mut v = vec![
        (libc::SYS_fchmod, 1, false),
        (libc::SYS_fchmodat, 2, false),
        (SYS_FCHMODAT2, 2, false),
        (libc::SYS_mknodat, 2, false),
        (libc::SYS_openat, 3, true),
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        (libc::SYS_chmod, 1, false),
        (libc::SYS_mknod, 1, false),
        (libc::SYS_creat, 1, false),
        (libc::SYS_open, 2, true),
    ]);
    v
}

/// Refuses every mode with `S_ISUID` or `S_ISGID` (`EPERM`), whatever the file: a bind's
/// files, and a descriptor handed in, are the host's, and a setuid or setgid file left there
/// runs on the host as its owner. The routes: the `chmod` family, a file made by `open`,
/// `openat` or `creat` with `O_CREAT`, or by `mknod` (a regular file), and so copying a
/// setuid program with its mode (`cp -p`, `install -m 4755`, `tar`). `mkdir` needs no rule:
/// the kernel drops both bits from its mode. A write by a command clears them from a file
/// that has them (no command has `CAP_FSETID`), and file capabilities need `CAP_SETFCAP`,
/// which no command has either. Docker's profile has no such rule: its binds are the
/// container's business; here, inside, no mount honours those bits anyway (`nosuid`).
fn set_id_modes() -> Vec<(i64, Vec<SeccompRule>)> {
    mode_setting_calls()
        .into_iter()
        .map(|(nr, mode_arg, needs_create)| {
            let rules = SET_ID_BITS
                .iter()
                .map(|&bit| {
                    let mut conditions = vec![
                        SeccompCondition::new(mode_arg, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(bit), bit)
                            .expect("valid condition"),
                    ];
                    if needs_create {
                        let creat = libc::O_CREAT as u64;
                        conditions.push(
                            SeccompCondition::new(
                                mode_arg - 1,
                                SeccompCmpArgLen::Dword,
                                SeccompCmpOp::MaskedEq(creat),
                                creat,
                            )
                            .expect("valid condition"),
                        );
                    }
                    rule(conditions)
                })
                .collect();
            (nr, rules)
        })
        .collect()
}

fn deny_list() -> Result<SeccompProgram, seccompiler::BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        denied_syscalls().into_iter().map(|(_, nr)| (nr, Vec::new())).collect();
    let mut clone: Vec<SeccompRule> = NAMESPACE_FLAGS.iter().map(|f| flag_set(*f)).collect();
    clone.push(flag_set(libc::CLONE_PARENT as u64));
    rules.insert(libc::SYS_clone, clone);
    rules.insert(libc::SYS_personality, vec![personality_not_allowed()]);
    rules.extend(calls_on_the_spawner());
    rules.entry(libc::SYS_ioctl).or_default().extend(terminal_injection());
    for (nr, set_id) in set_id_modes() {
        rules.entry(nr).or_default().extend(set_id);
    }
    // Before the session's filter closes it, `unshare` may make a session's namespaces only.
    rules.insert(
        libc::SYS_unshare,
        NAMESPACE_FLAGS.iter().filter(|f| *f & SESSION_NAMESPACES == 0).map(|f| flag_set(*f)).collect(),
    );
    program(rules, libc::EPERM)
}

/// The session's filter: what [`session_making_syscalls`] lists fails with `EPERM`. Small, so
/// loading it costs each new session little (the kernel compiles a filter when it is loaded).
fn session_filter() -> Result<SeccompProgram, seccompiler::BackendError> {
    let rules: BTreeMap<i64, Vec<SeccompRule>> =
        session_making_syscalls().into_iter().map(|(_, nr)| (nr, Vec::new())).collect();
    program(rules, libc::EPERM)
}

/// A runtime's template (pid 2 of the session, leader of process group 2) is as out of the
/// commands' reach as the spawner: the calls of [`calls_on_the_spawner`] refused when aimed at
/// pid 2, and the signals to its process group (`kill(-2)`; the spawner, pid 1, needs no such
/// rule: the kernel does not let a namespace's processes kill its init). The template is
/// not dumpable, so neither `ptrace` nor `/proc/2` reaches it; a signal to every process
/// (`kill(-1)`) does, and the verdict sees it (the template's state is part of the session's).
fn template_guard() -> Result<SeccompProgram, seccompiler::BackendError> {
    const TEMPLATE_PID: u64 = 2;
    const TEMPLATE_GROUP: u64 = (-2i32) as u32 as u64;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (nr, conditions) in calls_on_process(TEMPLATE_PID) {
        rules.entry(nr).or_default().extend(conditions);
    }
    for nr in [libc::SYS_kill, libc::SYS_rt_sigqueueinfo] {
        rules.entry(nr).or_default().push(rule(vec![arg_is(0, TEMPLATE_GROUP)]));
    }
    rules
        .entry(libc::SYS_fcntl)
        .or_default()
        .push(rule(vec![arg_is(1, libc::F_SETOWN as u64), arg_is(2, TEMPLATE_GROUP)]));
    program(rules, libc::EPERM)
}

/// `--no-fork`: refuses every way to make a process (`clone` without `CLONE_THREAD`, `fork`,
/// `vfork`; `clone3` answers `ENOSYS`, from the sandbox's programs or, where they leave it
/// to the spawners, from [`no_clone3`]). Threads stay allowed: they are not processes (libc
/// makes them with `clone` once `clone3` answers `ENOSYS`).
fn no_process_creation() -> Result<SeccompProgram, seccompiler::BackendError> {
    let no_thread = SeccompRule::new(vec![SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
        0,
    )?])?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::from([(libc::SYS_clone, vec![no_thread])]);
    #[cfg(target_arch = "x86_64")]
    {
        rules.insert(libc::SYS_fork, Vec::new());
        rules.insert(libc::SYS_vfork, Vec::new());
    }
    program(rules, libc::EPERM)
}

/// `clone3` and `openat2`, whose arguments live in structures a filter cannot read, answer
/// `ENOSYS`: libc and programs fall back to `clone` and `openat`, whose flags it can.
///
/// `clone3` stays allowed where spawners start commands with it (`clone3_allowed`: in the
/// commands' own cgroup v2, see `cgroup::COMMANDS`). A filter of each command's own to
/// refuse it would cost every command 60 to 80 µs (compiling and freeing a program), and
/// what `clone3` could ask for beyond `clone`'s rules is closed by other means: a new
/// namespace other than a user namespace needs a capability no command has; a user
/// namespace, the one an unprivileged process may make, is refused by the sandbox's own
/// limit (`user.max_user_namespaces` 0 in its user namespace, which the init sets);
/// `CLONE_PARENT` takes no exit signal in `clone3` (the child gets its creator's, the
/// `SIGCHLD` the spawner gave it); `CLONE_INTO_CGROUP` needs a cgroup directory, and no
/// command has one (the spawner's closes at `execve`; no cgroup file system is mounted).
fn unreadable_calls(clone3_allowed: bool) -> Result<SeccompProgram, seccompiler::BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::from([(libc::SYS_openat2, Vec::new())]);
    if !clone3_allowed {
        rules.insert(libc::SYS_clone3, Vec::new());
    }
    program(rules, libc::ENOSYS)
}

/// `clone3` answers `ENOSYS` (for `--no-fork` commands where the sandbox's programs leave
/// it to the spawners): libc then makes threads with `clone`, whose flags a filter sees.
fn no_clone3() -> Result<SeccompProgram, seccompiler::BackendError> {
    program(BTreeMap::from([(libc::SYS_clone3, Vec::new())]), libc::ENOSYS)
}

/// On x86_64, the x32 ABI's calls (numbers with `__X32_SYSCALL_BIT`) fail with `EPERM`. They
/// carry the x86_64 architecture value, so `seccompiler`'s architecture check lets them
/// through, and their numbers match none of its rules: hand-written, four instructions.
#[cfg(target_arch = "x86_64")]
fn no_x32() -> SeccompProgram {
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JGE_K: u16 = 0x35;
    const BPF_RET_K: u16 = 0x06;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    /// Where `struct seccomp_data` holds the call's number.
    const DATA_NR: u32 = 0;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let stmt = |code, k| sock_filter { code, jt: 0, jf: 0, k };
    vec![
        stmt(BPF_LD_W_ABS, DATA_NR),
        sock_filter { code: BPF_JGE_K, jt: 0, jf: 1, k: X32_SYSCALL_BIT },
        stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
    ]
}

/// `open`/`openat` with `O_TMPFILE` answer `EOPNOTSUPP`, as on a file system without it (libc's
/// `tmpfile`, Python's `TemporaryFile` then make and unlink a named file). An unnamed file
/// changes nothing its directory shows, yet takes the next inode number of the session's
/// tmpfs, which a later lease of an untouched session would see move.
fn no_unnamed_files() -> Result<SeccompProgram, seccompiler::BackendError> {
    // `__O_TMPFILE`: `O_TMPFILE` is this bit and `O_DIRECTORY`.
    const TMPFILE_BIT: u64 = 0o20_000_000;
    let tmpfile_flag = |arg: u8| -> Result<SeccompRule, seccompiler::BackendError> {
        SeccompRule::new(vec![SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(TMPFILE_BIT),
            TMPFILE_BIT,
        )?])
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::from([(libc::SYS_openat, vec![tmpfile_flag(2)?])]);
    #[cfg(target_arch = "x86_64")]
    rules.insert(libc::SYS_open, vec![tmpfile_flag(1)?]);
    program(rules, libc::EOPNOTSUPP)
}

/// The socket families a command may make: `AF_UNIX`, `AF_INET`, `AF_INET6` and `AF_NETLINK`
/// (for `NETLINK_ROUTE` only). Asking the kernel for any other family, or for a protocol
/// it has not loaded, makes it load that protocol's module (`net-pf-N`, `net-pf-N-proto-P`),
/// for every tenant and the host; many such modules (SCTP, DCCP, RDS, TIPC, AX.25, KCM,
/// SMC, L2TP, RxRPC, `AF_ALG`'s ciphers, XFRM) have a history of local root bugs. So these
/// are an allow-list, and the rest never reach the module loader.
pub(crate) const ALLOWED_FAMILIES: [(&str, u64); 4] =
    [("AF_UNIX", 1), ("AF_INET", 2), ("AF_INET6", 10), ("AF_NETLINK", 16)];

/// The allowed families as the isolation report names them.
pub(crate) fn allowed_family_names() -> Vec<&'static str> {
    ALLOWED_FAMILIES
        .iter()
        .map(|&(name, _)| if name == "AF_NETLINK" { "AF_NETLINK (NETLINK_ROUTE)" } else { name })
        .collect()
}

/// The protocols allowed in `AF_INET` and `AF_INET6` sockets: the default (0), TCP (6), UDP
/// (17) and ICMP (1; 58 for v6: ping sockets). Built into every kernel that has IP.
const ALLOWED_IP_PROTOCOLS: [u64; 5] = [0, 6, 17, 1, 58];

/// The netlink protocol allowed: `NETLINK_ROUTE` (addresses, links and routes, which
/// `getifaddrs`, `ip` and resolvers read).
const NETLINK_ROUTE: u64 = 0;

/// The bits of a socket's type that name it (`SOCK_TYPE_MASK`); the rest are flags.
const SOCK_TYPE_MASK: u64 = 0xf;

fn arg_ne(arg: u8, value: u64) -> SeccompCondition {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, value).expect("valid condition")
}

/// `socket` and `socketpair` of a family not in [`ALLOWED_FAMILIES`] answer `EAFNOSUPPORT`,
/// as on a kernel without it (`socketpair` works on `AF_UNIX` only anyway).
fn unlisted_families() -> Result<SeccompProgram, seccompiler::BackendError> {
    let other_family = || rule(ALLOWED_FAMILIES.iter().map(|&(_, f)| arg_ne(0, f)).collect());
    let rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::from([
        (libc::SYS_socket, vec![other_family()]),
        (libc::SYS_socketpair, vec![rule(vec![arg_ne(0, ALLOWED_FAMILIES[0].1)])]),
    ]);
    program(rules, libc::EAFNOSUPPORT)
}

/// In an allowed family, a protocol not allowed answers `EPROTONOSUPPORT`, as for a
/// protocol the kernel does not have; so does an IP socket of a type other than stream (1),
/// datagram (2) and raw (3, which needs `CAP_NET_RAW`, which no command has): others
/// (`SOCK_DCCP`, `SOCK_SEQPACKET`, `SOCK_PACKET`) would ask the loader for a protocol by
/// type.
fn unlisted_protocols() -> Result<SeccompProgram, seccompiler::BackendError> {
    let type_is = |mask: u64, value: u64| {
        SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(mask), value).expect("valid condition")
    };
    let mut socket = Vec::new();
    for family in [2, 10] {
        let mut protocol = vec![arg_is(0, family)];
        protocol.extend(ALLOWED_IP_PROTOCOLS.iter().map(|&p| arg_ne(2, p)));
        socket.push(rule(protocol));
        // A type outside 1..=3: 0, or any of the bits 4 and 8 set (4..=15).
        socket.push(rule(vec![arg_is(0, family), type_is(SOCK_TYPE_MASK, 0)]));
        for high in [4, 8, 12] {
            socket.push(rule(vec![arg_is(0, family), type_is(0xc, high)]));
        }
    }
    socket.push(rule(vec![arg_is(0, 16), arg_ne(2, NETLINK_ROUTE)]));
    let rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::from([(libc::SYS_socket, socket)]);
    program(rules, libc::EPROTONOSUPPORT)
}

/// The compiled programs.
pub(crate) struct Filters {
    /// Installed once on the zygote when the sandbox is built, in install order: every
    /// session's spawner and command inherits them.
    pub sandbox: Vec<SeccompProgram>,
    /// Installed on top by each spawner once its session is made.
    pub session: SeccompProgram,
    /// Installed on top by each `--no-fork` command, in order.
    pub no_fork: Vec<SeccompProgram>,
    /// Installed on top by a spawner whose session has a runtime's template (pid 2), before
    /// it starts it: the calls that act on a process by pid refused when aimed at the
    /// template or its process group (see [`template_guard`]).
    pub template_guard: SeccompProgram,
}

/// Compiles the filters; `clone3_allowed`: whether spawners start commands with `clone3`
/// (into the commands' own cgroup v2), so that the sandbox's programs must leave it to them.
pub(crate) fn build(clone3_allowed: bool) -> Result<Filters, seccompiler::BackendError> {
    let mut sandbox = Vec::new();
    #[cfg(target_arch = "x86_64")]
    sandbox.push(no_x32());
    sandbox.extend([
        deny_list()?,
        unreadable_calls(clone3_allowed)?,
        no_unnamed_files()?,
        unlisted_families()?,
        unlisted_protocols()?,
    ]);
    let mut no_fork = vec![no_process_creation()?];
    if clone3_allowed {
        no_fork.push(no_clone3()?);
    }
    Ok(Filters { sandbox, session: session_filter()?, no_fork, template_guard: template_guard()? })
}

/// How many system calls the default filter denies, outright or for some arguments.
pub(crate) fn denied_count() -> u32 {
    // + clone with namespace flags or CLONE_PARENT, personality outside Docker's values, the
    // calls aimed at the spawner, the session-making calls, and the calls that set a mode
    // (setuid and setgid bits refused); `socket` and `socketpair` outside the allow-lists
    // are counted apart (`SeccompStatus::socket_families`).
    (denied_syscalls().len()
        + 2
        + calls_on_the_spawner().len()
        + session_making_syscalls().len()
        + mode_setting_calls().len()) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_build() {
        let f = build(false).unwrap();
        let x32 = usize::from(cfg!(target_arch = "x86_64"));
        assert_eq!(
            f.sandbox.len(),
            x32 + 5,
            "x32 guard (x86_64), deny list, ENOSYS calls, O_TMPFILE, socket allow-lists"
        );
        assert!(f.sandbox.iter().chain(&f.no_fork).chain([&f.session]).all(|p| !p.is_empty() && p.len() < 4096));
        let clone3_allowed = build(true).unwrap();
        assert!(clone3_allowed.sandbox[x32 + 1].len() < f.sandbox[x32 + 1].len(), "clone3 left out");
        assert_eq!((f.no_fork.len(), clone3_allowed.no_fork.len()), (1, 2), "--no-fork refuses it then");
        let deny = &f.sandbox[x32];
        assert!(deny.len() > 2 * denied_syscalls().len(), "one test per denied call at least");
        assert!(f.session.len() < deny.len() / 4, "the per-session program stays small");
    }
}
