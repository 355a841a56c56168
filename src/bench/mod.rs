//! Benchmark harness shared by `sandpool bench` and the criterion benches.
//!
//! Every mode is measured the same way by [`measure`]: `threads` threads run one operation
//! in a loop for a fixed time and the result is a [`ModeReport`] row (ops, ops/s and
//! latency percentiles from an hdrhistogram). Engine modes ([`run_engine_modes`]) time one
//! acquire+release round trip of the pool engine and of three baselines built in here:
//! `mutex-vecdeque` (a `std::sync::Mutex<VecDeque>`, the original design), `parking-lot`
//! (`parking_lot::Mutex<Vec>`) and `array-queue` (a bare `crossbeam` `ArrayQueue`).
//! Other modes (the sandbox's `warm`, `cold`, `bare`) plug in through [`measure`].

mod baselines;
mod recorder;
mod report;
mod runner;
mod sandbox;

pub use baselines::{ArrayQueuePool, BenchPool, EnginePool, MutexVecDequePool, ParkingLotPool};
pub use recorder::Recorder;
pub use report::{ModeReport, print_table, ratio_to_best, write_json};
pub use runner::{BASELINES, ENGINE, Progress, measure, run_engine_modes, run_iters, subject_for};
pub use sandbox::{BARE, COLD, OpFailed, SandboxBench, WARM, p50_ratio};
