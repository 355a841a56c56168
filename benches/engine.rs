//! Criterion bench: acquire+release round trips of the pool engine against the three
//! baselines (`mutex-vecdeque`, `parking-lot`, `array-queue`) at 1, 2, 4, 8 and 16 threads.
//! Throughput is reported as elements (round trips) per second.
//!
//! The pools under test are those of `sandpool bench --engine`: the command's harness file
//! is included here, since the harness is not part of the library.

#[path = "../src/bin/sandpool/harness/baselines.rs"]
mod baselines;

use baselines::{BASELINES, ENGINE, subject_for};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Barrier;
use std::time::{Duration, Instant};

const POOL_SIZE: usize = 64;

fn engine_vs_baselines(c: &mut Criterion) {
    let mut g = c.benchmark_group("round_trip");
    g.throughput(Throughput::Elements(1))
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    for threads in [1usize, 2, 4, 8, 16] {
        for mode in std::iter::once(ENGINE).chain(BASELINES) {
            let subject = subject_for(mode, POOL_SIZE).expect("known mode");
            g.bench_function(BenchmarkId::new(mode, threads), |b| {
                b.iter_custom(|iters| run_iters(threads, iters, || subject.round_trip()))
            });
        }
    }
    g.finish();
}

/// Runs `op` `iters` times in total, split over `threads` threads, and returns the wall
/// time from the common start to the last thread's end (for criterion's `iter_custom`).
fn run_iters<E>(threads: usize, iters: u64, op: impl Fn() -> Result<(), E> + Sync) -> Duration {
    let threads = threads.max(1) as u64;
    let barrier = Barrier::new(threads as usize + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (op, barrier) = (&op, &barrier);
                let n = iters / threads + u64::from(i < iters % threads);
                s.spawn(move || {
                    barrier.wait();
                    for _ in 0..n {
                        let _ = std::hint::black_box(op());
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            h.join().unwrap();
        }
        start.elapsed()
    })
}

criterion_group!(benches, engine_vs_baselines);
criterion_main!(benches);
