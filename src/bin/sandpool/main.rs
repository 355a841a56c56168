//! The `sandpool` command: `run`, `bench` and `doctor`.
#![deny(unsafe_code)]

mod bench;
mod doctor;
mod harness;
mod relay;
mod run;

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
    /// Run one command in a fresh sandbox.
    Run(run::RunArgs),
    /// Measure warm (run and start), cold and bare execution (and with --engine the pool engine) side by side.
    Bench(bench::BenchArgs),
    /// Say what this host supports and what isolation sandpool gives here.
    Doctor(doctor::DoctorArgs),
    /// What `bench`'s workloads run inside (internal): `loopback`, one TCP round trip.
    #[command(name = "bench-probe", hide = true)]
    BenchProbe {
        /// The probe: `loopback`.
        probe: String,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // `--help` and `--version` succeed; anything else, `sandpool` alone included (its
            // usage goes to stderr), is a usage error.
            let usage_error =
                !matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion);
            // `run` promises 125 when it cannot set the sandbox up; a bad option is that too.
            let is_run = std::env::args().nth(1).as_deref() == Some("run");
            return match (usage_error, is_run) {
                (false, _) => ExitCode::SUCCESS,
                (true, true) => ExitCode::from(run::EXIT_SETUP),
                (true, false) => ExitCode::from(2),
            };
        }
    };
    if std::env::var_os("SANDPOOL_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("SANDPOOL_LOG"))
            .with_writer(std::io::stderr)
            .init();
    }
    match cli.command {
        Commands::Run(args) => run::main(args),
        Commands::Bench(args) => bench::main(args),
        Commands::Doctor(args) => doctor::main(args),
        Commands::BenchProbe { probe } => match probe.as_str() {
            "loopback" => match harness::workloads::loopback_round_trip() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sandpool bench-probe loopback: {e}");
                    ExitCode::FAILURE
                }
            },
            other => {
                eprintln!("sandpool bench-probe: no probe {other:?} (known: loopback)");
                ExitCode::from(2)
            }
        },
    }
}
