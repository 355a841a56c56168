//! Benchmark harness of `sandpool bench`; the criterion bench `benches/engine.rs` includes
//! [`baselines`] from here too.
//!
//! Every mode is measured the same way by [`runner::measure`]: `threads` threads run one
//! operation in a loop for a fixed time and the result is a [`ModeReport`] row (ops, ops/s
//! and latency percentiles from an hdrhistogram). Engine modes ([`run_engine_modes`]) time
//! one acquire+release round trip of the pool engine and of three baselines built in here:
//! `mutex-vecdeque` (a `std::sync::Mutex<VecDeque>`, the original design), `parking-lot`
//! (`parking_lot::Mutex<Vec>`) and `array-queue` (a bare `crossbeam` `ArrayQueue`).
//! Other modes (the sandbox's `warm`, `cold`, `bare`, `bwrap`, for each of the
//! [`workloads`]) plug in through [`runner::measure`].

mod async_mode;
mod baselines;
mod recorder;
mod report;
mod runner;
mod sandbox;
pub(crate) mod workloads;

pub(crate) use async_mode::ASYNC;
pub(crate) use baselines::BASELINES;
pub(crate) use report::{ModeReport, print_table, write_json};
pub(crate) use runner::{Progress, run_engine_modes};
pub(crate) use sandbox::{BARE, BWRAP, COLD, RUNTIME, RUNTIME_LEASE, RUNTIME_SHARED, START, SandboxBench, WARM};
