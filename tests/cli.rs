//! The `sandpool` command's contract (DESIGN.md): options, exit statuses, `--json` fields.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn sandpool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sandpool")).args(args).stdin(Stdio::null()).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn run_passes_output_and_exit_status_through() {
    let out = sandpool(&["run", "--", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err\n"));
}

#[test]
fn run_reports_signals_timeouts_and_missing_programs() {
    assert_eq!(sandpool(&["run", "--", "sh", "-c", "kill -9 $$"]).status.code(), Some(128 + 9));
    let out = sandpool(&["run", "--timeout", "0.3", "--", "sleep", "30"]);
    assert_eq!(out.status.code(), Some(124));
    assert!(text(&out.stderr).contains("timed out"), "{}", text(&out.stderr));
    let out = sandpool(&["run", "--", "no-such-program-anywhere"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("not found"));
}

#[test]
fn bad_input_fails_with_125_and_a_reason() {
    for args in [
        &["run", "--ro", "/definitely/missing/path", "--", "true"][..],
        &["run", "--env", "NOEQUALS", "--", "true"],
        &["run", "--timeout", "-1", "--", "true"],
        &["run", "--memory", "0", "--", "true"],
        &["run", "--cwd", "relative", "--", "true"],
        &["run", "--rw", "/", "--", "true"],
        &["run"],
    ] {
        let out = sandpool(args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", text(&out.stderr));
        assert!(!out.stderr.is_empty(), "{args:?} says why");
    }
}

#[test]
fn run_options_reach_the_command() {
    let out = sandpool(&["run", "--env", "GREETING=hi", "--cwd", "/usr", "--", "sh", "-c", "echo $GREETING; pwd"]);
    assert_eq!(text(&out.stdout), "hi\n/usr\n");
    let out = sandpool(&["run", "--no-fork", "--", "sh", "-c", "/bin/true && echo forked"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!text(&out.stdout).contains("forked"));
    let out = sandpool(&["run", "--pids", "4", "--", "sh", "-c", "echo fine"]);
    assert_eq!(text(&out.stdout), "fine\n");
}

#[test]
fn piped_stdin_reaches_the_command() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sandpool"))
        .args(["run", "--", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "PIPED");
}

#[test]
fn run_json_has_the_documented_fields() {
    let out = sandpool(&["run", "--json", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit_code"], 3);
    assert!(v["signal"].is_null());
    assert_eq!(v["timed_out"], false);
    assert_eq!(v["stdout"], "out\n");
    assert_eq!(v["stderr"], "err\n");
    assert_eq!(v["stdout_truncated"], false);
    assert_eq!(v["stderr_truncated"], false);
    assert!(v["duration_us"].as_u64().unwrap() > 0);
    assert!(v["isolation"]["namespaces"]["pid"].as_bool().unwrap());
    let out = sandpool(&["run", "--json", "--timeout", "0.2", "--", "sleep", "5"]);
    assert_eq!(out.status.code(), Some(124));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["timed_out"].as_bool(), v["signal"].as_i64(), v["exit_code"].is_null()), (Some(true), Some(9), true));
}

#[test]
fn doctor_and_bench_speak_json() {
    let out = sandpool(&["doctor", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sandbox"]["works"], true);
    assert!(v["host"]["features"].as_array().unwrap().iter().any(|f| f["name"] == "landlock"));

    let out = sandpool(&["bench", "--json", "--duration", "0.1", "--threads", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let modes = v["modes"].as_array().unwrap();
    let names: Vec<&str> = modes.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["bare", "warm", "cold"]);
    for m in modes {
        for key in ["threads", "ops", "ops_per_sec", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "errors"] {
            assert!(m[key].is_number(), "{key} in {m}");
        }
        assert_eq!(m["errors"], 0);
    }
}

#[test]
fn no_arguments_is_a_usage_error_on_stderr() {
    let out = sandpool(&[]);
    assert_eq!(out.status.code(), Some(2), "clap's convention for a usage error");
    assert!(text(&out.stderr).contains("Usage: sandpool"), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "the usage goes to stderr: {}", text(&out.stdout));
    // Asked for, help and version succeed on stdout.
    let help = sandpool(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("Usage: sandpool"));
    assert_eq!(sandpool(&["--version"]).status.code(), Some(0));
}

#[test]
fn host_specific_directories_show_only_through_a_bind() {
    // The probe: the host has /opt, and a bind shows it.
    if !std::path::Path::new("/opt").is_dir() {
        eprintln!("SKIP host_specific_directories_show_only_through_a_bind: no /opt on this host");
        return;
    }
    let bound = sandpool(&["run", "--ro", "/opt", "--", "test", "-d", "/opt"]);
    assert_eq!(bound.status.code(), Some(0), "with --ro /opt it is there: {}", text(&bound.stderr));
    let default = sandpool(&["run", "--", "test", "-e", "/opt"]);
    assert_eq!(default.status.code(), Some(1), "by default it is not: {}", text(&default.stderr));
}
