//! The metrics (feature `metrics`): a test recorder sees every metric the README's table
//! documents, of the documented kind, labelled with the pool's name, with plausible values.
//! (One test: the recorder is global to this process.)

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};
use sandpool::SandboxPool;
use sandpool::sandbox::Command;

/// `(name, kind)` of each row of the README's metrics table.
fn documented() -> Vec<(String, MetricKind)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let rows: Vec<_> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `sandpool_"))
        .map(|row| {
            let mut cells = row.split('|').map(str::trim);
            let name = format!("sandpool_{}", cells.next().unwrap().trim_end_matches('`'));
            let kind = match cells.next().unwrap() {
                "histogram" => MetricKind::Histogram,
                "counter" => MetricKind::Counter,
                "gauge" => MetricKind::Gauge,
                other => panic!("unknown kind {other} for {name}"),
            };
            (name, kind)
        })
        .collect();
    assert!(rows.len() >= 20, "the README's metrics table was not found: {rows:?}");
    rows
}

fn label<'a>(key: &'a CompositeKey, name: &str) -> Option<&'a str> {
    key.key().labels().find(|l| l.key() == name).map(|l| l.value())
}

#[test]
fn every_documented_metric_is_recorded_with_a_plausible_value() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let pool = SandboxPool::builder(common::default_policy())
        .name("metrics-test")
        .max_size(2)
        .min_idle(1)
        .acquire_timeout(Some(Duration::from_millis(100)))
        .build()
        .unwrap();
    assert!(pool.warm_up(Duration::from_secs(30)));
    // A clean lease (no reset), a dirty one (a reset), a timed-out command (a broken lease).
    let mut lease = pool.acquire().unwrap();
    assert!(lease.run(&Command::new("/bin/true")).unwrap().status.success());
    drop(lease);
    let mut lease = pool.acquire().unwrap();
    lease.run(Command::new("/bin/sh").args(["-c", "echo x > /tmp/f"])).unwrap();
    drop(lease);
    let mut lease = pool.acquire().unwrap();
    assert!(lease.run(Command::new("sleep").arg("5").timeout(Duration::from_millis(50))).unwrap().timed_out);
    drop(lease);
    // Both sandboxes out: one acquire times out, one waits for a release.
    let (a, b) = (pool.acquire().unwrap(), pool.acquire().unwrap());
    assert!(pool.acquire().is_err());
    std::thread::scope(|s| {
        let waiter = s.spawn(|| pool.acquire().map(drop).is_ok());
        while pool.stats().pool.waiting == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(a);
        assert!(waiter.join().unwrap(), "the waiter got the released sandbox");
    });
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(30);
    while pool.stats().resetting > 0 || pool.stats().pool.leased > 0 {
        assert!(Instant::now() < deadline, "the pool did not settle");
        std::thread::sleep(Duration::from_millis(5));
    }
    pool.publish_metrics();
    let stats = pool.stats();

    let seen: HashMap<CompositeKey, DebugValue> =
        snapshotter.snapshot().into_vec().into_iter().map(|(key, _, _, value)| (key, value)).collect();
    for (name, kind) in documented() {
        let found: Vec<_> = seen.iter().filter(|(k, _)| k.key().name() == name && k.kind() == kind).collect();
        assert!(!found.is_empty(), "{name} ({kind:?}) was not recorded");
        for (key, value) in &found {
            assert_eq!(label(key, "pool"), Some("metrics-test"), "{name} is labelled with the pool's name");
            match value {
                DebugValue::Histogram(values) => {
                    assert!(!values.is_empty(), "{name}: no observation");
                    assert!(values.iter().all(|v| v.0.is_finite() && v.0 >= 0.0 && v.0 < 60.0), "{name}: {values:?}");
                }
                DebugValue::Gauge(v) => assert!(v.0 >= 0.0 && v.0 <= 2.0, "{name}: {v}"),
                DebugValue::Counter(_) => {}
            }
        }
    }
    // What this test did shows in the values.
    let counter = |name: &str, by: Option<(&str, &str)>| -> u64 {
        seen.iter()
            .filter(|(k, _)| k.key().name() == name && by.is_none_or(|(l, v)| label(k, l) == Some(v)))
            .map(|(_, v)| match v {
                DebugValue::Counter(n) => *n,
                other => panic!("{name} is not a counter: {other:?}"),
            })
            .sum()
    };
    assert_eq!(counter("sandpool_acquire_hits_total", None), stats.pool.hits);
    assert!(counter("sandpool_acquire_misses_total", None) >= 2, "the timeout and the wait missed");
    assert_eq!(counter("sandpool_acquire_timeouts_total", None), 1);
    assert!(counter("sandpool_resets_total", None) >= 1);
    assert!(counter("sandpool_resets_skipped_total", None) >= 1);
    assert_eq!(counter("sandpool_resets_in_place_total", None), stats.resets_in_place);
    assert_eq!(counter("sandpool_broken_leases_total", None), 1);
    assert_eq!(counter("sandpool_sandboxes_replaced_total", Some(("reason", "broken_lease"))), 1);
    assert_eq!(counter("sandpool_sandboxes_created_total", None), stats.pool.created);
    let histogram = |name: &str| -> Vec<f64> {
        seen.iter()
            .filter(|(k, _)| k.key().name() == name)
            .flat_map(|(_, v)| match v {
                DebugValue::Histogram(values) => values.iter().map(|v| v.0).collect::<Vec<_>>(),
                other => panic!("{name} is not a histogram: {other:?}"),
            })
            .collect()
    };
    let waits = histogram("sandpool_acquire_wait_seconds");
    assert_eq!(waits.iter().filter(|v| **v == 0.0).count() as u64, stats.pool.hits, "one 0 s per hit");
    assert!(waits.iter().any(|v| *v > 0.0), "the waiter's wait");
    assert_eq!(histogram("sandpool_command_duration_seconds").len(), 3, "three commands ran");
    assert_eq!(histogram("sandpool_create_duration_seconds").len() as u64, stats.pool.created);
    assert!(histogram("sandpool_create_duration_seconds").iter().all(|v| *v > 0.0));
}
