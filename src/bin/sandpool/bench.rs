//! `sandpool bench`: warm (through `run` and through a `Child`), cold and bare execution side
//! engine against its baselines.
use crate::harness::{self, Progress};
use indicatif::{ProgressBar, ProgressStyle};
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
    /// Instead of the modes: how much CPU a CPU-bound command gets in a sandbox with this
    /// share (`--cpu`), side by side with one without a share.
    #[arg(long, value_name = "CPUS", conflicts_with = "engine")]
    pub cpu_share: Option<f64>,
    /// Program (and arguments) run by the sandbox modes.
    #[arg(last = true, default_value = "/bin/true")]
    pub program: Vec<String>,
}

fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 { Ok(v) } else { Err("must be a positive number of seconds".into()) }
}

/// Thread counts of the sandbox modes when `--threads` is not given.
pub const DEFAULT_SANDBOX_THREADS: [usize; 2] = [1, 2];

/// The original design's cost per command (a `Mutex<VecDeque>` of configs, a cold sandbox
/// per command), measured on the reference machine (DESIGN.md).
const ORIGINAL_DESIGN_US: f64 = 11_000.0;
/// `bwrap` per command on the reference machine (DESIGN.md).
const BWRAP_US: f64 = 4_200.0;

/// Runs `sandpool bench`.
pub fn main(args: BenchArgs) -> ExitCode {
    if args.threads.contains(&0) {
        eprintln!("sandpool bench: --threads must be at least 1");
        return ExitCode::from(2);
    }
    if args.pool_size == Some(0) {
        eprintln!("sandpool bench: --pool-size must be at least 1");
        return ExitCode::from(2);
    }
    let duration = Duration::from_secs_f64(args.duration);
    if let Some(share) = args.cpu_share {
        return cpu_share(share, duration, args.json);
    }
    let sandbox_threads = if args.threads.is_empty() { DEFAULT_SANDBOX_THREADS.to_vec() } else { args.threads.clone() };
    let engine_threads = if args.threads.is_empty() { DEFAULT_ENGINE_THREADS.to_vec() } else { args.threads.clone() };
    let engine_pool = args.pool_size.unwrap_or(DEFAULT_ENGINE_POOL_SIZE).max(1);
    let sandbox = harness::SandboxBench {
        argv: args.program.iter().map(std::ffi::OsString::from).collect(),
        pool_size: args.pool_size,
        policy: sandpool::sandbox::Policy::default(),
    };
    // Fail early, with the reason, if this host cannot make a sandbox or run the program.
    if let Err(e) = sandpool::sandbox::Sandbox::spawn(&sandbox.policy)
        .and_then(|mut s| s.run(sandpool::sandbox::Command::new(&sandbox.argv[0]).args(&sandbox.argv[1..])))
    {
        eprintln!("sandpool bench: cannot run {:?} in a sandbox here: {e} (see `sandpool doctor`)", sandbox.argv);
        return ExitCode::from(1);
    }

    let mut total = (sandbox_threads.len() * 4) as u64;
    if args.engine {
        total += (engine_threads.len() * (1 + harness::BASELINES.len())) as u64;
    }
    let bar = if args.json { ProgressBar::hidden() } else { ProgressBar::new(total) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress = |p: Progress<'_>| match p {
        Progress::Start { mode, threads } => bar.set_message(format!("{mode} × {threads} threads")),
        Progress::Done => bar.inc(1),
    };
    let sandbox_rows = match sandbox.run_all(&sandbox_threads, duration, &progress) {
        Ok(rows) => rows,
        Err(e) => {
            bar.finish_and_clear();
            eprintln!("sandpool bench: {}", super::run::describe(&e));
            return ExitCode::from(1);
        }
    };
    let engine_rows = if args.engine {
        harness::run_engine_modes(&engine_threads, duration, engine_pool, &progress)
    } else {
        Vec::new()
    };
    bar.finish_and_clear();

    let mut out = std::io::stdout().lock();
    let r = if args.json {
        let all: Vec<_> = sandbox_rows.iter().chain(&engine_rows).cloned().collect();
        harness::write_json(&mut out, &all)
    } else {
        print_report(&mut out, &args, &sandbox_rows, &engine_rows, &sandbox_threads, engine_pool)
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandpool bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--cpu-share`: as many busy processes as there are CPUs run for `duration` in a sandbox
/// without a CPU share, then in one with `share`; reports the CPU time each got per second
/// of wall time (the sandbox's, from its cgroup where it keeps it, else `wait4`'s for the
/// command and the processes it waited for).
fn cpu_share(share: f64, duration: Duration, json: bool) -> ExitCode {
    use sandpool::sandbox::{Command, Policy, Sandbox};
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let secs = duration.as_secs_f64().max(0.5);
    let script =
        format!("i=0; while [ $i -lt {cpus} ]; do timeout {secs} sh -c 'while :; do :; done' & i=$((i+1)); done; wait");
    let measure = |policy: Policy| -> Result<(f64, f64, &'static str), String> {
        let mut sandbox = Sandbox::spawn(&policy).map_err(|e| super::run::describe(&e))?;
        let out = sandbox
            .run(Command::new("/bin/sh").args(["-c", &script]).timeout(duration * 4 + Duration::from_secs(10)))
            .map_err(|e| super::run::describe(&e))?;
        let (cpu, from) = out.usage.cpu_time();
        let from = if from == sandpool::sandbox::UsageSource::Cgroup { "cgroup" } else { "wait4" };
        Ok((cpu.as_secs_f64() / out.duration.as_secs_f64(), out.duration.as_secs_f64(), from))
    };
    let limited = match Policy::builder().cpus(share).build() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sandpool bench: {e}");
            return ExitCode::from(2);
        }
    };
    let (free, limited) = match (measure(Policy::default()), measure(limited)) {
        (Ok(f), Ok(l)) => (f, l),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("sandpool bench: {e}");
            return ExitCode::from(1);
        }
    };
    if json {
        let value = serde_json::json!({
            "cpu_share": share,
            "busy_processes": cpus,
            "unlimited_cpus_used": free.0,
            "limited_cpus_used": limited.0,
            "limited_over_share": limited.0 / share,
            "cpu_time_from": limited.2,
        });
        println!("{value}");
    } else {
        println!("{cpus} CPU-bound process(es) for {secs:.1} s (CPU time from {}):", limited.2);
        println!("  without a share: {:.2} CPUs used", free.0);
        println!("  with --cpu {share}: {:.2} CPUs used ({:.2}× the share)", limited.0, limited.0 / share);
    }
    ExitCode::SUCCESS
}

fn print_report(
    out: &mut dyn Write,
    args: &BenchArgs,
    sandbox_rows: &[harness::ModeReport],
    engine_rows: &[harness::ModeReport],
    threads: &[usize],
    engine_pool: usize,
) -> std::io::Result<()> {
    writeln!(out, "sandbox: {:?}, {} s per mode (vs best bl = ops/s over bare)", args.program, args.duration)?;
    harness::print_table(out, sandbox_rows, &[harness::BARE])?;
    writeln!(out)?;
    for &t in threads {
        let find = |n: &str| sandbox_rows.iter().find(|r| r.name == n && r.threads == t);
        let (Some(warm), Some(bare), Some(cold), Some(start)) =
            (find(harness::WARM), find(harness::BARE), find(harness::COLD), find(harness::START))
        else {
            continue;
        };
        writeln!(
            out,
            "{t} thread(s): warm p50 {:.2}× bare, p99 {:.2}× bare, throughput {:.2}× bare; warm {:.1}× faster than cold (p50)",
            warm.p50_us / bare.p50_us,
            warm.p99_us / bare.p99_us,
            warm.ops_per_sec / bare.ops_per_sec,
            cold.p50_us / warm.p50_us,
        )?;
        writeln!(
            out,
            "  through a Child (start, read, wait): p50 {:.2}× warm's, throughput {:.2}× warm's",
            start.p50_us / warm.p50_us,
            start.ops_per_sec / warm.ops_per_sec,
        )?;
        // The reference figures are of `/bin/true`: another program is compared only with what
        // this run measured.
        if t == threads[0] && args.program == ["/bin/true"] {
            writeln!(
                out,
                "  warm p50 {:.0} µs: {:.1}× faster than the original design's {:.0} ms per command, {:.1}× faster than bwrap's {:.1} ms (both measured on the reference machine, DESIGN.md)",
                warm.p50_us,
                ORIGINAL_DESIGN_US / warm.p50_us,
                ORIGINAL_DESIGN_US / 1000.0,
                BWRAP_US / warm.p50_us,
                BWRAP_US / 1000.0,
            )?;
        }
    }
    if !engine_rows.is_empty() {
        writeln!(out)?;
        writeln!(out, "pool engine: acquire+release round trips, pool of {engine_pool}, {} s each", args.duration)?;
        harness::print_table(out, engine_rows, &harness::BASELINES)?;
    }
    Ok(())
}
