//! The `sandpool` command: `run`, `bench` and `doctor`.
#![deny(unsafe_code)]

mod bench;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// A warm pool of isolated Linux sandboxes.
#[derive(Parser)]
#[command(name = "sandpool", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Measure warm, cold and bare execution (and with --engine the pool engine) side by side.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Commands::Bench(args) => bench::main(args),
    }
}
