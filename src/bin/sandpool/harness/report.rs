//! [`ModeReport`] rows, the table printer and the JSON writer.

use serde::Serialize;
use std::io::{self, Write};

/// One measured mode at one thread count (one row of the table, one JSON object).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ModeReport {
    /// Mode name (`engine`, `array-queue`, `warm`, ...).
    pub(crate) name: String,
    /// Threads running the operation.
    pub(crate) threads: usize,
    /// Successful operations.
    pub(crate) ops: u64,
    /// Successful operations per second, all threads together.
    pub(crate) ops_per_sec: f64,
    /// Median latency, µs.
    pub(crate) p50_us: f64,
    /// 90th percentile latency, µs.
    pub(crate) p90_us: f64,
    /// 99th percentile latency, µs.
    pub(crate) p99_us: f64,
    /// 99.9th percentile latency, µs.
    pub(crate) p999_us: f64,
    /// Largest latency, µs.
    pub(crate) max_us: f64,
    /// Failed operations.
    pub(crate) errors: u64,
    /// The most threads the process had while it was measured.
    pub(crate) peak_threads: usize,
    /// CPU time the measuring process itself used per operation, µs (its threads only: not
    /// the commands, nor the sandboxes' own processes).
    pub(crate) host_cpu_us_per_op: f64,
    /// Processes and threads the machine made per operation while it was measured (from
    /// `/proc/stat`: anything else running counts too): each command run makes at least one.
    pub(crate) processes_per_op: f64,
    /// The workload measured (sandbox modes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) workload: Option<String>,
    /// What the warm pool did meanwhile (`warm` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pool: Option<PoolWork>,
    /// Memory of one idle sandbox of the mode's policy: the proportional set size of its
    /// processes (init, spawners, a runtime's template), KiB; measured for the warm modes of a
    /// workload a runtime serves, where this host lets the bench read them (root).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) idle_pss_kib: Option<u64>,
}

impl ModeReport {
    /// A row for a mode that could not be measured at all (every operation an error).
    pub(crate) fn failed(name: &str, threads: usize) -> ModeReport {
        ModeReport {
            name: name.to_string(),
            threads,
            ops: 0,
            ops_per_sec: 0.0,
            p50_us: 0.0,
            p90_us: 0.0,
            p99_us: 0.0,
            p999_us: 0.0,
            max_us: 0.0,
            errors: 1,
            peak_threads: 0,
            host_cpu_us_per_op: 0.0,
            processes_per_op: 0.0,
            workload: None,
            pool: None,
            idle_pss_kib: None,
        }
    }
}

/// What a warm pool did while a mode was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct PoolWork {
    /// Sessions reset for the next lease.
    pub(crate) resets: u64,
    /// Of those, the resets that switched to a session made ahead of need.
    pub(crate) resets_made_ahead: u64,
    /// Of those, the resets in place (fresh `/tmp` and `/dev/shm` in the same session).
    pub(crate) resets_in_place: u64,
    /// Leases that left nothing behind, handed on without a reset.
    pub(crate) resets_skipped: u64,
    /// Sandboxes made while it was measured (a replacement for one that could not be reset
    /// or died, or the pool growing past the sandboxes it started with).
    pub(crate) sandboxes_made: u64,
}

impl PoolWork {
    /// What a pool did between two of its snapshots.
    pub(crate) fn between(before: &sandpool::SandboxPoolStats, after: &sandpool::SandboxPoolStats) -> PoolWork {
        PoolWork {
            resets: after.resets - before.resets,
            resets_made_ahead: after.resets_made_ahead - before.resets_made_ahead,
            resets_in_place: after.resets_in_place - before.resets_in_place,
            resets_skipped: after.resets_skipped - before.resets_skipped,
            sandboxes_made: after.pool.created - before.pool.created,
        }
    }
}

/// `row`'s throughput over the best of `baselines` at the same thread count.
fn ratio_to_best(rows: &[ModeReport], row: &ModeReport, baselines: &[&str]) -> Option<f64> {
    let best = rows
        .iter()
        .filter(|r| r.threads == row.threads && baselines.contains(&r.name.as_str()))
        .map(|r| r.ops_per_sec)
        .fold(f64::NAN, f64::max);
    (best.is_finite() && best > 0.0).then(|| row.ops_per_sec / best)
}

fn human(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2}G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// Prints the table: ops, ops/s, p50/p90/p99/p999/max in µs, errors, and each row's ratio
/// to the best of `baselines` at its thread count.
pub(crate) fn print_table(out: &mut dyn Write, rows: &[ModeReport], baselines: &[&str]) -> io::Result<()> {
    writeln!(
        out,
        "{:<16} {:>7} {:>12} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>7} {:>10} {:>9}",
        "mode",
        "threads",
        "ops",
        "ops/s",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p999 µs",
        "max µs",
        "errors",
        "vs best bl",
        "peak thr"
    )?;
    let mut last_threads = None;
    for r in rows {
        if last_threads.is_some() && last_threads != Some(r.threads) {
            writeln!(out)?;
        }
        last_threads = Some(r.threads);
        let ratio = match ratio_to_best(rows, r, baselines) {
            Some(x) => format!("{x:.2}x"),
            None => "-".into(),
        };
        writeln!(
            out,
            "{:<16} {:>7} {:>12} {:>10} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>10.3} {:>7} {:>10} {:>9}",
            r.name,
            r.threads,
            r.ops,
            human(r.ops_per_sec),
            r.p50_us,
            r.p90_us,
            r.p99_us,
            r.p999_us,
            r.max_us,
            r.errors,
            ratio,
            r.peak_threads
        )?;
    }
    Ok(())
}

/// Writes `{"modes": [...], "skipped": [{"workload", "reason"}]}`.
pub(crate) fn write_json(out: &mut dyn Write, rows: &[ModeReport], skipped: &[(String, String)]) -> io::Result<()> {
    #[derive(Serialize)]
    struct Skipped<'a> {
        workload: &'a str,
        reason: &'a str,
    }
    #[derive(Serialize)]
    struct Doc<'a> {
        modes: &'a [ModeReport],
        skipped: Vec<Skipped<'a>>,
    }
    let skipped = skipped.iter().map(|(w, r)| Skipped { workload: w, reason: r }).collect();
    serde_json::to_writer_pretty(&mut *out, &Doc { modes: rows, skipped })?;
    writeln!(out)
}
