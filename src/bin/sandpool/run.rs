//! `sandpool run`: one command in a fresh sandbox.

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread::JoinHandle;
use std::time::Duration;

use sandpool::sandbox::{
    Child, ChildPty, ChildStderr, ChildStdout, Command, DEFAULT_PATH, ExitStatus, KillReason, Network, Policy,
    Requirement, ResourceUsage, Sandbox, SandboxError, UsageSource, probe,
};

use crate::relay::{self, RawTerminal, SignalRelay, StdinSource, TerminalResizer};

/// Exit status when the sandbox could not be set up (or the input was refused).
pub const EXIT_SETUP: u8 = 125;
/// Exit status on timeout.
pub const EXIT_TIMEOUT: u8 = 124;
/// Exit status when the program exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: u8 = 126;
/// Exit status when the program does not exist in the sandbox.
pub const EXIT_NOT_FOUND: u8 = 127;

/// Options of `sandpool run`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Exit status: the command's; 128+N if killed by signal N; 124 on timeout; \
125 if the sandbox could not be set up; 126 if the program cannot be executed; 127 if it is not found.")]
pub struct RunArgs {
    /// Bind PATH read-only at the same path (repeatable).
    #[arg(long = "ro", value_name = "PATH")]
    ro: Vec<PathBuf>,
    /// Bind PATH read-write at the same path (repeatable).
    #[arg(long = "rw", value_name = "PATH")]
    rw: Vec<PathBuf>,
    /// Share the host network (default: own network namespace, loopback only).
    #[arg(long)]
    net: bool,
    /// Memory limit in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 512)]
    memory: u64,
    /// Most processes in the sandbox.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pids: u64,
    /// CPU share of the whole sandbox, in CPUs (e.g. 0.5; cgroup cpu.max).
    #[arg(long, value_name = "CPUS")]
    cpu: Option<f64>,
    /// Use no cgroup: memory and processes limited per process by rlimits (where the cgroup
    /// file system is read-only, as in a container, sandpool refuses to run without it).
    #[arg(long)]
    no_cgroups: bool,
    /// Wall-clock limit in seconds (fractions allowed).
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_timeout)]
    timeout: Duration,
    /// Forbid creating processes.
    #[arg(long)]
    no_fork: bool,
    /// Environment variable KEY=VALUE (repeatable; the environment is minimal otherwise).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Working directory inside.
    #[arg(long, value_name = "PATH", default_value = "/tmp")]
    cwd: PathBuf,
    /// Run on a terminal of its own (interactive; needs a terminal on stdin).
    #[arg(short = 't', long = "tty", conflicts_with = "json")]
    tty: bool,
    /// Print one JSON object instead of passing output through.
    #[arg(long)]
    json: bool,
    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "PROGRAM")]
    command: Vec<OsString>,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(format!("timeout must be a positive number of seconds (got {s})"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("sandpool: {msg}");
    ExitCode::from(code)
}

/// Runs `sandpool run`.
pub fn main(args: RunArgs) -> ExitCode {
    let mut builder = Policy::builder()
        .memory_mib(args.memory)
        .max_processes(args.pids)
        .timeout(args.timeout)
        .network(if args.net { Network::Host } else { Network::LoopbackOnly });
    if let Some(cpus) = args.cpu {
        builder = builder.cpus(cpus);
    }
    if args.no_cgroups {
        builder = builder.cgroups(Requirement::Off);
    } else if let Some(ro) = probe::cgroups_read_only() {
        return fail(
            EXIT_SETUP,
            format!(
                "{} is mounted read-only (as in a container), so the sandbox cannot get its own memory and \
                 process limits: mount it read-write for sandpool, or pass --no-cgroups to limit each process \
                 with rlimits instead",
                ro.display()
            ),
        );
    }
    for p in &args.ro {
        builder = builder.ro(p);
    }
    for p in &args.rw {
        builder = builder.rw(p);
    }
    let policy = match builder.build() {
        Ok(p) => p,
        Err(e) => return fail(EXIT_SETUP, e),
    };
    let program = &args.command[0];
    let mut cmd = Command::new(program);
    cmd.args(&args.command[1..]).current_dir(&args.cwd).no_fork(args.no_fork);
    for (k, v) in &args.env {
        cmd.env(k, v);
    }
    if !args.cwd.is_absolute() {
        return fail(EXIT_SETUP, format!("--cwd {:?} must be an absolute path", args.cwd));
    }
    if args.cwd != std::path::Path::new("/tmp") && !(policy.shows_host_path(&args.cwd) && args.cwd.is_dir()) {
        return fail(
            EXIT_SETUP,
            format!("--cwd {:?} does not exist in the sandbox (use /tmp, or bind it with --ro/--rw)", args.cwd),
        );
    }
    let search_path = args.env.iter().rev().find(|(k, _)| k == "PATH").map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    if let Err(e) = policy.locate_program(std::path::Path::new(program), search_path, &args.cwd) {
        return fail(EXIT_NOT_FOUND, e);
    }
    if args.tty {
        if !std::io::stdin().is_terminal() {
            return fail(EXIT_SETUP, "-t needs a terminal on stdin (run it from one, or leave -t out)");
        }
        let (rows, cols) = relay::our_window_size().unwrap_or((24, 80));
        cmd.pty(rows, cols);
    } else {
        cmd.stdin(StdinSource::of_this_process().stdio());
    }

    let mut signals = match SignalRelay::catch() {
        Ok(s) => s,
        Err(e) => return fail(EXIT_SETUP, format!("cannot catch signals: {e}")),
    };
    let sandbox = match Sandbox::spawn(&policy) {
        Ok(s) => s,
        // One sentence: what refuses, and how to allow it.
        Err(e @ SandboxError::HostRefuses { .. }) => return fail(EXIT_SETUP, e),
        Err(e) => return fail(EXIT_SETUP, describe(&e)),
    };
    let mut child = match sandbox.start(&cmd) {
        Ok(c) => c,
        Err(e) => return fail(exit_code_of(&e), describe(&e)),
    };
    let mut streams = match Streams::start(&mut child, args.json) {
        Ok(s) => s,
        Err(e) => {
            let _ = child.kill();
            return fail(EXIT_SETUP, format!("cannot pass the command's streams: {e}"));
        }
    };
    signals.start(child.killer(), streams.resizer.take());
    let exit = child.wait();
    signals.stop();
    let oom = sandbox.oom_killed();
    let isolation = sandbox.isolation().clone();
    // Tear the sandbox down (kill, reap, remove its cgroups, waiting for them: this process
    // ends next, and would leave a busy one behind): whatever the command left running lets
    // go of its output, which is then passed on to its end.
    if let Err(e) = sandbox.destroy() {
        eprintln!("sandpool: tearing the sandbox down: {}", describe(&e));
    }
    let output = streams.finish();
    let exit = match exit {
        Ok(exit) => exit,
        Err(e) => return fail(exit_code_of(&e), describe(&e)),
    };

    let code = if exit.timed_out() {
        EXIT_TIMEOUT
    } else {
        match exit.status {
            ExitStatus::Exited(c) => (c & 0xff) as u8,
            ExitStatus::Signaled(s) => (128 + s).min(255) as u8,
        }
    };
    if args.json {
        let value = serde_json::json!({
            "exit_code": exit.code(),
            "signal": exit.status.signal(),
            "timed_out": exit.timed_out(),
            "stdout": String::from_utf8_lossy(&output.stdout),
            "stderr": String::from_utf8_lossy(&output.stderr),
            "stdout_truncated": output.stdout_truncated,
            "stderr_truncated": output.stderr_truncated,
            "duration_us": exit.duration.as_micros() as u64,
            "usage": usage_json(&exit.usage),
            "oom_killed": oom,
            "isolation": isolation,
        });
        println!("{value}");
    } else {
        if exit.timed_out() {
            eprintln!("sandpool: timed out after {:.3} s; the command was killed", args.timeout.as_secs_f64());
        }
        if exit.killed_by_sandbox == Some(KillReason::OutputLimit) {
            eprintln!(
                "sandpool: output went past the {} byte cap: truncated, and the command was killed",
                policy.output_limit()
            );
        }
        if oom {
            eprintln!("sandpool: the sandbox ran out of memory (limit {} MiB); a process was killed", args.memory);
        }
    }
    ExitCode::from(code)
}

/// What is collected for `--json`, or was passed through.
#[derive(Default)]
struct Collected {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdout_truncated: bool,
    stderr_truncated: bool,
}

/// Where an output of the command goes: our own stream, or a buffer for `--json`.
enum Sink {
    Stdout,
    Stderr,
    Buffer(Vec<u8>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Stdout => std::io::stdout().lock().write(buf),
            Sink::Stderr => std::io::stderr().lock().write(buf),
            Sink::Buffer(b) => b.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout => std::io::stdout().lock().flush(),
            _ => Ok(()),
        }
    }
}

/// One output of the command: a pipe, or its terminal.
enum Output {
    Stdout(ChildStdout),
    Stderr(ChildStderr),
    Terminal(ChildPty),
}

/// Whether the command wrote past the output cap; closes the output.
fn truncated(output: Output) -> bool {
    match output {
        Output::Stdout(s) => s.truncated(),
        Output::Stderr(s) => s.truncated(),
        Output::Terminal(t) => t.truncated(),
    }
}

impl Read for Output {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Output::Stdout(s) => s.read(buf),
            Output::Stderr(s) => s.read(buf),
            Output::Terminal(t) => t.read(buf),
        }
    }
}

/// The threads passing the command's streams while it runs.
struct Streams {
    stdout: Option<JoinHandle<(bool, Sink)>>,
    stderr: Option<JoinHandle<(bool, Sink)>>,
    /// Our terminal in raw mode, for `-t`.
    raw: Option<RawTerminal>,
    /// What resizes the command's terminal on `SIGWINCH`, for `-t`.
    resizer: Option<TerminalResizer>,
}

impl Streams {
    /// Starts passing the child's streams: our stdin in (through the command's own pipe), its
    /// output out to ours, or into buffers when `collect`.
    fn start(child: &mut Child, collect: bool) -> std::io::Result<Streams> {
        let sink = |ours: Sink| if collect { Sink::Buffer(Vec::new()) } else { ours };
        if let Some(pty) = child.pty.take() {
            let resizer = TerminalResizer::new(&pty)?;
            let typed = std::fs::File::from(pty.as_fd().try_clone_to_owned()?);
            let raw = RawTerminal::enter()?;
            // Keys go in as they are typed, until our stdin ends; a thread blocked reading it
            // when the command ends goes with the process.
            drop(relay::copy_in_background(std::io::stdin(), typed, drop));
            let shown = relay::copy_in_background(Output::Terminal(pty), sink(Sink::Stdout), truncated);
            return Ok(Streams { stdout: Some(shown), stderr: None, raw: Some(raw), resizer: Some(resizer) });
        }
        if let Some(input) = child.stdin.take() {
            drop(relay::copy_in_background(std::io::stdin(), input, drop));
        }
        let stdout =
            child.stdout.take().map(|s| relay::copy_in_background(Output::Stdout(s), sink(Sink::Stdout), truncated));
        let stderr =
            child.stderr.take().map(|s| relay::copy_in_background(Output::Stderr(s), sink(Sink::Stderr), truncated));
        Ok(Streams { stdout, stderr, raw: None, resizer: None })
    }

    /// Waits for the outputs to end (the sandbox gone, nothing holds them any more), puts our
    /// terminal back, and says what was collected.
    fn finish(self) -> Collected {
        let mut collected = Collected::default();
        let joined = |thread: Option<JoinHandle<(bool, Sink)>>| thread.and_then(|t| t.join().ok());
        if let Some((truncated, sink)) = joined(self.stdout) {
            collected.stdout_truncated = truncated;
            if let Sink::Buffer(b) = sink {
                collected.stdout = b;
            }
        }
        if let Some((truncated, sink)) = joined(self.stderr) {
            collected.stderr_truncated = truncated;
            if let Sink::Buffer(b) = sink {
                collected.stderr = b;
            }
        }
        drop(self.raw);
        collected
    }
}

/// What `--json` says of the command's resource use, with where each figure comes from.
fn usage_json(usage: &ResourceUsage) -> serde_json::Value {
    let source = |s: UsageSource| if s == UsageSource::Cgroup { "cgroup" } else { "wait4" };
    let (cpu, cpu_from) = usage.cpu_time();
    let (peak, peak_from) = usage.peak_memory();
    serde_json::json!({
        "cpu_time_us": cpu.as_micros() as u64,
        "cpu_time_from": source(cpu_from),
        "peak_memory_bytes": peak,
        "peak_memory_from": source(peak_from),
    })
}

/// The exit status for a command that could not run: not found, not executable, or the
/// sandbox failing.
fn exit_code_of(e: &SandboxError) -> u8 {
    match e {
        SandboxError::ProgramNotFound { .. } => EXIT_NOT_FOUND,
        SandboxError::Exec { .. } => EXIT_CANNOT_EXECUTE,
        _ => EXIT_SETUP,
    }
}

/// An error with its chain of causes, for a human.
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
