//! What one lease leaves for the next: a command must not change the sandbox's own processes,
//! and nothing a session leaves (inode flags, sockets) may reach the next session. Every test
//! first shows its probe works (outside, or on a process it may touch), then that the sandbox
//! keeps it out. CI runs this file as root and as an unprivileged uid.

mod common;

use common::*;
use sandpool::SandboxPool;
use sandpool::sandbox::{Command, Policy, Sandbox, SandboxError};
use std::time::{Duration, Instant};

/// The host pid of the sandbox's spawner: the zygote's only child (which names itself
/// `sandpool-spawn` once it runs, maybe just after the sandbox is ready).
fn spawner_of(sandbox: &Sandbox) -> i32 {
    let found: Vec<i32> =
        processes().into_iter().filter(|(_, ppid, _)| *ppid == sandbox.pid()).map(|(pid, _, _)| pid).collect();
    assert_eq!(found.len(), 1, "one spawner per sandbox: {found:?}");
    found[0]
}

/// The host pid of the `sleep` a command of the sandbox left running (reparented to the
/// spawner, which is a subreaper); waits for it to have exec'd.
fn background_sleeper(spawner: i32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = processes().into_iter().find(|(_, ppid, comm)| *ppid == spawner && comm == "sleep");
        if let Some((pid, _, _)) = found {
            return pid;
        }
        assert!(Instant::now() < deadline, "the background sleep never showed up");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The owner of `/proc/PID/mem`: the process's uid while it is dumpable, root once it is not.
fn mem_owner(pid: i32) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/mem")).unwrap().uid()
}

/// The `SigBlk` mask of a process.
fn blocked_signals(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status.lines().find_map(|l| l.strip_prefix("SigBlk:")).unwrap().trim();
    u64::from_str_radix(hex, 16).unwrap()
}

#[test]
fn the_spawner_stays_non_dumpable_after_commands_and_commands_still_go_first_out_of_memory() {
    let mut sb = Sandbox::spawn(&Policy::default()).unwrap();
    let spawner = spawner_of(&sb);
    let host_uid = sb.isolation().host_uid;
    assert_eq!(mem_owner(spawner), 0, "a fresh spawner is not dumpable");
    // The probe of dumpability works: a command of the sandbox is dumpable, so its /proc
    // files are the sandbox user's.
    assert!(sh(&mut sb, "sleep 1000 >/dev/null 2>&1 &").success());
    let sleeper = background_sleeper(spawner);
    assert_eq!(mem_owner(sleeper), host_uid, "a command is dumpable: the probe tells them apart");
    for _ in 0..3 {
        assert!(sb.run(&Command::new("/bin/true")).unwrap().success());
    }
    assert_eq!(mem_owner(spawner), 0, "commands (CLONE_VM children) left the spawner non-dumpable");
    assert_eq!(mem_owner(sb.pid()), 0, "and the init too");
    let adj = stdout(&sh(&mut sb, "cat /proc/self/oom_score_adj"));
    assert_eq!(adj, "1000", "commands still offer themselves first to the OOM killer");
}

#[test]
fn the_init_and_the_spawner_block_every_signal_including_32_and_33() {
    let mut sb = Sandbox::spawn(&Policy::default()).unwrap();
    let spawner = spawner_of(&sb);
    assert!(sh(&mut sb, "sleep 1000 >/dev/null 2>&1 &").success());
    let sleeper = background_sleeper(spawner);
    let (bit32, bit33) = (1u64 << 31, 1u64 << 32);
    assert_eq!(blocked_signals(sleeper) & (bit32 | bit33), 0, "a command blocks neither: the probe reads the mask");
    for (who, pid) in [("init", sb.pid()), ("spawner", spawner)] {
        let mask = blocked_signals(pid);
        assert_eq!(mask & (bit32 | bit33), bit32 | bit33, "the {who} blocks 32 and 33: {mask:x}");
        // All but SIGKILL and SIGSTOP, which cannot be blocked.
        let unblockable = (1u64 << (libc::SIGKILL - 1)) | (1u64 << (libc::SIGSTOP - 1));
        assert_eq!(mask, !unblockable, "the {who} blocks every signal: {mask:x}");
    }
}

#[test]
fn inode_flags_of_the_session_directories_mark_the_session_dirty_and_are_reset() {
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    for dir in ["/tmp", "/dev/shm"] {
        assert!(sb.run(&Command::new("/bin/true")).unwrap().success());
        assert!(sb.is_clean(), "`true` leaves the session clean");
        assert_eq!(probe_inside(&mut sb, &["getflags", dir]), "0", "{dir} starts without flags");
        assert_eq!(probe_inside(&mut sb, &["setflags", dir]), "ok", "a command may set nodump on {dir}");
        assert_eq!(probe_inside(&mut sb, &["getflags", dir]), "64", "and nodump (FS_NODUMP_FL, 0x40) is set");
        assert!(!sb.is_clean(), "the flag on {dir} marks the session dirty");
        sb.reset().unwrap();
        assert_eq!(probe_inside(&mut sb, &["getflags", dir]), "0", "the reset cleared the flags of {dir}");
    }
}

#[test]
fn a_socket_left_in_time_wait_never_reaches_the_next_lease() {
    // Within one session the probe's TIME_WAIT socket shows in /proc/net/tcp (state 06): the
    // check below can see it.
    let tcp_states = "tail -n +2 /proc/net/tcp | awk '{print $4}' | sort | tr '\\n' ' '";
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    assert_eq!(stdout(&sh(&mut sb, tcp_states)), "", "a fresh sandbox has no socket");
    assert_eq!(probe_inside(&mut sb, &["timewait"]), "ok");
    assert_eq!(stdout(&sh(&mut sb, tcp_states)), "06", "the probe left a TIME_WAIT socket");
    assert!(!sb.is_clean(), "a socket left behind marks the session dirty");
    let err = sb.reset().unwrap_err();
    assert!(matches!(err, SandboxError::Reset { .. }), "a reset cannot remove it, so it refuses: {err}");
    assert!(err.is_fatal(), "and the sandbox is not reused");

    // Through the pool: the next lease gets another sandbox, with no socket at all.
    let pool = SandboxPool::builder(probe_policy().build().unwrap()).max_size(1).min_idle(1).build().unwrap();
    let first = {
        let mut lease = pool.acquire().unwrap();
        let out = lease.run(&Command::new(probe()).arg("timewait")).unwrap();
        assert_eq!(stdout(&out), "ok");
        lease.pid()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while pool.stats().reset_failures == 0 {
        assert!(Instant::now() < deadline, "the dirty sandbox was not refused: {:?}", pool.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut lease = pool.acquire().unwrap();
    assert_ne!(lease.pid(), first, "the sandbox that kept a socket was replaced");
    let out = lease.run(&Command::new("/bin/sh").args(["-c", tcp_states])).unwrap();
    assert_eq!(stdout(&out), "", "the next lease sees no socket of the previous one");
}

#[test]
fn personas_numa_calls_fanotify_and_vsock_fail_with_eperm() {
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    for action in ["personality", "mbind", "fanotify", "vsock"] {
        let outside = probe_outside(&[action]);
        assert_ne!(outside, "err 1", "{action}: the probe must reach the kernel outside the sandbox");
        assert_eq!(probe_inside(&mut sb, &[action]), "err 1", "{action} must fail with EPERM inside");
    }
}

#[test]
fn socket_buffers_count_against_the_memory_limit() {
    let sb = Sandbox::spawn(&Policy::builder().memory_mib(64).build().unwrap()).unwrap();
    if sb.isolation().limit("memory").unwrap().enforced_by != sandpool::sandbox::Enforcement::CgroupV1 {
        skip("socket_buffers_count_against_the_memory_limit", "memory is not limited by cgroup v1 here");
        return;
    }
    let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", sb.pid())).unwrap();
    let Some(v1) = cgroups.lines().find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string())) else {
        skip("socket_buffers_count_against_the_memory_limit", "no cgroup v1 memory controller in use here");
        return;
    };
    let limit = std::fs::read_to_string(format!("/sys/fs/cgroup/memory{v1}/memory.kmem.tcp.limit_in_bytes"));
    let Ok(limit) = limit else {
        skip("socket_buffers_count_against_the_memory_limit", "this kernel has no memory.kmem.tcp");
        return;
    };
    assert_eq!(limit.trim(), (64u64 << 20).to_string(), "TCP buffers are charged up to the sandbox's limit");
}

#[test]
fn one_socket_cannot_buffer_more_than_a_share_of_the_memory_limit() {
    let host_max = |name: &str| -> u64 {
        let text = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).unwrap();
        text.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    let cap = (64u64 << 20) / 64;
    let mut sb = Sandbox::spawn(&Policy::builder().memory_mib(64).build().unwrap()).unwrap();
    for name in ["tcp_rmem", "tcp_wmem"] {
        assert!(host_max(name) > cap, "the host allows more than the cap ({name}): the check can fail");
        let inside = stdout(&sh(&mut sb, &format!("cat /proc/sys/net/ipv4/{name}")));
        let max: u64 = inside.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_eq!(max, cap, "{name} inside: {inside}");
    }
}
