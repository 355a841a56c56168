//! The warm sandbox pool under load, and isolation between leases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sandpool::SandboxPool;
use sandpool::sandbox::{Command, Policy};

/// Waits until every released sandbox has been reset or destroyed (a hang turns into a
/// failure after a generous deadline; no timing is asserted).
fn quiesce(pool: &SandboxPool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = pool.stats();
        if s.resetting == 0 && s.pool.leased == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the pool did not settle: {s:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn thousands_of_leases_from_several_threads_all_correct() {
    let pool = Arc::new(SandboxPool::builder(Policy::default()).max_size(4).min_idle(2).build().unwrap());
    assert!(pool.warm_up(Duration::from_secs(30)));
    let threads = 4;
    let per_thread: usize = 500;
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    let mut lease = pool.acquire().unwrap();
                    let tag = format!("{t}-{i}");
                    if i % 25 == 0 {
                        // A session: the second run sees what the first left in /tmp.
                        let first = lease.run(Command::new("/bin/sh").args(["-c", &format!("echo {tag} > /tmp/s")]));
                        assert!(first.unwrap().success());
                        let out = lease.run(Command::new("cat").arg("/tmp/s")).unwrap();
                        assert_eq!(out.stdout, format!("{tag}\n").into_bytes());
                    } else {
                        let out = lease.run(Command::new("echo").arg(&tag)).unwrap();
                        assert_eq!(out.stdout, format!("{tag}\n").into_bytes(), "every result is the command's own");
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    quiesce(&pool);
    pool.sweep_once();
    let s = pool.stats();
    let total = (threads * per_thread) as u64;
    assert_eq!(s.pool.hits + s.pool.misses, total, "every acquire counted: {s:?}");
    assert_eq!(s.pool.leased, 0, "no lease lost");
    assert_eq!(s.pool.created - s.pool.destroyed, s.pool.live as u64, "none lost: {s:?}");
    assert!(s.pool.live <= 4, "never above max_size");
    // Only the sessions that wrote to /tmp needed a reset; the others left nothing behind.
    let dirty = (threads * per_thread.div_ceil(25)) as u64;
    assert_eq!((s.resets, s.resets_skipped), (dirty, total - dirty), "{s:?}");
    assert_eq!((s.reset_failures, s.broken_leases), (0, 0));
}

#[test]
fn the_next_lease_of_a_sandbox_sees_nothing_of_the_previous_one() {
    let pool = SandboxPool::builder(Policy::default()).max_size(1).min_idle(1).build().unwrap();
    let mut first = pool.acquire().unwrap();
    let pid = first.pid();
    let out = first
        .run(Command::new("/bin/sh").args(["-c", "echo secret > /tmp/left; sleep 1000 >/dev/null 2>&1 & echo ok"]))
        .unwrap();
    assert_eq!(out.stdout, b"ok\n");
    // Within the lease both are there (the check below can see them).
    let seen = first
        .run(Command::new("/bin/sh").args(["-c", "cat /tmp/left; cat /proc/[0-9]*/comm | grep -c sleep"]))
        .unwrap();
    assert_eq!(seen.stdout, b"secret\n1\n");
    drop(first);
    let mut second = pool.acquire().unwrap();
    assert_eq!(second.pid(), pid, "the same sandbox, reused");
    let seen =
        second.run(Command::new("/bin/sh").args(["-c", "ls -A /tmp; cat /proc/[0-9]*/comm | grep -c sleep"])).unwrap();
    assert_eq!(seen.stdout, b"0\n", "no file, no process left: {:?}", String::from_utf8_lossy(&seen.stdout));
    assert_eq!(pool.stats().resets, 1);
}

/// A lease whose commands left nothing behind goes back without a reset (counted as
/// skipped) and the same sandbox serves the next lease; one that left a file is reset
/// before the next lease, which never sees the file.
#[test]
fn untouched_sessions_skip_the_reset_and_traces_never_cross_leases() {
    let pool = SandboxPool::builder(Policy::default()).max_size(1).min_idle(1).build().unwrap();
    assert!(pool.warm_up(Duration::from_secs(30)));
    let sh = |script: &str| {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script]);
        cmd
    };
    let first = {
        let mut lease = pool.acquire().unwrap();
        assert!(lease.run(&Command::new("true")).unwrap().success());
        lease.pid()
    };
    quiesce(&pool);
    let s = pool.stats();
    assert_eq!((s.resets, s.resets_skipped), (0, 1), "{s:?}");
    {
        let mut lease = pool.acquire().unwrap();
        assert_eq!(lease.pid(), first, "the same sandbox, handed on at once");
        let out = lease.run(&sh("test ! -e /tmp/x && echo secret > /tmp/x")).unwrap();
        assert!(out.success(), "{out:?}");
    }
    quiesce(&pool);
    let s = pool.stats();
    assert_eq!((s.resets, s.resets_skipped), (1, 1), "a session with a trace is reset: {s:?}");
    let mut lease = pool.acquire().unwrap();
    assert_eq!(lease.pid(), first);
    let out = lease.run(&sh("ls -A /tmp; test ! -e /tmp/x")).unwrap();
    assert!(out.success() && out.stdout.is_empty(), "the next lease saw the trace: {out:?}");
}

/// Binds below `/tmp` and `/dev/shm` (a directory made with `mktemp -d`, where hosts make
/// them, or one below it; read-only and read-write) leave a lease that touched nothing
/// untouched: the reset is skipped. What a lease writes into a read-write bind is the host's own directory changing,
/// not a trace in the sandbox: skipped too. A file in the session's own `/tmp` is a trace.
#[test]
fn binds_below_tmp_keep_untouched_leases_unreset() {
    let made = |base: &str, n: usize| {
        let dir = std::path::PathBuf::from(format!("{base}/tmp.sandpool-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        dir
    };
    let dirs = [made("/tmp", 0), made("/tmp", 1), made("/tmp", 2), made("/dev/shm", 3), made("/tmp", 4)];
    let nested = dirs[4].join("work");
    std::fs::create_dir(&nested).unwrap();
    std::fs::write(dirs[0].join("input"), "data").unwrap();
    let policy = Policy::builder().ro(&dirs[0]).rw(&dirs[1]).rw(&dirs[2]).ro(&dirs[3]).ro(&nested).build().unwrap();
    let pool = SandboxPool::builder(policy).max_size(1).min_idle(1).build().unwrap();
    assert!(pool.warm_up(Duration::from_secs(30)));
    let out_file = dirs[1].join("out");
    let script = format!(
        "cat {}/input > {} && test -d {} && test -d {}",
        dirs[0].display(),
        out_file.display(),
        dirs[3].display(),
        nested.display()
    );
    for _ in 0..3 {
        let mut lease = pool.acquire().unwrap();
        assert!(lease.run(&Command::new("true")).unwrap().success());
        let out = lease.run(Command::new("/bin/sh").args(["-c", &script])).unwrap();
        assert!(out.success(), "{out:?}");
    }
    quiesce(&pool);
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), "data", "the read-write bind is the host's directory");
    let s = pool.stats();
    assert_eq!((s.resets, s.resets_skipped), (0, 3), "{s:?}");
    {
        let mut lease = pool.acquire().unwrap();
        assert!(lease.run(Command::new("/bin/sh").args(["-c", "echo x > /tmp/trace"])).unwrap().success());
    }
    quiesce(&pool);
    assert_eq!(pool.stats().resets, 1, "a file in the session's /tmp is a trace: {:?}", pool.stats());
    for d in dirs {
        std::fs::remove_dir_all(d).unwrap();
    }
}

/// Once a pool's sandbox has been reset, it keeps its next session made ahead of need (a
/// spare spawner, one more process of its own): its commands keep their whole process limit,
/// no more and no less, and the reset that switches to it counts as made ahead.
#[test]
fn a_session_made_ahead_takes_no_process_from_the_commands() {
    let policy = Policy::builder().max_processes(8).build().unwrap();
    let pool = SandboxPool::builder(policy).max_size(1).min_idle(1).build().unwrap();
    assert!(pool.warm_up(Duration::from_secs(30)));
    let cgroup_counts = {
        let lease = pool.acquire().unwrap();
        let counted = lease.isolation().limit("processes").map(|l| l.enforced_by);
        counted.is_some_and(|e| {
            matches!(e, sandpool::sandbox::Enforcement::CgroupV1 | sandpool::sandbox::Enforcement::CgroupV2)
        })
    };
    let sh = |script: &str| {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script]);
        cmd
    };
    // Eight processes of the command's: the shell and seven sleeps; a ninth fails.
    let eight = "i=0; while [ $i -lt 7 ]; do sleep 0.3 & i=$((i+1)); done; wait; echo started";
    let nine = "i=0; while [ $i -lt 8 ]; do sleep 0.3 & i=$((i+1)); done 2>/dev/null; wait; echo started";
    for round in 0..3 {
        let mut lease = pool.acquire().unwrap();
        let out = lease.run(&sh(eight)).unwrap();
        assert_eq!(out.stdout, b"started\n", "round {round}: eight processes: {out:?}");
        let out = lease.run(&sh(nine)).unwrap();
        assert_ne!(out.stdout, b"started\n", "round {round}: a ninth process: {out:?}");
        drop(lease);
        quiesce(&pool);
    }
    let s = pool.stats();
    assert_eq!(s.resets, 3, "{s:?}");
    if cgroup_counts {
        assert_eq!(s.resets_made_ahead, 2, "after the first reset, each switched to a spare: {s:?}");
    } else {
        assert_eq!(s.resets_made_ahead, 0, "no cgroup counts processes: no spare, which would take one: {s:?}");
    }
}
