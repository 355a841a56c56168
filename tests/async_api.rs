//! The tokio API (feature `tokio`): commands run and watched from tasks with no thread per
//! command, and cancellation at any await point leaves nothing behind.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sandpool::SandboxPool;
use sandpool::sandbox::{Command, Stdio};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// A pool whose acquires wait as long as it takes (these tests are about what a wait or a cut
/// leaves behind, on machines of any speed; the timeout has its own test).
fn pool(max_size: usize, min_idle: usize) -> SandboxPool {
    SandboxPool::builder(common::default_policy())
        .max_size(max_size)
        .min_idle(min_idle)
        .acquire_timeout(None)
        .build()
        .unwrap()
}

/// This process's thread count.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Waits until every released sandbox has been reset or destroyed.
async fn quiesce(pool: &SandboxPool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = pool.stats();
        if s.resetting == 0 && s.pool.leased == 0 && s.pool.being_made == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the pool did not settle: {s:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Host processes whose command line is `argv` exactly.
fn processes_running(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            (std::fs::read(format!("/proc/{pid}/cmdline")).ok()? == want).then_some(pid)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_async_gives_what_run_gives() {
    let pool = pool(2, 1);
    let mut lease = pool.acquire_async().await.unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "echo out; echo err >&2; cat; exit 3"]).stdin(Stdio::bytes(b"in\n".to_vec()));
    let out = lease.run_async(&cmd).await.unwrap();
    assert_eq!(out.stdout, b"out\nin\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.status.code(), Some(3));
    let sync = lease.run(&cmd).unwrap();
    assert_eq!((sync.stdout, sync.stderr, sync.status), (out.stdout, out.stderr, out.status));
    // Its output cap and timeout hold as for `run`.
    let capped = lease.run_async(Command::new("/bin/sh").args(["-c", "yes"]).output_limit(1000)).await.unwrap();
    assert!(capped.stdout_truncated && capped.stdout.len() == 1000, "{}", capped.stdout.len());
    let slow = lease.run_async(Command::new("sleep").arg("10").timeout(Duration::from_millis(100))).await.unwrap();
    assert!(slow.timed_out);
    assert!(lease.is_broken(), "a timed-out command marks the lease, as run does");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_child_streams_both_ways_and_runs_beside_others() {
    let pool = pool(1, 1);
    let lease = pool.acquire_async().await.unwrap();
    let mut upper = lease
        .start_async(
            Command::new("/bin/sh")
                .args(["-c", "while read x; do echo \"got $x\"; done"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped()),
        )
        .await
        .unwrap();
    let mut other = lease.start_async(Command::new("/bin/sh").args(["-c", "exit 7"])).await.unwrap();
    let mut stdin = upper.stdin.take().unwrap();
    let mut lines = BufReader::new(upper.stdout.take().unwrap()).lines();
    for word in ["a", "b", "c"] {
        stdin.write_all(format!("{word}\n").as_bytes()).await.unwrap();
        assert_eq!(lines.next_line().await.unwrap().unwrap(), format!("got {word}"));
    }
    drop(stdin);
    assert_eq!(lines.next_line().await.unwrap(), None);
    assert!(upper.wait().await.unwrap().success());
    assert_eq!(other.wait().await.unwrap().code(), Some(7));
    assert!(upper.id().is_some_and(|pid| pid > 1), "its pid is known once its start was heard of");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_child_on_a_terminal() {
    let pool = pool(1, 1);
    let lease = pool.acquire_async().await.unwrap();
    let mut child = lease.start_async(Command::new("/bin/sh").pty(24, 80)).await.unwrap();
    let mut tty = child.pty.take().unwrap();
    tty.write_all(b"stty size; exit 3\n").await.unwrap();
    let mut screen = Vec::new();
    tty.read_to_end(&mut screen).await.unwrap();
    assert!(String::from_utf8_lossy(&screen).contains("24 80"), "{}", String::from_utf8_lossy(&screen));
    assert_eq!(child.wait().await.unwrap().code(), Some(3));
    // A program that does not exist says so, terminal or not.
    let missing = lease.start_async(Command::new("/no/such/program").pty(24, 80)).await;
    assert!(matches!(missing, Err(sandpool::SandboxError::ProgramNotFound { .. })), "{missing:?}");
}

/// 1,000 commands in flight at once from a 2-worker runtime through a pool of 64: all
/// correct, and the process's thread count stays flat (a thread per command would add 1,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_runs_hold_no_thread_each() {
    let pool = Arc::new(pool(64, 64));
    assert!(tokio::task::block_in_place(|| pool.warm_up(Duration::from_secs(120))), "64 sandboxes ready");
    let baseline = threads();
    let peak = Arc::new(AtomicUsize::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(threads(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let baseline = baseline + 1; // the sampler
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                let mut lease = pool.acquire_async().await.unwrap();
                let out = lease.run_async(Command::new("/bin/sh").args(["-c", &format!("sleep 0.2; echo {i}")])).await;
                out.unwrap().stdout
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), format!("{i}\n").as_bytes());
    }
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    eprintln!("threads: {baseline} before, {peak} at most while 1,000 commands ran");
    // Flat: the 64 sandboxes were ready, so nothing needed tokio's blocking pool; allow a few
    // threads for anything the runtime or the pool starts on its own.
    assert!(peak <= baseline + 4, "{peak} threads at the peak against {baseline} before");
    quiesce(&pool).await;
    let s = pool.stats();
    assert_eq!((s.pool.live, s.pool.idle, s.pool.leased, s.pool.waiting), (64, 64, 0, 0), "{s:?}");
}

/// A small deterministic generator for the storm (no dependency, reproducible by seed).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The command the storm's runs are cut in: its argv names it among the host's processes.
const MARK: [&str; 2] = ["sleep", "7.77"];

/// Thousands of acquires, runs, reads and waits cut at random points by timeouts while the
/// pool is under load; then, at quiescence, the books balance, no cut command is left running
/// on the host, and every sandbox serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_storm_leaves_nothing_behind() {
    assert!(processes_running(&MARK).is_empty(), "a marked command runs before the test");
    let max = 6;
    let pool = Arc::new(pool(max, max));
    assert!(tokio::task::block_in_place(|| pool.warm_up(Duration::from_secs(60))));
    let seed = std::env::var("SANDPOOL_STORM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_u64);
    eprintln!("storm seed {seed} (SANDPOOL_STORM_SEED to replay)");
    // Cuts fall anywhere up to 30 times what one lease of `true` takes here alone (16 tasks
    // share 6 sandboxes, and some hold one until they are cut), so that on a fast machine or
    // a slow one (an emulated VM) much work is cut and much finishes.
    let mut lease = pool.acquire_async().await.unwrap();
    let one_lease = {
        let started = Instant::now();
        for _ in 0..10 {
            lease.run_async(&Command::new("/bin/true")).await.unwrap();
        }
        started.elapsed() / 10
    };
    drop(lease);
    let span_us = (one_lease.as_micros() as u64 * 30).max(5000);
    eprintln!("one lease of `true` takes {one_lease:?}: cuts within {span_us} µs");
    let completed = Arc::new(AtomicUsize::new(0));
    let cut = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..16u64)
        .map(|t| {
            let (pool, completed, cut) = (Arc::clone(&pool), Arc::clone(&completed), Arc::clone(&cut));
            tokio::spawn(async move {
                let mut rng = Rng(seed.wrapping_mul(t + 1) | 1);
                for _ in 0..150 {
                    let limit = Duration::from_micros(rng.below(span_us));
                    let kind = rng.below(5);
                    let finished = tokio::time::timeout(limit, async {
                        let mut lease = pool.acquire_async().await.unwrap();
                        match kind {
                            0 => {}
                            1 => drop(lease.run_async(Command::new(MARK[0]).arg(MARK[1])).await),
                            2 => {
                                let mut child = lease
                                    .start_async(
                                        Command::new("/bin/sh")
                                            .args(["-c", "echo ready; exec sleep 7.77"])
                                            .stdout(Stdio::piped()),
                                    )
                                    .await
                                    .unwrap();
                                let mut first = [0u8; 6];
                                child.stdout.as_mut().unwrap().read_exact(&mut first).await.unwrap();
                                let _ = child.wait().await;
                            }
                            3 => {
                                let out = lease.run_async(&Command::new("/bin/true")).await.unwrap();
                                assert!(out.status.success());
                            }
                            _ => {
                                let mut child = lease.start_async(Command::new(MARK[0]).arg(MARK[1])).await.unwrap();
                                let _ = tokio::time::timeout(Duration::from_millis(1), child.wait()).await;
                                child.kill().await.unwrap();
                                assert!(!child.wait().await.unwrap().success());
                            }
                        }
                    })
                    .await;
                    match finished {
                        Ok(()) => completed.fetch_add(1, Ordering::Relaxed),
                        Err(_) => cut.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let (completed, cut) = (completed.load(Ordering::Relaxed), cut.load(Ordering::Relaxed));
    quiesce(&pool).await;
    let s = pool.stats();
    eprintln!("{completed} completed, {cut} cut; {s:?}");
    assert!(cut > 100 && completed > 100, "the storm must both cut and finish work: {completed} done, {cut} cut");
    assert!(s.runs_cancelled > 0, "some cut runs killed their command: {s:?}");
    assert_eq!((s.pool.leased, s.pool.waiting, s.resetting), (0, 0, 0), "{s:?}");
    assert_eq!(s.pool.live, s.pool.idle, "{s:?}");
    assert_eq!(s.pool.live as u64, s.pool.created - s.pool.destroyed, "{s:?}");
    // No cut command runs on: killed when its watcher went away, or with its session.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_running(&MARK).is_empty() {
        assert!(Instant::now() < deadline, "cut commands still run: {:?}", processes_running(&MARK));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Every sandbox serves again, all at once.
    let mut leases = Vec::new();
    for _ in 0..max {
        leases.push(tokio::time::timeout(Duration::from_secs(30), pool.acquire_async()).await.unwrap().unwrap());
    }
    for lease in &mut leases {
        assert!(lease.run_async(&Command::new("/bin/true")).await.unwrap().status.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_and_blocking_acquires_share_one_fifo_and_the_timeout() {
    let pool = Arc::new(
        SandboxPool::builder(common::default_policy())
            .max_size(1)
            .min_idle(1)
            .acquire_timeout(Some(Duration::from_millis(200)))
            .build()
            .unwrap(),
    );
    let held = pool.acquire_async().await.unwrap();
    // An async waiter times out as the blocking one does.
    let started = Instant::now();
    let err = pool.acquire_async().await.unwrap_err();
    assert!(matches!(err, sandpool::PoolError::Exhausted { .. }), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(pool.stats().pool.wait_timeouts, 1);
    // A blocking waiter queued first is served first.
    let blocking = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || pool.acquire_within_default_for_test())
    };
    while pool.stats().pool.waiting == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let later = tokio::spawn({
        let pool = Arc::clone(&pool);
        async move { pool.acquire_async().await.map(drop) }
    });
    drop(held);
    assert!(blocking.join().unwrap(), "the first in line (blocking) got the sandbox");
    assert!(later.await.unwrap().is_err(), "the async one, behind it, timed out");
}

trait AcquireForTest {
    fn acquire_within_default_for_test(&self) -> bool;
}
impl AcquireForTest for SandboxPool {
    /// Acquires (blocking), holds the sandbox past the other waiter's timeout, and says
    /// whether it got one.
    fn acquire_within_default_for_test(&self) -> bool {
        match self.acquire() {
            Ok(lease) => {
                std::thread::sleep(Duration::from_millis(400));
                drop(lease);
                true
            }
            Err(_) => false,
        }
    }
}

/// A `start_async` cut while the command's terminal is on its way back (the command already
/// started), and a `run_async` cut while its command runs: each command is killed at once,
/// the lease still held (so not by a reset), and the lease serves on. On one thread, so that
/// nothing reads the reactor between the start's first poll and its cut.
#[tokio::test(flavor = "current_thread")]
async fn a_cut_start_or_run_kills_its_command_while_the_lease_is_held() {
    let argv = ["sleep", "8.88"];
    let pool = pool(1, 1);
    let mut lease = pool.acquire_async().await.unwrap();
    let gone = || async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !processes_running(&argv).is_empty() {
            assert!(Instant::now() < deadline, "the cut command still runs");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    // Positive control: the command does run when nothing cuts it.
    let child = lease.start_async(Command::new(argv[0]).arg(argv[1]).pty(24, 80)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_running(&argv).is_empty() {
        assert!(Instant::now() < deadline, "the command never showed on the host");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(child);
    gone().await;
    let before = pool.stats().runs_cancelled;
    let mut on_terminal = Command::new(argv[0]);
    on_terminal.arg(argv[1]).pty(24, 80);
    let mut piped = Command::new(argv[0]);
    piped.arg(argv[1]);
    // Cut on its first await: the request is sent, the terminal maybe not back yet (the
    // spawner may be quicker: then the child comes back whole, and its drop kills it).
    let mut cuts = 0;
    for _ in 0..50 {
        let first = tokio::time::timeout(Duration::ZERO, lease.start_async(&on_terminal)).await;
        if first.is_err() {
            cuts += 1;
        }
        drop(first);
        gone().await;
    }
    assert!(cuts > 0, "no start was cut while its terminal was on its way");
    eprintln!("{cuts} of 50 starts cut while their terminal was on its way");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), lease.run_async(&piped)).await.is_err(),
        "the run was cut"
    );
    gone().await;
    assert!(pool.stats().runs_cancelled >= before + 51, "{:?}", pool.stats());
    assert!(lease.run_async(&Command::new("/bin/true")).await.unwrap().status.success());
}
