//! What one lease leaves for the next: a command must not change the sandbox's own processes,
//! and nothing a session leaves (inode flags, sockets) may reach the next session. Every test
//! first shows its probe works (outside, or on a process it may touch), then that the sandbox
//! keeps it out. CI runs this file as root and as an unprivileged uid.

mod common;

use common::*;
use sandpool::SandboxPool;
use sandpool::sandbox::{Command, Enforcement, Policy, Requirement, Sandbox, Stdio};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::{Duration, Instant};

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

/// Runs `cmd` in one lease of `pool` and ends the lease: the sandbox's pid and the output.
fn one_lease(pool: &SandboxPool, cmd: &Command) -> (i32, String) {
    let mut lease = pool.acquire().unwrap();
    let out = lease.run(cmd).unwrap();
    (lease.pid(), stdout(&out))
}

#[test]
fn the_spawner_stays_non_dumpable_after_commands_and_commands_still_go_first_out_of_memory() {
    let mut sb = Sandbox::spawn(&default_policy()).unwrap();
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
    // Before the sandbox's own processes, which keep the host's score.
    let own = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
    for (who, pid) in [("spawner", spawner), ("init", sb.pid())] {
        let score = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
        assert_eq!(score, own, "the {who} keeps the host's oom_score_adj");
    }
}

#[test]
fn the_init_and_the_spawner_block_every_signal_including_32_and_33() {
    let mut sb = Sandbox::spawn(&default_policy()).unwrap();
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
    sb.reset().unwrap();
    assert_eq!(stdout(&sh(&mut sb, tcp_states)), "", "the reset's new network namespace has no socket");
    assert!(sb.is_clean());

    // Through the pool: the next lease gets the same sandbox, with no socket at all.
    let pool = SandboxPool::builder(probe_policy().build().unwrap()).max_size(1).min_idle(1).build().unwrap();
    let (first, out) = one_lease(&pool, Command::new(probe()).arg("timewait"));
    assert_eq!(out, "ok");
    let mut lease = pool.acquire().unwrap();
    assert_eq!(lease.pid(), first, "the same sandbox");
    let out = lease.run(Command::new("/bin/sh").args(["-c", tcp_states])).unwrap();
    assert_eq!(stdout(&out), "", "the next lease sees no socket of the previous one");
    let s = pool.stats();
    assert_eq!((s.resets, s.reset_failures, s.pool.created), (1, 0, 1), "{s:?}");
}

#[test]
fn personas_numa_calls_and_fanotify_fail_with_eperm() {
    // AF_VSOCK, refused with the other families outside the allow-list, is checked in
    // sandbox_host_boundary.rs.
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    for action in ["personality", "mbind", "fanotify"] {
        let outside = probe_outside(&[action]);
        assert_ne!(outside, "err 1", "{action}: the probe must reach the kernel outside the sandbox");
        assert_eq!(probe_inside(&mut sb, &[action]), "err 1", "{action} must fail with EPERM inside");
    }
}

/// An out-of-memory kill in one lease is that lease's: the next lease of the same sandbox
/// (its session kept, as the command left nothing behind) reports none for itself.
#[test]
fn an_out_of_memory_kill_is_not_reported_to_the_next_lease() {
    const TEST: &str = "an_out_of_memory_kill_is_not_reported_to_the_next_lease";
    let policy = policy_builder().memory_mib(64).build().unwrap();
    let pool = SandboxPool::builder(policy).max_size(1).min_idle(1).build().unwrap();
    let mut lease = pool.acquire().unwrap();
    if !has_cgroups(&lease) {
        return skip(TEST, "memory is not limited by a cgroup here");
    }
    let first = lease.pid();
    // The probe works: an allocation past the limit is killed, and this lease says so.
    let out = lease.run(Command::new("dd").args(["if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"])).unwrap();
    assert!(out.usage.oom_killed() && lease.oom_killed(), "the first lease ran out of memory: {out:?}");
    drop(lease);
    let mut lease = pool.acquire().unwrap();
    assert_eq!(lease.pid(), first, "the same sandbox");
    assert!(!lease.oom_killed(), "the next lease inherits no OOM kill: {:?}", pool.stats());
    let out = lease.run(&Command::new("/bin/true")).unwrap();
    assert!(out.status.success() && !out.usage.oom_killed() && !lease.oom_killed(), "{out:?}");
}

/// What the kernel charges the sandbox for its sockets' buffers, in bytes: cgroup v2's `sock`
/// in `memory.stat`, or v1's `memory.kmem.tcp.usage_in_bytes` (`None` where v1 has no TCP
/// accounting).
fn socket_charge(sandbox: &Sandbox) -> Option<u64> {
    let init = sandbox.pid() as u32;
    let read = |path: PathBuf| std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match sandbox.isolation().limit("memory").unwrap().enforced_by {
        Enforcement::CgroupV2 => {
            // The init's leaf's parent: the sandbox's cgroup, whose statistics count its
            // commands' cgroup too.
            let stat = read(cgroup_of(init, None).unwrap().parent().unwrap().join("memory.stat"));
            Some(stat.lines().find_map(|l| l.strip_prefix("sock ")).expect("memory.stat has sock").parse().unwrap())
        }
        Enforcement::CgroupV1 => {
            let dir = cgroup_of(init, Some("memory")).unwrap();
            std::fs::read_to_string(dir.join("memory.kmem.tcp.usage_in_bytes")).ok().map(|t| t.trim().parse().unwrap())
        }
        other => panic!("memory is enforced by {other}, not a cgroup"),
    }
}

/// Socket buffers are memory the kernel holds for a session outside any process: unless they
/// count against the sandbox's limit, a lease could leave the host (and the next lease) short
/// of memory far past its limit. The probe fills loopback connections, never read, until
/// 96 MiB are buffered. In a 64 MiB sandbox the kernel either stops taking data near the
/// limit (cgroup v1: `memory.kmem.tcp`) or kills the probe for it (v2: sockets share
/// `memory.max` with everything else).
#[test]
fn socket_buffers_count_against_the_memory_limit() {
    const TEST: &str = "socket_buffers_count_against_the_memory_limit";
    const TARGET_MIB: u64 = 96;
    enum Filled {
        /// The probe holds `buffered` bytes; the cgroup is charged `charged` for sockets.
        Held {
            buffered: u64,
            charged: u64,
        },
        OomKilled,
    }
    // `None` if no cgroup charges sockets here.
    let fill = |mib: u64| -> Option<Filled> {
        let sb = Sandbox::spawn(&probe_policy().memory_mib(mib).build().unwrap()).unwrap();
        if !has_cgroups(&sb) {
            return None;
        }
        let target = TARGET_MIB.to_string();
        let mut child = sb
            .start(Command::new(probe()).args(["sockfill", &target]).stdin(Stdio::piped()).stdout(Stdio::piped()))
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let charged = socket_charge(&sb);
        drop(child.stdin.take());
        let exit = child.wait().unwrap();
        let Ok(buffered) = line.trim().parse() else {
            assert_eq!(exit.status.signal(), Some(9), "sockfill in {mib} MiB printed {line:?}: {exit:?}");
            assert!(sb.oom_killed(), "sockfill in {mib} MiB was killed, but not for memory: {exit:?}");
            return Some(Filled::OomKilled);
        };
        assert!(exit.success(), "sockfill in {mib} MiB: {exit:?}");
        Some(Filled::Held { buffered, charged: charged? })
    };
    // The probe works: with room (1 GiB; on v1 an eighth of it, 128 MiB, for TCP buffers),
    // it buffers all it wants.
    let roomy = match fill(1024) {
        None => return skip(TEST, "memory is not limited by a cgroup that charges sockets here"),
        Some(Filled::OomKilled) => panic!("sockfill was killed for memory in a 1 GiB sandbox"),
        Some(Filled::Held { buffered, .. }) => buffered,
    };
    assert!(roomy >= TARGET_MIB << 20, "with 1 GiB, the probe buffered only {roomy} bytes");
    match fill(64).unwrap() {
        Filled::OomKilled => eprintln!("sockets buffered {roomy} bytes in 1 GiB; in 64 MiB the probe was OOM-killed"),
        Filled::Held { buffered, charged } => {
            eprintln!("sockets buffered {roomy} bytes in 1 GiB, {buffered} in 64 MiB ({charged} charged)");
            assert!(buffered < TARGET_MIB << 20, "a 64 MiB sandbox buffered {buffered} bytes in sockets");
            assert!(charged >= buffered / 2, "{buffered} bytes buffered, {charged} charged to the sandbox");
        }
    }
}

#[test]
fn one_socket_cannot_buffer_more_than_a_share_of_the_memory_limit() {
    let host_max = |name: &str| -> u64 {
        let text = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).unwrap();
        text.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    let cap = (64u64 << 20) / 64;
    let mut sb = Sandbox::spawn(&policy_builder().memory_mib(64).build().unwrap()).unwrap();
    for name in ["tcp_rmem", "tcp_wmem"] {
        assert!(host_max(name) > cap, "the host allows more than the cap ({name}): the check can fail");
        let inside = stdout(&sh(&mut sb, &format!("cat /proc/sys/net/ipv4/{name}")));
        let max: u64 = inside.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_eq!(max, cap, "{name} inside: {inside}");
    }
}

/// The policies the separation must hold under: Landlock as the tests run it (this kernel's
/// ABI unless `SANDPOOL_TEST_LANDLOCK` says otherwise), capped at ABI 5 (every kernel before
/// 6.12: no signal scoping), and off.
fn landlock_variants() -> Vec<(&'static str, Policy)> {
    vec![
        ("Landlock under test", probe_policy().build().unwrap()),
        ("Landlock capped at ABI 5", probe_policy().landlock_max_abi(5).build().unwrap()),
        ("Landlock off", probe_policy().landlock(Requirement::Off).build().unwrap()),
    ]
}

/// Every call of the probe's `pidcalls` line, with its result.
fn pid_calls(line: &str) -> Vec<(String, String)> {
    line.split_whitespace()
        .map(|call| {
            let (name, result) = call.split_once(':').expect("name:result");
            (name.to_string(), result.replace("err", "err "))
        })
        .collect()
}

#[test]
fn commands_cannot_name_signal_or_change_the_spawner_on_any_landlock_abi() {
    for (variant, policy) in landlock_variants() {
        let mut sb = Sandbox::spawn(&policy).unwrap();
        if variant.contains("ABI 5") && sb.isolation().landlock.abi.is_some_and(|abi| abi > 5) {
            panic!("{variant}: the cap did not take: {:?}", sb.isolation().landlock);
        }
        // The probe works: on a child of its own every call goes through.
        let control = pid_calls(&probe_inside(&mut sb, &["pidcalls", "child"]));
        assert_eq!(control.len(), 11, "{variant}: {control:?}");
        for (call, result) in &control {
            assert_eq!(result, "ok", "{variant}: {call} on the probe's own child");
        }
        // The spawner is pid 1 of the commands' namespace: every call on it is refused, and
        // its /proc entry does not exist for them.
        for (call, result) in pid_calls(&probe_inside(&mut sb, &["pidcalls", "1"])) {
            let expected = if call == "proc" { "err 2" } else { "err 1" };
            assert_eq!(result, expected, "{variant}: {call} on the spawner");
        }
        // Nothing of the sandbox is listed: the init is in another pid namespace.
        assert_eq!(probe_inside(&mut sb, &["procs"]), "1", "{variant}: only the probe itself");
        assert_eq!(probe_inside(&mut sb, &["read", "/proc/1/status"]), "err 2", "{variant}");
        // And nothing changed: the next command still runs.
        assert!(sb.run(&Command::new("/bin/true")).unwrap().success(), "{variant}");
        assert!(sb.is_clean(), "{variant}: calls that were refused leave the session clean");
    }
}

#[test]
fn the_spawner_is_pid_1_of_the_commands_namespace_and_the_init_is_outside_it() {
    let sb = Sandbox::spawn(&default_policy()).unwrap();
    let nspids = |pid: i32| -> Vec<String> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status.lines().find_map(|l| l.strip_prefix("NSpid:")).unwrap().split_whitespace().map(String::from).collect()
    };
    // Host pid, then the sandbox's namespace, then the commands' one.
    let init = nspids(sb.pid());
    assert_eq!(init.last().map(String::as_str), Some("1"), "the init is pid 1 of the sandbox's namespace: {init:?}");
    let spawner = nspids(spawner_of(&sb));
    assert_eq!(spawner.len(), init.len() + 1, "the spawner is one namespace deeper: {spawner:?}");
    assert_eq!(spawner.last().map(String::as_str), Some("1"), "and pid 1 there: {spawner:?}");
}

#[test]
fn a_change_to_the_spawner_marks_the_session_dirty_and_the_next_session_has_a_new_one() {
    // The wall behind the filter: with seccomp and Landlock off, a command can lower the
    // spawner's file limit (the probe works), which every later command would inherit.
    let policy = || probe_policy().seccomp(Requirement::Off).landlock(Requirement::Off).build().unwrap();
    let mut sb = Sandbox::spawn(&policy()).unwrap();
    let limit = || "ulimit -n";
    let before = stdout(&sh(&mut sb, limit()));
    assert!(sb.is_clean(), "a fresh session is clean");
    let spawner = spawner_of(&sb);
    assert_eq!(probe_inside(&mut sb, &["lowerlimit", "1"]), "ok", "without the filter the call goes through");
    assert!(!sb.is_clean(), "a changed spawner makes the session dirty");
    let halved = stdout(&sh(&mut sb, limit()));
    assert_ne!(halved, before, "the next command would inherit it");
    sb.reset().unwrap();
    assert_ne!(spawner_of(&sb), spawner, "the reset started a new session, with a new spawner");
    assert_eq!(stdout(&sh(&mut sb, limit())), before, "which has the limit as a fresh sandbox has it");

    // Through the pool: the dirty lease is reset before the next one.
    let pool = SandboxPool::builder(policy()).max_size(1).min_idle(1).build().unwrap();
    assert_eq!(one_lease(&pool, Command::new(probe()).args(["lowerlimit", "1"])).1, "ok");
    let mut lease = pool.acquire().unwrap();
    assert_eq!(pool.stats().resets, 1, "{:?}", pool.stats());
    let out = lease.run(Command::new("/bin/sh").args(["-c", limit()])).unwrap();
    assert_eq!(stdout(&out), before, "the next lease sees the limit as a fresh sandbox has it");
}

#[test]
fn the_pid_counter_starts_afresh_for_each_lease() {
    let mut fresh = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    let first_pid = probe_inside(&mut fresh, &["pid"]);
    assert_eq!(first_pid, "2", "a fresh sandbox's first command is pid 2, after the spawner");
    assert_eq!(probe_inside(&mut fresh, &["pid"]), first_pid, "and so is the next, the session untouched");

    // The probe sees the counter move: while a process is left, nothing rewinds it.
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    assert!(sh(&mut sb, "sleep 1000 >/dev/null 2>&1 &").success());
    let moved: i32 = probe_inside(&mut sb, &["pid"]).parse().unwrap();
    assert!(moved > 3, "the shell and the sleep took pids 2 and 3: {moved}");
    sb.reset().unwrap();
    assert_eq!(probe_inside(&mut sb, &["pid"]), first_pid, "a reset rewinds it");

    // A command that forked and reaped its children leaves the session untouched; the next
    // one, of the next lease, starts from the same pid as in a fresh sandbox.
    let pool = SandboxPool::builder(probe_policy().build().unwrap()).max_size(1).min_idle(1).build().unwrap();
    let (first, out) = one_lease(&pool, Command::new(probe()).args(["forkmany", "30"]));
    assert_eq!(out, "30");
    let mut lease = pool.acquire().unwrap();
    assert_eq!(lease.pid(), first, "the same sandbox, handed on without a reset");
    let out = lease.run(Command::new(probe()).arg("pid")).unwrap();
    assert_eq!(stdout(&out), first_pid, "the next lease cannot tell how many processes the last one made");
    assert!(pool.stats().resets_skipped > 0, "{:?}", pool.stats());
}

/// Prints loopback's line of `/proc/net/dev`.
const LOOPBACK_LINE: &str = "grep 'lo:' /proc/net/dev";

/// The received-packet counter of [`LOOPBACK_LINE`]'s output.
fn received_packets(line: &str) -> u64 {
    line.split_once(':').unwrap().1.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Loopback's received-packet counter, as a command reads it.
fn loopback_packets(sb: &mut Sandbox) -> u64 {
    received_packets(&stdout(&sh(sb, LOOPBACK_LINE)))
}

#[test]
fn traffic_a_lease_sent_never_shows_in_the_next_lease_counters() {
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    assert_eq!(loopback_packets(&mut sb), 0, "a fresh namespace has seen no packet");
    assert!(sb.is_clean());
    // The probe works: one datagram to a closed port moves the counters a command can read.
    assert_eq!(probe_inside(&mut sb, &["udp", "127.0.0.1"]), "ok");
    assert!(loopback_packets(&mut sb) > 0, "the datagram (and its ICMP answer) went through lo");
    assert!(!sb.is_clean(), "traffic marks the session dirty, though no socket is left");
    sb.reset().unwrap();
    assert_eq!(loopback_packets(&mut sb), 0, "counters cannot be reset: the reset made a new namespace");

    // Through the pool: the next lease, of the same sandbox, gets a namespace that has seen
    // nothing.
    let pool = SandboxPool::builder(probe_policy().build().unwrap()).max_size(1).min_idle(1).build().unwrap();
    let (first, out) = one_lease(&pool, Command::new(probe()).args(["udp", "127.0.0.1"]));
    assert_eq!(out, "ok");
    let mut lease = pool.acquire().unwrap();
    assert_eq!(lease.pid(), first, "the same sandbox");
    let out = lease.run(Command::new("/bin/sh").args(["-c", LOOPBACK_LINE])).unwrap();
    assert_eq!(received_packets(&stdout(&out)), 0, "the next lease sees no packet of the previous one");
}

#[test]
fn a_send_to_an_address_no_route_covers_leaves_nothing() {
    // Without a route such a send counts itself in Ip: OutNoRoutes (the host shows it); the
    // sandbox routes everything but loopback to `unreachable`, which counts nothing.
    let out_no_routes = "awk '/^Ip:/ { for (i = 1; i <= NF; i++) if ($i == \"OutNoRoutes\") c = i; if ($c ~ /^[0-9]/) print $c }' /proc/net/snmp";
    // The control: in a bare user and network namespace of the host, the same send fails
    // with ENETUNREACH and the counter moves.
    let script = format!("{} udp 192.0.2.1; {out_no_routes}", probe().display());
    match std::process::Command::new("unshare").args(["-rn", "sh", "-c", &script]).output() {
        Ok(o) if o.status.success() => {
            assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "err 101\n1", "without a route the send counts");
        }
        other => {
            skip("a_send_to_an_address_no_route_covers_leaves_nothing (control)", &format!("unshare -rn: {other:?}"))
        }
    }
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    let before = stdout(&sh(&mut sb, out_no_routes));
    assert!(before.parse::<u64>().is_ok(), "the probe reads the counter: {before:?}");
    for address in ["192.0.2.1", "10.1.2.3"] {
        assert_eq!(probe_inside(&mut sb, &["udp", address]), "err 113", "EHOSTUNREACH: the route said no");
    }
    assert_eq!(stdout(&sh(&mut sb, out_no_routes)), before, "no counter moved");
    assert!(sb.is_clean(), "the session is clean");
    sb.reset().expect("and the reset, which compares every counter, finds the namespace as fresh");
    let routes = stdout(&sh(&mut sb, "cat /proc/net/route | tail -n +2 | wc -l"));
    assert_eq!(routes, "1", "one route, the unreachable default (local routes live elsewhere)");
}

#[test]
fn the_session_directories_times_tell_nothing_of_the_last_lease() {
    let mut sb = Sandbox::spawn(&default_policy()).unwrap();
    let times = |sb: &mut Sandbox| stdout(&sh(sb, "stat -c '%X.%x|%Y.%y' /tmp /dev/shm /dev/mqueue"));
    let fresh = times(&mut sb);
    // Reading leaves them (the session directories are noatime) and the session clean.
    assert!(sh(&mut sb, "ls -la /tmp /dev/shm /dev/mqueue >/dev/null").success());
    assert!(sb.is_clean(), "listing the session directories leaves the session clean");
    assert_eq!(times(&mut sb), fresh);
    // The probe works: a file made and removed at once moves /tmp's modification time, and
    // a command may set the times it likes on a directory it owns.
    std::thread::sleep(Duration::from_millis(20));
    assert!(sh(&mut sb, "touch /tmp/x && rm /tmp/x && touch -a -d @1 /dev/shm && touch /dev/mqueue").success());
    let changed = times(&mut sb);
    assert_ne!(changed, fresh, "the times show the lease's doings");
    assert!(!sb.is_clean(), "so they mark the session dirty, though no entry is left");
    std::thread::sleep(Duration::from_millis(20));
    sb.reset().unwrap();
    // The next session's directories are new: made at the reset, untouched since (access,
    // modification and change times alike), nothing of the lease's.
    let after = stdout(&sh(&mut sb, "stat -c '%X.%x|%Y.%y|%Z.%z' /tmp /dev/shm /dev/mqueue"));
    for (line, before) in after.lines().zip(changed.lines()) {
        let stamps: Vec<&str> = line.split('|').collect();
        assert!(stamps.windows(2).all(|w| w[0] == w[1]), "fresh: {line}");
        let lease: Vec<&str> = before.split('|').collect();
        // (mqueue keeps whole seconds: the lease's and the reset's may be the same second.)
        if !line.contains(".000000000 ") {
            assert!(stamps[0] != lease[0] && stamps[1] != lease[1], "not the lease's: {line} / {before}");
        }
    }
    assert!(sb.is_clean());
}

#[test]
fn inode_numbers_and_ipc_ids_start_afresh_for_each_lease() {
    let mut fresh = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    let first_inode = probe_inside(&mut fresh, &["inodes", "1"]);
    let first_shmid = probe_inside(&mut fresh, &["shmid"]);
    assert_eq!(first_shmid, "0", "a fresh IPC namespace's first segment");

    // The probes see both counters move within a session: numbers are not reused at once.
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    assert_eq!(probe_inside(&mut sb, &["inodes", "1"]), first_inode, "every fresh session starts alike");
    let later: u64 = probe_inside(&mut sb, &["inodes", "50"]).parse().unwrap();
    assert!(later > first_inode.parse().unwrap(), "inode numbers moved on: {later}");
    assert!(sb.run(&Command::new("/bin/true")).unwrap().success());
    assert!(!sb.is_clean(), "files made and removed leave the session dirty (its /tmp's times)");
    sb.reset().unwrap();
    assert_eq!(probe_inside(&mut sb, &["shmid"]), first_shmid);
    assert!(sb.run(&Command::new("/bin/true")).unwrap().success());
    assert!(!sb.is_clean(), "a segment made and removed leaves the session dirty");
    let ids: Vec<String> = (0..3).map(|_| probe_inside(&mut sb, &["shmid"])).collect();
    assert_ne!(ids[2], first_shmid, "ids moved on: {ids:?}");
    // A reset starts a new session: both counters are a fresh sandbox's again.
    sb.reset().unwrap();
    assert_eq!(probe_inside(&mut sb, &["inodes", "1"]), first_inode, "the next session's first inode");
    assert_eq!(probe_inside(&mut sb, &["shmid"]), first_shmid, "and its first segment id");

    // Through the pool: the next lease cannot count what the last one made.
    let pool = SandboxPool::builder(probe_policy().build().unwrap()).max_size(1).min_idle(1).build().unwrap();
    {
        let mut lease = pool.acquire().unwrap();
        for args in [["inodes", "30"], ["shmid", ""]] {
            assert!(lease.run(Command::new(probe()).args(args)).unwrap().success());
        }
    }
    let mut lease = pool.acquire().unwrap();
    let inode = lease.run(Command::new(probe()).args(["inodes", "1"])).unwrap();
    assert_eq!(stdout(&inode), first_inode);
    let shmid = lease.run(Command::new(probe()).arg("shmid")).unwrap();
    assert_eq!(stdout(&shmid), first_shmid);
}

#[test]
fn unnamed_files_are_refused_as_by_a_file_system_without_them() {
    // An O_TMPFILE file changes nothing its directory shows, but takes the tmpfs's next inode
    // number. Outside, the probe makes one (the kernel and the host's file system take it).
    let host_tmp = std::env::temp_dir();
    assert_eq!(probe_outside(&["tmpfile", host_tmp.to_str().unwrap()]), "ok", "O_TMPFILE works on the host");
    assert_ne!(probe_outside(&["openat2"]), format!("err {}", libc::ENOSYS), "the kernel has openat2");
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    for dir in ["/tmp", "/dev/shm"] {
        let refused = format!("err {}", libc::EOPNOTSUPP);
        assert_eq!(probe_inside(&mut sb, &["tmpfile", dir]), refused, "as a file system without it would");
    }
    // openat2's flags are out of the filter's sight: it answers as a kernel without it.
    assert_eq!(probe_inside(&mut sb, &["openat2"]), format!("err {}", libc::ENOSYS));
    // What libc falls back to, a named file, shows.
    assert!(sh(&mut sb, "echo x > /tmp/named && rm /tmp/named").success());
    assert!(!sb.is_clean(), "a named file, made and removed, marks the session dirty");
}

#[test]
fn the_next_lease_cannot_tell_its_sandbox_from_a_fresh_one() {
    let policy = || probe_policy().build().unwrap();
    let fresh = fingerprint(
        &Sandbox::spawn(&policy()).unwrap().run(Command::new("/bin/sh").args(["-c", FINGERPRINT])).unwrap(),
    );
    assert!(fresh.contains("pid 2") && fresh.contains("next shm id 0"), "{fresh}");

    // A lease that leaves every kind of trace a reset must take away, one that used the
    // loopback network (a connection, a TIME_WAIT, a flow label, a datagram to a closed port:
    // sockets and counters no call resets), then one that leaves none (no reset).
    let probe = probe().display().to_string();
    let dirty = format!(
        "echo s > /tmp/a; mkdir /tmp/d; ln -s x /tmp/l; echo s > /dev/shm/s; chmod 700 /tmp; chmod 711 /dev/shm; \
         {probe} setflags /tmp >/dev/null; {probe} setxattr /dev/shm >/dev/null; \
         ipcmk -M 4096 >/dev/null; ipcmk -Q >/dev/null; ipcmk -S 1 >/dev/null; \
         for i in $(seq 40); do touch /tmp/f$i; /bin/true; done; rm -f /tmp/f*; \
         {probe} forkmany 20 >/dev/null; sleep 1000 >/dev/null 2>&1 &"
    );
    let network =
        format!("{probe} timewait >/dev/null && {probe} flowlabel >/dev/null && {probe} udp 127.0.0.1 >/dev/null");
    let quiet = format!("ls -la /tmp /proc >/dev/null; cat /proc/net/dev >/dev/null; {probe} forkmany 20 >/dev/null");
    let pool = SandboxPool::builder(policy()).max_size(1).min_idle(1).build().unwrap();
    // Each kind twice, so that resets switch to sessions made ahead, sharing the network
    // namespace and, after a lease that used it, with one of their own.
    for (what, script) in [
        ("after a lease that left traces", dirty.as_str()),
        ("after a second lease that left traces", dirty.as_str()),
        ("after a lease that used the network", network.as_str()),
        ("after a second lease that used the network", network.as_str()),
        ("after a quiet lease", quiet.as_str()),
    ] {
        let first = {
            let mut lease = pool.acquire().unwrap();
            let out = lease.run(Command::new("/bin/sh").args(["-c", script])).unwrap();
            assert!(out.success(), "{what}: {out:?}");
            lease.pid()
        };
        let mut lease = pool.acquire().unwrap();
        assert_eq!(lease.pid(), first, "{what}: the same sandbox, reused");
        let seen = fingerprint(&lease.run(Command::new("/bin/sh").args(["-c", FINGERPRINT])).unwrap());
        assert_eq!(seen, fresh, "{what}: the next lease sees its sandbox as a fresh one");
    }
    let s = pool.stats();
    // The fingerprint's own lease leaves traces too (a file, an IPC object): after the
    // first reset, each reset switches to a session made ahead, but where it shared a network
    // namespace that the lease before used.
    assert!(s.resets >= 8 && s.resets_skipped >= 1, "{s:?}");
    // Where a cgroup counts processes (the spare is one more of the sandbox's own).
    let counted = Sandbox::spawn(&policy()).unwrap().isolation().limit("processes").unwrap().enforced_by;
    if matches!(counted, Enforcement::CgroupV1 | Enforcement::CgroupV2) {
        assert!(s.resets_made_ahead >= 4 && s.resets_made_ahead < s.resets, "{s:?}");
    } else {
        assert_eq!(s.resets_made_ahead, 0, "no cgroup counts processes, so no spare: {s:?}");
    }
    assert_eq!((s.pool.created, s.reset_failures), (1, 0), "one sandbox served them all: {s:?}");
}

#[test]
fn the_init_itself_runs_under_the_sandbox_filter_and_each_session_adds_its_own() {
    let filters = |pid: &str| -> (String, String) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string()).unwrap_or_default()
        };
        (field("Seccomp:"), field("Seccomp_filters:"))
    };
    // The probe reads a process's filters: the test itself has none (when CI runs it so).
    let (mode, _) = filters("self");
    if mode != "0" {
        skip(
            "the_init_itself_runs_under_the_sandbox_filter_and_each_session_adds_its_own",
            "this test runs under seccomp",
        );
        return;
    }
    // The x32 guard (x86_64 only), the deny list, the calls answering ENOSYS, O_TMPFILE, the
    // socket families and the protocols.
    let sandbox_programs = if cfg!(target_arch = "x86_64") { 6 } else { 5 };
    let mut sb = Sandbox::spawn(&default_policy()).unwrap();
    let init = filters(&sb.pid().to_string());
    assert_eq!(init, ("2".into(), sandbox_programs.to_string()), "the init: the sandbox's programs");
    let spawner = filters(&spawner_of(&sb).to_string());
    assert_eq!(spawner, ("2".into(), (sandbox_programs + 1).to_string()), "the spawner adds the session's");
    let inside = stdout(&sh(&mut sb, "grep -E '^Seccomp(_filters)?:' /proc/self/status | tr -s '\\t' ' '"));
    assert_eq!(inside, format!("Seccomp: 2\nSeccomp_filters: {}", sandbox_programs + 1), "commands inherit them all");
}

/// The spawner holds only what it owns: the zygote's descriptors (the control socket to the
/// host, its signalfd, its pid namespace, its network watch) are closed in every spawner, so
/// nothing a session reaches could talk to the host or outlive the session. Read from the
/// host, which may read a non-dumpable process's descriptors only as root.
#[test]
fn a_spawner_holds_none_of_the_zygotes_descriptors() {
    let sb = Sandbox::spawn(&default_policy()).unwrap();
    let links = |pid: i32| -> Option<Vec<String>> {
        let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        Some(dir.flatten().filter_map(|e| std::fs::read_link(e.path()).ok()).map(|l| l.display().to_string()).collect())
    };
    let Some(zygote) = links(sb.pid()) else {
        skip("a_spawner_holds_none_of_the_zygotes_descriptors", "this uid may not read the sandbox's descriptors");
        return;
    };
    let spawner = links(spawner_of(&sb)).expect("readable as the zygote's are");
    let count = |links: &[String], what: &str| links.iter().filter(|l| l.starts_with(what)).count();
    // The probe sees them where they are: the zygote holds its control socket, its signalfd
    // and its pid namespace.
    assert!(count(&zygote, "socket:") >= 1, "the zygote's control socket: {zygote:?}");
    assert_eq!(count(&zygote, "anon_inode:[signalfd]"), 1, "{zygote:?}");
    assert_eq!(count(&zygote, "pid:["), 1, "the zygote's own pid namespace: {zygote:?}");
    assert_eq!(count(&spawner, "socket:"), 1, "the runner socket alone: {spawner:?}");
    assert_eq!(count(&spawner, "anon_inode:[signalfd]"), 1, "its own signalfd alone: {spawner:?}");
    assert_eq!(count(&spawner, "pid:["), 0, "no namespace handle: {spawner:?}");
}
