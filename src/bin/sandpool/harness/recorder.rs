//! [`Recorder`]: per-thread latency histogram.

use hdrhistogram::Histogram;
use std::time::Duration;

/// Latencies of one thread's operations, in nanoseconds (3 significant figures).
pub(crate) struct Recorder {
    hist: Histogram<u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder (1 ns to 1 hour).
    pub(crate) fn new() -> Self {
        Recorder { hist: Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds") }
    }

    /// Records one latency.
    #[inline]
    pub(crate) fn record(&mut self, d: Duration) {
        let ns = (d.as_nanos() as u64).max(1);
        self.hist.saturating_record(ns);
    }

    /// Adds another recorder's samples.
    pub(crate) fn merge(&mut self, other: &Recorder) {
        // Same bounds on both sides: cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    /// The latency at quantile `q` (0..=1), in microseconds.
    pub(crate) fn quantile_us(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// The largest latency, in microseconds.
    pub(crate) fn max_us(&self) -> f64 {
        self.hist.max() as f64 / 1000.0
    }
}
