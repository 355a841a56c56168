//! The sandbox against its floor, side by side in one run:
//!
//! - `bare_vfork_exec`: `/bin/true` through `std::process::Command::output()` (posix_spawn:
//!   `clone(CLONE_VM | CLONE_VFORK)` + exec, stdout/stderr piped): no isolation, the floor;
//! - `run_in_live_sandbox`: `/bin/true` in a live sandbox (output captured the same way);
//! - `reset`: wiping a live sandbox's session (what the pool does after every lease);
//! - `warm_pool`: acquire + run + release through a `SandboxPool` (the reset happens on the
//!   sandbox's spawner while the pool's collector waits for it);
//! - `cold_spawn`: making a sandbox and destroying it, from this small host;
//! - `cold_spawn_1gib_host`: the same with 1 GiB resident in this process (the spawn must not
//!   copy the host: its cost should not grow with the host's size).
//!
//! Compare ratios within one run (`run / bare`, `cold_1gib / cold`): absolute times drift on
//! shared machines.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sandpool::SandboxPool;
use sandpool::sandbox::{Command, Policy, Sandbox};

fn bench(c: &mut Criterion) {
    let policy = Policy::default();
    let mut g = c.benchmark_group("sandbox");
    g.sample_size(200).measurement_time(Duration::from_secs(5));
    // The floor gets the same minimal environment as a sandboxed command.
    let env = Command::new("/bin/true").environment();
    g.bench_function("bare_vfork_exec", |b| {
        b.iter(|| black_box(std::process::Command::new("/bin/true").env_clear().envs(env.clone()).output().unwrap()))
    });
    let mut sb = Sandbox::spawn(&policy).unwrap();
    let cmd = Command::new("/bin/true");
    g.bench_function("run_in_live_sandbox", |b| b.iter(|| black_box(sb.run(&cmd).unwrap())));
    g.bench_function("reset", |b| b.iter(|| sb.reset().unwrap()));
    drop(sb);
    let pool = SandboxPool::builder(policy.clone()).max_size(4).min_idle(4).build().unwrap();
    pool.warm_up(Duration::from_secs(30));
    g.bench_function("warm_pool", |b| {
        b.iter(|| {
            let mut lease = pool.acquire().unwrap();
            black_box(lease.run(&cmd).unwrap())
        })
    });
    drop(pool);
    g.sample_size(100);
    g.bench_function("cold_spawn", |b| b.iter(|| drop(black_box(Sandbox::spawn(&policy).unwrap()))));
    // 1 GiB resident: allocated and touched, so every page is mapped.
    let ballast = vec![1u8; 1 << 30];
    black_box(&ballast);
    g.bench_function("cold_spawn_1gib_host", |b| b.iter(|| drop(black_box(Sandbox::spawn(&policy).unwrap()))));
    drop(ballast);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
