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
