//! `sandpool bench` (placeholder).
use std::process::ExitCode;

/// Options of `sandpool bench`.
#[derive(clap::Args)]
pub struct BenchArgs {}

/// Runs `sandpool bench`.
pub fn main(_args: BenchArgs) -> ExitCode {
    ExitCode::SUCCESS
}
