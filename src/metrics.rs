//! Pool metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`):
//! whatever recorder the host installs (Prometheus, StatsD, OpenTelemetry...) sees each
//! [`SandboxPool`](crate::SandboxPool)'s waits, runs, resets and makes, and its state.
//!
//! Every metric carries the label `pool`, the name given to
//! [`SandboxPoolBuilder::name`](crate::SandboxPoolBuilder::name) (`"default"` otherwise). Names
//! follow Prometheus' conventions: base units (seconds), `_total` for counters. The README's
//! "Metrics" table lists them all; a test checks that table against what is recorded.
//!
//! How they are fed, so that the acquire fast path stays free of clock reads and shared
//! writes:
//! - **histograms** are recorded as things happen: an acquire that missed (waited for a release
//!   or made a sandbox), each command's run (`run`, `run_async`), each reset (timed from the
//!   releasing thread's request to the collector's answer), each sandbox made;
//! - **hits** (acquires served at once from idle, in nanoseconds) are added to the
//!   acquire-wait histogram as 0 s, in bulk, from the hit counter;
//! - **counters and gauges** are published from [`SandboxPool::stats`](crate::SandboxPool::stats)
//!   by the pool's collector thread every [`PUBLISH_INTERVAL`], and on
//!   [`SandboxPool::publish_metrics`](crate::SandboxPool::publish_metrics).
//!
//! Histogram buckets are the exporter's to set; [`SECONDS_BUCKETS`] suits all four (explicit
//! buckets, not summaries: summaries cannot be aggregated across the nodes of a service). See
//! `examples/prometheus.rs`.

use std::time::Duration;

use crate::SandboxPoolStats;

/// How often the collector thread publishes counters and gauges.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(250);

/// Histogram buckets (seconds) covering a warm acquire (0), a wait, a command, a reset and a
/// sandbox's making: 50 µs to 30 s.
pub const SECONDS_BUCKETS: [f64; 20] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.125, 0.25, 0.5, 1.0, 2.0,
    4.0, 8.0, 15.0, 30.0,
];

/// Histogram: how long an acquire waited (0 for a hit).
pub const ACQUIRE_WAIT: &str = "sandpool_acquire_wait_seconds";
/// Histogram: a command's run, start to end, as the host saw it.
pub const COMMAND_DURATION: &str = "sandpool_command_duration_seconds";
/// Histogram: a reset, from the release that asked for it to the answer.
pub const RESET_DURATION: &str = "sandpool_reset_duration_seconds";
/// Histogram: making a sandbox.
pub const CREATE_DURATION: &str = "sandpool_create_duration_seconds";

/// Describes every metric to the installed recorder (units and help texts). Pools do it when
/// built; call it again if the recorder is installed after the pool.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(ACQUIRE_WAIT, Unit::Seconds, "How long an acquire waited for a sandbox (0 when one was idle).");
    describe_histogram!(COMMAND_DURATION, Unit::Seconds, "A command's run, from its start to its end.");
    describe_histogram!(RESET_DURATION, Unit::Seconds, "A sandbox's reset between two leases.");
    describe_histogram!(CREATE_DURATION, Unit::Seconds, "Making a sandbox.");
    for (name, help) in COUNTERS {
        describe_counter!(*name, Unit::Count, *help);
    }
    for (name, help) in GAUGES {
        describe_gauge!(*name, Unit::Count, *help);
    }
}

/// Counters: name and help.
const COUNTERS: &[(&str, &str)] = &[
    ("sandpool_acquire_hits_total", "Acquires served at once from an idle sandbox."),
    ("sandpool_acquire_misses_total", "Acquires that found no idle sandbox (then waited or made one)."),
    ("sandpool_acquire_timeouts_total", "Acquires that waited past the acquire timeout."),
    ("sandpool_sandboxes_created_total", "Sandboxes made."),
    ("sandpool_create_failures_total", "Sandboxes that could not be made."),
    ("sandpool_resets_total", "Resets between leases."),
    ("sandpool_resets_skipped_total", "Leases that left nothing behind: no reset needed."),
    ("sandpool_resets_in_place_total", "Resets that kept the session and gave it a fresh /tmp and /dev/shm."),
    ("sandpool_sandboxes_replaced_total", "Sandboxes destroyed while in service, by reason."),
    ("sandpool_deaths_total", "Sandboxes found dead (idle, or during a lease)."),
    ("sandpool_broken_leases_total", "Leases that ended with their sandbox broken (a timeout, a fatal error)."),
    ("sandpool_evictions_total", "Idle sandboxes destroyed by the pool, by reason."),
    ("sandpool_cancellations_total", "Async operations given up by their caller, by operation."),
];

/// Gauges: name and help.
const GAUGES: &[(&str, &str)] = &[
    ("sandpool_sandboxes_live", "Sandboxes alive: idle, leased, being made or reset."),
    ("sandpool_sandboxes_idle", "Sandboxes ready to hand out."),
    ("sandpool_sandboxes_leased", "Sandboxes out on a lease (or being reset)."),
    ("sandpool_sandboxes_resetting", "Sandboxes being reset."),
    ("sandpool_sandboxes_being_made", "Sandboxes being made."),
    ("sandpool_acquires_waiting", "Callers waiting for a sandbox."),
];

/// Records one observation of a histogram.
pub(crate) fn observe(pool: &str, name: &'static str, took: Duration) {
    metrics::histogram!(name, "pool" => pool.to_string()).record(took.as_secs_f64());
}

/// Publishes a pool's counters and gauges; `hits_published` is how many hits the acquire-wait
/// histogram holds already (updated).
pub(crate) fn publish(pool: &str, s: &SandboxPoolStats, hits_published: &mut u64) {
    let label = pool.to_string();
    let counter = |name: &'static str, value: u64| metrics::counter!(name, "pool" => label.clone()).absolute(value);
    let by = |name: &'static str, key: &'static str, value: &'static str, n: u64| {
        metrics::counter!(name, "pool" => label.clone(), key => value).absolute(n)
    };
    let p = &s.pool;
    counter("sandpool_acquire_hits_total", p.hits);
    counter("sandpool_acquire_misses_total", p.misses);
    counter("sandpool_acquire_timeouts_total", p.wait_timeouts);
    counter("sandpool_sandboxes_created_total", p.created);
    counter("sandpool_create_failures_total", p.create_failures);
    counter("sandpool_resets_total", s.resets);
    counter("sandpool_resets_skipped_total", s.resets_skipped);
    counter("sandpool_resets_in_place_total", s.resets_in_place);
    counter("sandpool_deaths_total", s.deaths_detected);
    counter("sandpool_broken_leases_total", s.broken_leases);
    let replaced = "sandpool_sandboxes_replaced_total";
    by(replaced, "reason", "reset_failed", s.reset_failures);
    by(replaced, "reason", "broken_lease", s.broken_leases);
    by(replaced, "reason", "died", p.evictions.check_failed);
    by(replaced, "reason", "max_uses", p.evictions.max_uses);
    by(replaced, "reason", "lifetime", p.evictions.lifetime);
    let evictions = "sandpool_evictions_total";
    by(evictions, "reason", "idle_age", p.evictions.idle_age);
    by(evictions, "reason", "lifetime", p.evictions.lifetime);
    by(evictions, "reason", "max_uses", p.evictions.max_uses);
    by(evictions, "reason", "check_failed", p.evictions.check_failed);
    by(evictions, "reason", "surplus", p.evictions.surplus);
    let cancellations = "sandpool_cancellations_total";
    by(cancellations, "operation", "acquire", p.acquires_cancelled);
    by(cancellations, "operation", "run", s.runs_cancelled);
    let gauge = |name: &'static str, value: usize| metrics::gauge!(name, "pool" => label.clone()).set(value as f64);
    gauge("sandpool_sandboxes_live", p.live);
    gauge("sandpool_sandboxes_idle", p.idle);
    gauge("sandpool_sandboxes_leased", p.leased);
    gauge("sandpool_sandboxes_resetting", s.resetting);
    gauge("sandpool_sandboxes_being_made", p.being_made);
    gauge("sandpool_acquires_waiting", p.waiting);
    let new_hits = p.hits.saturating_sub(*hits_published);
    if new_hits > 0 {
        metrics::histogram!(ACQUIRE_WAIT, "pool" => label.clone()).record_many(0.0, new_hits as usize);
        *hits_published = p.hits;
    }
}
