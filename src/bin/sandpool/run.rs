//! `sandpool run`: one command in a fresh sandbox.

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use sandpool::sandbox::{Command, DEFAULT_PATH, ExitStatus, KillReason, Network, Policy, Sandbox, SandboxError};

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

/// What the command's stdin gets: our stdin when it is a file, or a pipe that already has data
/// or is closed within a moment; otherwise nothing (an open pipe that stays silent, as a test
/// harness may leave, must not hang us).
fn forwarded_stdin() -> Option<Vec<u8>> {
    if std::io::stdin().is_terminal() {
        return None;
    }
    let meta = std::fs::metadata("/proc/self/fd/0").ok()?;
    if meta.is_file() {
        let mut buf = Vec::new();
        std::io::stdin().lock().read_to_end(&mut buf).ok()?;
        return Some(buf);
    }
    // A reader thread: its first read returns as soon as there is data or end of file.
    let (first_tx, first_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        let mut first = Some(first_tx);
        loop {
            let n = stdin.read(&mut chunk).unwrap_or(0);
            if let Some(tx) = first.take() {
                let _ = tx.send(());
            }
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let _ = done_tx.send(buf);
    });
    first_rx.recv_timeout(Duration::from_millis(50)).ok()?;
    done_rx.recv().ok()
}

/// Runs `sandpool run`.
pub fn main(args: RunArgs) -> ExitCode {
    let mut builder = Policy::builder()
        .memory_mib(args.memory)
        .max_processes(args.pids)
        .timeout(args.timeout)
        .network(if args.net { Network::Host } else { Network::LoopbackOnly });
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
    if let Some(input) = forwarded_stdin() {
        cmd.stdin(input);
    }

    let mut sandbox = match Sandbox::spawn(&policy) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_SETUP, describe(&e)),
    };
    let output = match sandbox.run(&cmd) {
        Ok(o) => o,
        Err(e @ SandboxError::ProgramNotFound { .. }) => return fail(EXIT_NOT_FOUND, describe(&e)),
        Err(e @ SandboxError::Exec { .. }) => return fail(EXIT_CANNOT_EXECUTE, describe(&e)),
        Err(e) => return fail(EXIT_SETUP, describe(&e)),
    };
    let oom = sandbox.oom_killed();
    let isolation = sandbox.isolation().clone();

    let code = if output.timed_out {
        EXIT_TIMEOUT
    } else {
        match output.status {
            ExitStatus::Exited(c) => (c & 0xff) as u8,
            ExitStatus::Signaled(s) => (128 + s).min(255) as u8,
        }
    };
    if args.json {
        let value = serde_json::json!({
            "exit_code": output.exit_code(),
            "signal": output.signal(),
            "timed_out": output.timed_out,
            "stdout": String::from_utf8_lossy(&output.stdout),
            "stderr": String::from_utf8_lossy(&output.stderr),
            "stdout_truncated": output.stdout_truncated,
            "stderr_truncated": output.stderr_truncated,
            "duration_us": output.duration.as_micros() as u64,
            "oom_killed": oom,
            "isolation": isolation,
        });
        println!("{value}");
    } else {
        let _ = std::io::stdout().write_all(&output.stdout);
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().write_all(&output.stderr);
        if output.timed_out {
            eprintln!("sandpool: timed out after {:.3} s; the command was killed", args.timeout.as_secs_f64());
        }
        if output.killed_by_sandbox == Some(KillReason::OutputLimit) {
            eprintln!(
                "sandpool: output went past the {} byte cap: truncated, and the command was killed",
                policy.output_limit()
            );
        }
        if oom {
            eprintln!("sandpool: the sandbox ran out of memory (limit {} MiB); a process was killed", args.memory);
        }
    }
    // Tear the sandbox down (kill, reap, remove its cgroups) after the output is out: the
    // kernel takes a few milliseconds to dismantle its namespaces.
    drop(sandbox);
    ExitCode::from(code)
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
