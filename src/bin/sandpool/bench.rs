//! `sandpool bench`: the workloads users run (see [`harness::workloads`]), each bare, in
//! bwrap, warm through the pool and cold, side by side; a program of one's own the same way
//! (and through a `Child`); and with `--engine` the pool engine against its baselines.
use crate::harness::{self, Progress, workloads};
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
    /// Measure only these workloads (`true`, `file`, `loopback`, `python`, `gcc`; a list, or
    /// the option repeated). Default: all of them.
    #[arg(long, value_delimiter = ',', num_args = 1.., conflicts_with = "program")]
    pub workload: Vec<String>,
    /// A program (and arguments) to measure instead of the workloads.
    #[arg(last = true)]
    pub program: Vec<String>,
}

fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 { Ok(v) } else { Err("must be a positive number of seconds".into()) }
}

/// Thread counts of the sandbox modes when `--threads` is not given.
pub const DEFAULT_SANDBOX_THREADS: [usize; 2] = [1, 2];

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
    let (benches, skipped) = match sandbox_benches(&args) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("sandpool bench: {e}");
            return ExitCode::from(2);
        }
    };
    if benches.is_empty() && !args.engine {
        eprintln!("sandpool bench: no workload can run here");
        return ExitCode::from(1);
    }

    let mut total: u64 = benches.iter().map(|b| (b.modes().len() * sandbox_threads.len()) as u64).sum();
    if args.engine {
        total += (engine_threads.len() * (1 + harness::BASELINES.len())) as u64;
    }
    let bar = if args.json { ProgressBar::hidden() } else { ProgressBar::new(total) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut sandbox_rows = Vec::new();
    for bench in &benches {
        let name = bench.workload.name;
        let progress = |p: Progress<'_>| match p {
            Progress::Start { mode, threads } => bar.set_message(format!("{name}: {mode} × {threads} threads")),
            Progress::Done => bar.inc(1),
        };
        match bench.run_all(&sandbox_threads, duration, &progress) {
            Ok(rows) => sandbox_rows.extend(rows),
            Err(e) => {
                bar.finish_and_clear();
                eprintln!("sandpool bench: {}", super::run::describe(&e));
                return ExitCode::from(1);
            }
        }
    }
    let progress = |p: Progress<'_>| match p {
        Progress::Start { mode, threads } => bar.set_message(format!("{mode} × {threads} threads")),
        Progress::Done => bar.inc(1),
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
        harness::write_json(&mut out, &all, &skipped)
    } else {
        let report = Report {
            args: &args,
            benches: &benches,
            skipped: &skipped,
            sandbox_rows: &sandbox_rows,
            engine_rows: &engine_rows,
            threads: &sandbox_threads,
            engine_pool,
        };
        print_report(&mut out, &report)
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandpool bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A workload not measured, and why.
type Skipped = (String, String);

/// The workloads to measure (the program given, or those named, or all), each checked by one
/// run in a sandbox; and those skipped, with why. A program given that cannot run is an
/// error; a named workload that cannot is skipped.
fn sandbox_benches(args: &BenchArgs) -> Result<(Vec<harness::SandboxBench>, Vec<Skipped>), String> {
    let check = |bench: &harness::SandboxBench| -> Result<(), String> {
        let argv = &bench.workload.argv;
        let mut sandbox = sandpool::sandbox::Sandbox::spawn(&bench.policy)
            .map_err(|e| format!("cannot make a sandbox here: {e} (see `sandpool doctor`)"))?;
        let out = sandbox
            .run(sandpool::sandbox::Command::new(&argv[0]).args(&argv[1..]))
            .map_err(|e| format!("cannot run {argv:?} in a sandbox here: {e}"))?;
        if out.success() {
            Ok(())
        } else {
            Err(format!(
                "{argv:?} fails in a sandbox ({:?}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    if !args.program.is_empty() {
        let bench = harness::SandboxBench::new(workloads::custom(&args.program), args.pool_size, true)?;
        check(&bench)?;
        return Ok((vec![bench], Vec::new()));
    }
    let names: Vec<&str> = if args.workload.is_empty() {
        workloads::NAMES.to_vec()
    } else {
        args.workload.iter().map(String::as_str).collect()
    };
    let (mut benches, mut skipped) = (Vec::new(), Vec::new());
    for name in names {
        if !workloads::NAMES.contains(&name) {
            return Err(format!("no workload {name:?} (known: {})", workloads::NAMES.join(", ")));
        }
        let bench = workloads::workload(name).and_then(|w| harness::SandboxBench::new(w, args.pool_size, false));
        match bench.and_then(|b| check(&b).map(|()| b)) {
            Ok(b) => benches.push(b),
            Err(why) => skipped.push((name.to_string(), why)),
        }
    }
    Ok((benches, skipped))
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

/// What `print_report` prints.
struct Report<'a> {
    args: &'a BenchArgs,
    benches: &'a [harness::SandboxBench],
    skipped: &'a [Skipped],
    sandbox_rows: &'a [harness::ModeReport],
    engine_rows: &'a [harness::ModeReport],
    threads: &'a [usize],
    engine_pool: usize,
}

fn print_report(out: &mut dyn Write, r: &Report<'_>) -> std::io::Result<()> {
    let has_bwrap = r.sandbox_rows.iter().any(|row| row.name == harness::BWRAP);
    if !r.benches.is_empty() && !has_bwrap {
        writeln!(out, "bwrap: not installed here, so not measured (install bubblewrap to compare)")?;
    }
    for bench in r.benches {
        let name = bench.workload.name;
        let rows: Vec<_> = r.sandbox_rows.iter().filter(|row| row.workload.as_deref() == Some(name)).cloned().collect();
        writeln!(
            out,
            "workload `{name}`: {} ({} s per mode; vs best bl = ops/s over bare)",
            bench.workload.about, r.args.duration
        )?;
        harness::print_table(out, &rows, &[harness::BARE])?;
        for &t in r.threads {
            let find = |n: &str| rows.iter().find(|row| row.name == n && row.threads == t);
            let (Some(warm), Some(bare), Some(cold)) = (find(harness::WARM), find(harness::BARE), find(harness::COLD))
            else {
                continue;
            };
            let bwrap = find(harness::BWRAP)
                .map(|b| format!(", {:.2}× bwrap's", warm.ops_per_sec / b.ops_per_sec))
                .unwrap_or_default();
            writeln!(
                out,
                "  {t} thread(s): warm p50 {:.2}× bare (p99 {:.2}×), throughput {:.2}× bare's{bwrap}; cold p50 {:.1}× warm's",
                warm.p50_us / bare.p50_us,
                warm.p99_us / bare.p99_us,
                warm.ops_per_sec / bare.ops_per_sec,
                cold.p50_us / warm.p50_us,
            )?;
            if let Some(p) = warm.pool {
                writeln!(
                    out,
                    "    warm pool: {} resets ({} in place, {} to a session made ahead), {} skipped (nothing left behind), {} sandboxes made",
                    p.resets, p.resets_in_place, p.resets_made_ahead, p.resets_skipped, p.sandboxes_made
                )?;
            }
            if let (Some(plain), Some(rt)) =
                (warm.idle_pss_kib, find(harness::RUNTIME_SHARED).and_then(|r| r.idle_pss_kib))
            {
                writeln!(
                    out,
                    "    memory of an idle sandbox (PSS): {:.1} MiB without the runtime, {:.1} MiB with it",
                    plain as f64 / 1024.0,
                    rt as f64 / 1024.0
                )?;
            }
            for (mode, what) in [
                (harness::RUNTIME, "a new template per lease"),
                (harness::RUNTIME_SHARED, "shared across leases"),
                (harness::RUNTIME_LEASE, "a lease running command after command"),
            ] {
                if let Some(rt) = find(mode) {
                    writeln!(
                        out,
                        "    {mode} (warm runtime, {what}): p50 {:.2}× bare's ({:.1}× faster), throughput {:.2}× bare's, {:.2}× warm's",
                        rt.p50_us / bare.p50_us,
                        bare.p50_us / rt.p50_us,
                        rt.ops_per_sec / bare.ops_per_sec,
                        rt.ops_per_sec / warm.ops_per_sec,
                    )?;
                }
            }
            if let Some(tasks) = find(harness::ASYNC) {
                writeln!(
                    out,
                    "    async ({t} task(s) on a 2-worker runtime): throughput {:.2}× warm's (a thread per command), p50 {:.2}×; at most {} threads, against {}; host CPU per run {:.0} µs, against {:.0}",
                    tasks.ops_per_sec / warm.ops_per_sec,
                    tasks.p50_us / warm.p50_us,
                    tasks.peak_threads,
                    warm.peak_threads,
                    tasks.host_cpu_us_per_op,
                    warm.host_cpu_us_per_op,
                )?;
            }
            if let Some(start) = find(harness::START) {
                writeln!(
                    out,
                    "    through a Child (start, read, wait): p50 {:.2}× warm's, throughput {:.2}× warm's",
                    start.p50_us / warm.p50_us,
                    start.ops_per_sec / warm.ops_per_sec,
                )?;
            }
        }
        writeln!(out)?;
    }
    for (name, why) in r.skipped {
        writeln!(out, "workload `{name}`: skipped: {why}")?;
    }
    if r.benches.len() > 1 {
        print_summary(out, r.sandbox_rows)?;
    }
    if !r.engine_rows.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "pool engine: acquire+release round trips, pool of {}, {} s each",
            r.engine_pool, r.args.duration
        )?;
        harness::print_table(out, r.engine_rows, &harness::BASELINES)?;
    }
    Ok(())
}

/// One line per workload and thread count: throughput of each mode, warm's ratios to bare
/// and bwrap, and what the warm pool did.
fn print_summary(out: &mut dyn Write, rows: &[harness::ModeReport]) -> std::io::Result<()> {
    writeln!(out, "summary (ops/s; warm's ratios to bare and bwrap at the same thread count):")?;
    writeln!(
        out,
        "{:<10} {:>7} {:>9} {:>9} {:>9} {:>9} {:>12} {:>12} {:>12} {:>30}",
        "workload",
        "threads",
        "bare",
        "bwrap",
        "warm",
        "cold",
        "warm p50 /b",
        "warm ops /b",
        "warm ops /bw",
        "resets (in place)/skipped/made"
    )?;
    let mut seen = Vec::new();
    for row in rows.iter().filter(|r| r.name == harness::WARM) {
        let (Some(workload), t) = (row.workload.as_deref(), row.threads) else { continue };
        if seen.contains(&(workload, t)) {
            continue;
        }
        seen.push((workload, t));
        let find =
            |n: &str| rows.iter().find(|r| r.name == n && r.threads == t && r.workload.as_deref() == Some(workload));
        let ops = |n: &str| find(n).map_or("-".to_string(), |r| format!("{:.0}", r.ops_per_sec));
        let bare = find(harness::BARE);
        let ratio = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.2}x"));
        let work = row.pool.map_or("-".to_string(), |p| {
            format!("{} ({})/{}/{}", p.resets, p.resets_in_place, p.resets_skipped, p.sandboxes_made)
        });
        writeln!(
            out,
            "{:<10} {:>7} {:>9} {:>9} {:>9} {:>9} {:>12} {:>12} {:>12} {:>30}",
            workload,
            t,
            ops(harness::BARE),
            ops(harness::BWRAP),
            ops(harness::WARM),
            ops(harness::COLD),
            ratio(bare.map(|b| row.p50_us / b.p50_us)),
            ratio(bare.map(|b| row.ops_per_sec / b.ops_per_sec)),
            ratio(find(harness::BWRAP).map(|b| row.ops_per_sec / b.ops_per_sec)),
            work,
        )?;
    }
    Ok(())
}
