//! [`measure`] (time-boxed, with latencies) and [`run_engine_modes`].

use super::baselines::{BASELINES, ENGINE, subject_for};
use super::recorder::Recorder;
use super::report::ModeReport;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Progress of a multi-mode run.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Progress<'a> {
    /// A measurement starts.
    Start {
        /// Mode name.
        mode: &'a str,
        /// Thread count.
        threads: usize,
    },
    /// A measurement finished.
    Done,
}

/// What one worker (a thread, or a task of the async mode) measured: its latencies, its
/// operations, and when it started and stopped working.
pub(crate) struct Worker {
    pub(crate) rec: Recorder,
    pub(crate) ops: u64,
    pub(crate) errors: u64,
    pub(crate) started: Instant,
    pub(crate) ended: Instant,
}

/// The workers' results together. The measured time runs from the first worker's start to
/// the last one's end, as the workers saw them: the coordinating thread may be scheduled late
/// on a machine its workers keep busy (with hundreds of them, by seconds), so its own clock
/// would miss operations made before it read it.
pub(crate) struct Totals {
    pub(crate) rec: Recorder,
    pub(crate) ops: u64,
    pub(crate) errors: u64,
    pub(crate) elapsed: Duration,
}

impl Totals {
    pub(crate) fn of(workers: &[Worker]) -> Totals {
        let mut rec = Recorder::new();
        let (mut ops, mut errors) = (0, 0);
        for w in workers {
            rec.merge(&w.rec);
            ops += w.ops;
            errors += w.errors;
        }
        let first = workers.iter().map(|w| w.started).min();
        let last = workers.iter().map(|w| w.ended).max();
        let elapsed = match (first, last) {
            (Some(first), Some(last)) => last.duration_since(first),
            _ => Duration::ZERO,
        };
        Totals { rec, ops, errors, elapsed: elapsed.max(Duration::from_micros(1)) }
    }

    /// The row of mode `name` at `threads`, with what the machine did meanwhile: the most
    /// threads the process had, its own CPU time (µs) and the processes made.
    pub(crate) fn report(
        self,
        name: &str,
        threads: usize,
        peak_threads: usize,
        host_cpu_us: u64,
        forks: u64,
    ) -> ModeReport {
        let per_op = |x: u64| x as f64 / self.ops.max(1) as f64;
        ModeReport {
            name: name.to_string(),
            threads,
            ops: self.ops,
            ops_per_sec: self.ops as f64 / self.elapsed.as_secs_f64(),
            p50_us: self.rec.quantile_us(0.50),
            p90_us: self.rec.quantile_us(0.90),
            p99_us: self.rec.quantile_us(0.99),
            p999_us: self.rec.quantile_us(0.999),
            max_us: self.rec.max_us(),
            errors: self.errors,
            peak_threads,
            host_cpu_us_per_op: per_op(host_cpu_us),
            processes_per_op: per_op(forks),
            workload: None,
            pool: None,
            idle_pss_kib: None,
        }
    }
}

/// Runs `op` on `threads` threads for `duration` and reports throughput and latency.
///
/// Fast operations are timed on a sample (every 32nd, once the first 256 show a mean
/// under 5 µs) so that reading the clock does not dominate what is measured; throughput
/// always counts every operation. `Err` results count as errors, not as ops.
pub(crate) fn measure<E>(
    name: &str,
    threads: usize,
    duration: Duration,
    op: impl Fn() -> Result<(), E> + Sync,
) -> ModeReport {
    let threads = threads.max(1);
    settle();
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(threads + 1);
    let (results, (peak_threads, host_cpu_us, forks)) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut rec = Recorder::new();
                    let (mut ops, mut errors, mut n) = (0u64, 0u64, 0u64);
                    let mut every: u64 = 1;
                    let mut calib = Duration::ZERO;
                    barrier.wait();
                    let started = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        let ok = if n % every == 0 {
                            let t = Instant::now();
                            let ok = op().is_ok();
                            let d = t.elapsed();
                            rec.record(d);
                            if n < 256 {
                                calib += d;
                                if n == 255 && calib < Duration::from_micros(5 * 256) {
                                    every = 32;
                                }
                            }
                            ok
                        } else {
                            op().is_ok()
                        };
                        n += 1;
                        if ok { ops += 1 } else { errors += 1 }
                    }
                    Worker { rec, ops, errors, started, ended: Instant::now() }
                })
            })
            .collect();
        // Read while every worker waits at the barrier: nothing of the measurement yet.
        let cpu_before = process_cpu_us();
        let forks_before = processes_made();
        barrier.wait();
        let peak = sleep_counting_threads(duration);
        stop.store(true, Ordering::Relaxed);
        let results: Vec<Worker> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (results, (peak, process_cpu_us() - cpu_before, processes_made() - forks_before))
    });
    Totals::of(&results).report(name, threads, peak_threads, host_cpu_us, forks)
}

/// CPU time this process has used (all its threads, live and ended: `utime + stime` of
/// `/proc/self/stat`, in clock ticks of 10 ms), in microseconds; 0 if unreadable.
pub(crate) fn process_cpu_us() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0 };
    let Some((_, fields)) = stat.rsplit_once(')') else { return 0 };
    // After the command name: state is field 3; utime and stime are fields 14 and 15.
    let mut f = fields.split_whitespace().skip(11);
    let ticks: u64 =
        f.next().and_then(|u| u.parse().ok()).unwrap_or(0) + f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    ticks * 10_000
}

/// Waits until the machine is quiet again (at least 90% of its CPU time idle over 100 ms; at
/// most 10 s) before a measurement: what the previous mode left the kernel to finish (network
/// namespaces and cgroups of torn-down sandboxes are freed by kernel workers, after the fact)
/// must not be charged to the next mode. Returns how long it waited.
pub(crate) fn settle() -> Duration {
    /// `(idle, total)` jiffies of all CPUs, from `/proc/stat`.
    fn cpu_times() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().next()?.strip_prefix("cpu ")?;
        let fields: Vec<u64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest time is counted in user).
        let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
        Some((idle, fields.iter().take(8).sum()))
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let Some((idle0, total0)) = cpu_times() else { break };
        std::thread::sleep(Duration::from_millis(100));
        let Some((idle1, total1)) = cpu_times() else { break };
        let total = total1.saturating_sub(total0);
        if total > 0 && (idle1.saturating_sub(idle0)) as f64 / total as f64 >= 0.9 {
            break;
        }
    }
    start.elapsed()
}

/// Processes (and threads) the whole machine has made since it booted (`processes` of
/// `/proc/stat`): over a measurement, a check that each operation really started what it
/// should (at least one process per command run).
pub(crate) fn processes_made() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("processes ").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(0)
}

/// This process's thread count (`Threads:` of `/proc/self/status`); 0 if unreadable.
pub(crate) fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:").and_then(|n| n.trim().parse().ok())))
        .unwrap_or(0)
}

/// Sleeps for `duration`, reading the process's thread count every 10 ms; returns the most
/// seen.
pub(crate) fn sleep_counting_threads(duration: Duration) -> usize {
    let until = Instant::now() + duration;
    let mut peak = thread_count();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return peak;
        }
        std::thread::sleep(left.min(Duration::from_millis(10)));
        peak = peak.max(thread_count());
    }
}

/// Measures `engine` and the three baselines at each thread count (a fresh pool of
/// `pool_size` items per measurement), in the order engine, baselines for each count.
pub(crate) fn run_engine_modes(
    thread_counts: &[usize],
    duration: Duration,
    pool_size: usize,
    progress: &dyn Fn(Progress<'_>),
) -> Vec<ModeReport> {
    let modes: Vec<&str> = std::iter::once(ENGINE).chain(BASELINES).collect();
    let mut rows = Vec::with_capacity(thread_counts.len() * modes.len());
    for &threads in thread_counts {
        for mode in &modes {
            progress(Progress::Start { mode, threads });
            let subject = subject_for(mode, pool_size).expect("known mode");
            let row = measure(mode, threads, duration, || subject.round_trip());
            progress(Progress::Done);
            rows.push(row);
        }
    }
    rows
}
