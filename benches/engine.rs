//! Criterion bench: acquire+release round trips of the pool engine against the three
//! baselines (`mutex-vecdeque`, `parking-lot`, `array-queue`) at 1, 2, 4, 8 and 16 threads.
//! Throughput is reported as elements (round trips) per second.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sandpool::bench::{BASELINES, ENGINE, run_iters, subject_for};
use std::time::Duration;

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

criterion_group!(benches, engine_vs_baselines);
criterion_main!(benches);
