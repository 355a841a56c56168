//! Benchmark harness shared by `sandpool bench` and the criterion benches (placeholder).
