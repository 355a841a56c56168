//! [`measure_async`]: `in_flight` tasks on a 2-worker tokio runtime run one async operation in
//! a loop for a fixed time: the `async` mode, side by side with `warm`'s thread per command.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::recorder::Recorder;
use super::report::ModeReport;
use super::runner::{Totals, Worker, process_cpu_us, processes_made, settle, sleep_counting_threads};

/// The async mode's name.
pub(crate) const ASYNC: &str = "async";

/// Worker threads of the runtime the async mode runs on (as a small service would have).
pub(crate) const ASYNC_WORKERS: usize = 2;

/// Runs `op` in `in_flight` tasks at once on a fresh 2-worker runtime for `duration`;
/// `Err` results count as errors. Every operation is timed (an async operation here costs
/// hundreds of microseconds: the clock is noise).
pub(crate) fn measure_async<F, Fut, E>(name: &str, in_flight: usize, duration: Duration, op: F) -> ModeReport
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(ASYNC_WORKERS).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sandpool bench: no tokio runtime: {e}");
            return ModeReport::failed(name, in_flight);
        }
    };
    settle();
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    // Read before any task runs: nothing of the measurement yet.
    let cpu_before = process_cpu_us();
    let forks_before = processes_made();
    let tasks: Vec<_> = (0..in_flight.max(1))
        .map(|_| {
            let (op, stop) = (Arc::clone(&op), Arc::clone(&stop));
            runtime.spawn(async move {
                let mut rec = Recorder::new();
                let (mut ops, mut errors) = (0u64, 0u64);
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let ok = op().await.is_ok();
                    rec.record(t.elapsed());
                    if ok { ops += 1 } else { errors += 1 }
                }
                Worker { rec, ops, errors, started, ended: Instant::now() }
            })
        })
        .collect();
    let peak_threads = sleep_counting_threads(duration);
    stop.store(true, Ordering::Relaxed);
    let results: Vec<Worker> = runtime.block_on(async {
        let mut all = Vec::with_capacity(tasks.len());
        for task in tasks {
            all.extend(task.await.ok());
        }
        all
    });
    let host_cpu_us = process_cpu_us() - cpu_before;
    let forks = processes_made() - forks_before;
    Totals::of(&results).report(name, in_flight, peak_threads, host_cpu_us, forks)
}
