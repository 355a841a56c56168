//! `sandpool bench`: measure the pool engine (`--engine`) and, with the sandbox, warm, cold
//! and bare execution side by side.
use indicatif::{ProgressBar, ProgressStyle};
use sandpool::bench::{self, Progress};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// Thread counts measured by `--engine` when `--threads` is not given.
pub const DEFAULT_ENGINE_THREADS: [usize; 5] = [1, 2, 4, 8, 16];
/// Pool size used by `--engine` when `--pool-size` is not given.
pub const DEFAULT_ENGINE_POOL_SIZE: usize = 64;

/// Options of `sandpool bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Thread counts to measure: a list (`1,2,4`) or a single count.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub threads: Vec<usize>,
    /// Seconds per measurement (fractions allowed).
    #[arg(long, default_value_t = 1.0, value_parser = parse_secs)]
    pub duration: f64,
    /// Resources in the pool (engine mode default: 64).
    #[arg(long)]
    pub pool_size: Option<usize>,
    /// Measure the pool engine alone against its baselines (mutex-vecdeque, parking-lot,
    /// array-queue).
    #[arg(long)]
    pub engine: bool,
    /// Print one JSON object `{"modes": [...]}` instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Program (and arguments) run by the sandbox modes.
    #[arg(last = true, default_value = "/bin/true")]
    pub program: Vec<String>,
}

fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 { Ok(v) } else { Err("must be a positive number of seconds".into()) }
}

/// Runs `sandpool bench`.
pub fn main(args: BenchArgs) -> ExitCode {
    if !args.engine {
        eprintln!(
            "sandpool bench: the sandbox modes (warm, cold, bare) come with the sandbox; \
             use --engine to measure the pool engine"
        );
        return ExitCode::SUCCESS;
    }
    if args.threads.contains(&0) {
        eprintln!("sandpool bench: --threads must be at least 1");
        return ExitCode::from(2);
    }
    let threads = if args.threads.is_empty() { DEFAULT_ENGINE_THREADS.to_vec() } else { args.threads.clone() };
    let pool_size = args.pool_size.unwrap_or(DEFAULT_ENGINE_POOL_SIZE).max(1);
    let duration = Duration::from_secs_f64(args.duration);
    let total = (threads.len() * (1 + bench::BASELINES.len())) as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let rows = bench::run_engine_modes(&threads, duration, pool_size, &|p| match p {
        Progress::Start { mode, threads, .. } => bar.set_message(format!("{mode} × {threads} threads")),
        Progress::Done(_) => bar.inc(1),
    });
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    let r = if args.json {
        bench::write_json(&mut out, &rows)
    } else {
        writeln!(out, "pool engine: acquire+release round trips, pool of {pool_size}, {} s each", args.duration)
            .and_then(|_| bench::print_table(&mut out, &rows, &bench::BASELINES))
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandpool bench: {e}");
            ExitCode::FAILURE
        }
    }
}
