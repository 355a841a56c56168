//! The pool under load and faults: inits killed from outside, commands that time out or flood
//! their output. Alone in its file: it counts this process's children and descriptors.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sandpool::SandboxPool;
use sandpool::pool::PoolError;
use sandpool::sandbox::{Command, KillReason, Policy, SandboxError};

/// Pids of this process's sandbox inits (children named `sandpool-zygote`).
fn zygotes() -> Vec<i32> {
    let me = std::process::id() as i32;
    common::processes()
        .into_iter()
        .filter(|(_, ppid, comm)| comm == "sandpool-zygote" && *ppid == me)
        .map(|(pid, _, _)| pid)
        .collect()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn the_pool_keeps_serving_through_kills_timeouts_and_floods() {
    // Warm the process-wide handles so the descriptor count below compares like with like.
    drop(sandpool::sandbox::Sandbox::spawn(&Policy::default()).unwrap());
    let fds_before = open_fds();
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();

    let pool = Arc::new(
        SandboxPool::builder(Policy::default())
            .max_size(4)
            .min_idle(3)
            .sweep_interval(Duration::from_millis(50))
            .build()
            .unwrap(),
    );
    assert!(pool.warm_up(Duration::from_secs(30)));
    // The probe of live inits works (a sandbox still being made counts as live before its
    // init has named itself: on a slow host, wait for it).
    let deadline = Instant::now() + Duration::from_secs(30);
    while zygotes().len() != pool.stats().pool.live && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(zygotes().len(), pool.stats().pool.live, "the probe of live inits works");

    let ok = Arc::new(AtomicU64::new(0));
    let dead = Arc::new(AtomicU64::new(0));
    let create_failed = Arc::new(AtomicU64::new(0));

    // One init killed per KILL_EVERY attempts, paced by the workers' progress, not by time:
    // on a slow (emulated) host a clock-paced killer would kill most sandboxes before they
    // serve, and what this test asserts would depend on the host's speed.
    const KILL_EVERY: u64 = 5;
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU64::new(0));
    let killer = {
        let (stop, kills) = (stop.clone(), kills.clone());
        let (ok, dead, create_failed) = (ok.clone(), dead.clone(), create_failed.clone());
        std::thread::spawn(move || {
            let attempts =
                || ok.load(Ordering::Relaxed) + dead.load(Ordering::Relaxed) + create_failed.load(Ordering::Relaxed);
            let mut n = 0usize;
            let mut next_kill = 0;
            while !stop.load(Ordering::Relaxed) {
                let inits = zygotes();
                if attempts() >= next_kill && !inits.is_empty() {
                    n = n.wrapping_mul(31).wrapping_add(7);
                    let victim = inits[n % inits.len()];
                    if std::process::Command::new("kill").args(["-9", &victim.to_string()]).status().unwrap().success()
                    {
                        kills.fetch_add(1, Ordering::Relaxed);
                        next_kill = attempts() + KILL_EVERY;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let workers: Vec<_> = (0..3)
        .map(|t| {
            let (pool, ok, dead, create_failed) = (pool.clone(), ok.clone(), dead.clone(), create_failed.clone());
            std::thread::spawn(move || {
                for i in 0..150 {
                    let mut lease = match pool.acquire() {
                        Ok(l) => l,
                        // A sandbox being made for this acquire was killed by the fault
                        // injector: a typed error; the next acquire tries again.
                        Err(PoolError::Create(_)) => {
                            create_failed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Err(e) => panic!("the pool stopped serving: {e}"),
                    };
                    let (cmd, kind) = match i % 10 {
                        3 => (Command::new("sleep").arg("10").timeout(Duration::from_millis(50)).clone(), "timeout"),
                        7 => (Command::new("yes").output_limit(64 * 1024).clone(), "flood"),
                        _ => (Command::new("echo").arg(format!("{t}-{i}")).clone(), "echo"),
                    };
                    match lease.run(&cmd) {
                        Ok(out) => {
                            match kind {
                                "timeout" => assert!(out.timed_out),
                                "flood" => {
                                    assert!(out.stdout_truncated);
                                    assert_eq!(out.killed_by_sandbox, Some(KillReason::OutputLimit));
                                }
                                _ => assert_eq!(out.stdout, format!("{t}-{i}\n").into_bytes()),
                            }
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        // Killed from outside while leased: a clear error, and the lease
                        // discards the sandbox.
                        Err(SandboxError::Dead | SandboxError::Control { .. }) => {
                            assert!(lease.is_broken());
                            dead.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("unexpected error: {e:?}"),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    killer.join().unwrap();
    assert!(kills.load(Ordering::Relaxed) > 0, "the fault injection really killed inits");
    let (ok, dead, create_failed) =
        (ok.load(Ordering::Relaxed), dead.load(Ordering::Relaxed), create_failed.load(Ordering::Relaxed));
    eprintln!("{ok} ok, {dead} dead, {create_failed} failed creates, {} inits killed", kills.load(Ordering::Relaxed));
    assert_eq!(ok + dead + create_failed, 450, "every attempt accounted for");
    assert!(ok > dead + create_failed, "the pool kept serving: {ok} ok, {dead} dead, {create_failed} failed creates");

    // Let the resets finish, the sweeper notice the dead idle ones and refill.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        pool.sweep_once();
        let s = pool.stats();
        if s.resetting == 0 && s.pool.leased == 0 && s.pool.being_made == 0 && zygotes().len() == s.pool.live {
            break;
        }
        assert!(Instant::now() < deadline, "the pool did not settle: {s:?}, {} inits", zygotes().len());
        std::thread::sleep(Duration::from_millis(10));
    }
    let s = pool.stats();
    assert_eq!(s.pool.created - s.pool.destroyed, s.pool.live as u64, "{s:?}");
    assert!(s.pool.live >= 3, "refilled to min_idle after the kills: {s:?}");
    assert!(s.deaths_detected + s.reset_failures > 0, "deaths were noticed: {s:?}");
    assert!(s.broken_leases > 0, "timed-out sandboxes were replaced, not reused: {s:?}");

    drop(pool);
    assert!(zygotes().is_empty(), "dropping the pool leaves no process");
    assert_eq!(common::sandbox_cgroups_once_removed(), Vec::<std::path::PathBuf>::new(), "and no cgroup, v1 or v2");
    assert_eq!(open_fds(), fds_before, "and no descriptor");
    assert_eq!(std::fs::read_to_string("/proc/self/mountinfo").unwrap(), mounts_before, "and no mount on the host");
}
