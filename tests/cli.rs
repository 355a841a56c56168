//! The `sandpool` command's contract (DESIGN.md): options, exit statuses, `--json` fields.

mod common;

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

    // bwrap is measured where it is installed.
    let bwrap =
        ["/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap"].iter().any(|p| std::path::Path::new(p).exists());
    let expect = |modes: &[&'static str]| -> Vec<&'static str> {
        modes.iter().copied().filter(|m| bwrap || *m != "bwrap").collect()
    };
    for (args, workload, expected) in [
        (&["--workload", "file"][..], "file", expect(&["bare", "bwrap", "warm", "async", "cold"])),
        (&["--", "/bin/true"][..], "custom", expect(&["bare", "bwrap", "warm", "async", "start", "cold"])),
    ] {
        let mut all = vec!["bench", "--json", "--duration", "0.1", "--threads", "1"];
        all.extend_from_slice(args);
        let out = sandpool(&all);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let modes = v["modes"].as_array().unwrap();
        let names: Vec<&str> = modes.iter().map(|m| m["name"].as_str().unwrap()).collect();
        assert_eq!(names, expected, "{args:?}");
        for m in modes {
            for key in [
                "threads",
                "ops",
                "ops_per_sec",
                "p50_us",
                "p90_us",
                "p99_us",
                "p999_us",
                "max_us",
                "errors",
                "peak_threads",
                "host_cpu_us_per_op",
                "processes_per_op",
            ] {
                assert!(m[key].is_number(), "{key} in {m}");
            }
            assert_eq!(m["errors"], 0);
            assert_eq!(m["workload"], workload);
            // Every operation ran its command: at least one process each, counted by the kernel.
            assert!(m["processes_per_op"].as_f64().unwrap() >= 0.99, "{m}");
        }
        let warm = modes.iter().find(|m| m["name"] == "warm").unwrap();
        assert!(warm["pool"]["resets"].is_number(), "what the warm pool did: {warm}");
    }
    let unknown = sandpool(&["bench", "--workload", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("no workload \"nope\""), "{}", text(&unknown.stderr));
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

/// Kills `pid` if `done` is not set within a minute: a run that deadlocks fails its test
/// instead of hanging it.
fn watchdog(pid: u32) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = done.clone();
    std::thread::spawn(move || {
        for _ in 0..600 {
            if seen.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    });
    done
}

fn sandpool_piped(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_sandpool"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn run_streams_stdin_and_output_as_they_come() {
    use std::io::{BufRead, BufReader};
    // A command that asks and waits for the answer: only output passed on as it is written,
    // and input as it arrives, get it answered. Buffering either way deadlocks (the watchdog
    // then kills sandpool and the test fails).
    let mut child = sandpool_piped(&["run", "--", "sh", "-c", "echo question; read a; echo \"got $a\""]);
    let done = watchdog(child.id());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "question");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"42\n").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "got 42");
    assert!(child.wait().unwrap().success());
    done.store(true, std::sync::atomic::Ordering::Release);

    // `yes | sandpool run -- head -n1`: stdin that never ends is not read to its end first.
    let mut yes = Command::new("yes").stdout(Stdio::piped()).spawn().unwrap();
    let child = sandpool_reading(&["run", "--", "head", "-n1"], yes.stdout.take().unwrap());
    let done = watchdog(child.id());
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::Release);
    let _ = yes.kill();
    let _ = yes.wait();
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "y\n".to_string()));
}

/// `sandpool ARGS` with `stdin` (another process's output) as its stdin, its stdout piped.
fn sandpool_reading(args: &[&str], stdin: impl Into<Stdio>) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_sandpool")).args(args).stdin(stdin).stdout(Stdio::piped()).spawn().unwrap()
}

/// The largest resident size `pid` has had, KiB (`VmHWM`), while it lives.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
}

#[test]
fn run_passes_two_gib_of_stdin_with_little_memory() {
    let mut head = Command::new("head").args(["-c", "2G", "/dev/zero"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut child = sandpool_reading(&["run", "--", "wc", "-c"], head.stdout.take().unwrap());
    let done = watchdog(child.id());
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(peak_rss_kib(child.id()).unwrap_or(0));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::Release);
    let _ = head.wait();
    assert_eq!(text(&out.stdout).trim(), "2147483648");
    assert!(peak > 0, "the probe read sandpool's memory while it ran");
    assert!(peak < 64 * 1024, "sandpool held {peak} KiB: the input was buffered");
}

#[test]
fn signals_reach_the_command_and_a_second_one_kills_it() {
    use std::io::{BufRead, BufReader};
    let started = |child: &mut std::process::Child| {
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
    };
    let send = |signal: &str, pid: u32| {
        assert!(Command::new("kill").args([signal, &pid.to_string()]).status().unwrap().success());
    };
    let trapped = "trap 'echo got INT; exit 5' INT; echo ready; while :; do sleep 0.1; done";
    let mut child = sandpool_piped(&["run", "--", "sh", "-c", trapped]);
    let done = watchdog(child.id());
    started(&mut child);
    send("-INT", child.id());
    let out = child.wait_with_output().unwrap();
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(5), "got INT\n".to_string()));
    done.store(true, std::sync::atomic::Ordering::Release);

    let ignored = "trap 'echo ignored' TERM HUP; echo ready; while :; do sleep 0.1; done";
    let mut child = sandpool_piped(&["run", "--", "sh", "-c", ignored]);
    let done = watchdog(child.id());
    started(&mut child);
    send("-HUP", child.id());
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "ignored\n", "the first one reached the command's trap");
    send("-TERM", child.id());
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::Release);
    assert_eq!(out.status.code(), Some(128 + 9), "the second one killed it");
}

#[test]
fn tty_needs_a_terminal() {
    let out = sandpool(&["run", "-t", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("-t needs a terminal"), "{}", text(&out.stderr));
}

/// `-t` in a real terminal: tmux runs `sandpool run -t -- sh` in a detached session of a
/// known size, types into it (`send-keys`) and reads its screen (`capture-pane`).
#[test]
fn tty_runs_an_interactive_shell_in_a_real_terminal() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("SKIP tty_runs_an_interactive_shell_in_a_real_terminal: tmux is not installed");
        return;
    }
    let server = format!("sandpool-test-{}", std::process::id());
    let tmux = |args: &[&str]| -> String {
        let out = Command::new("tmux").arg("-L").arg(&server).args(args).env("TERM", "xterm").output().unwrap();
        assert!(out.status.success(), "tmux {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let screen_shows = |what: &str| -> String {
        for _ in 0..300 {
            let screen = tmux(&["capture-pane", "-p", "-t", "t"]);
            if screen.contains(what) {
                return screen;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the screen never showed {what:?}: {}", tmux(&["capture-pane", "-p", "-t", "t"]));
    };
    let bin = env!("CARGO_BIN_EXE_sandpool");
    // After sandpool: its exit status, and whether the terminal is back in cooked mode.
    let script =
        format!("{bin} run -t -- sh; echo exited-$?; stty -a | grep -q ' icanon' && echo cooked-again; sleep 60");
    tmux(&["new-session", "-d", "-s", "t", "-x", "100", "-y", "30", &script]);
    let result = std::panic::catch_unwind(|| {
        tmux(&["send-keys", "-t", "t", "tty; stty size", "Enter"]);
        let screen = screen_shows("30 100");
        assert!(screen.contains("/dev/pts/0"), "{screen}");
        tmux(&["resize-window", "-t", "t", "-x", "120", "-y", "40"]);
        tmux(&["send-keys", "-t", "t", "stty size", "Enter"]);
        screen_shows("40 120");
        // Ctrl-C until a prompt follows `sleep`: one typed before the shell has handed the
        // terminal to `sleep` reaches only the shell, as on any terminal.
        tmux(&["send-keys", "-t", "t", "sleep 100", "Enter"]);
        let mut prompt_back = false;
        for _ in 0..40 {
            std::thread::sleep(std::time::Duration::from_millis(250));
            tmux(&["send-keys", "-t", "t", "C-c"]);
            let screen = tmux(&["capture-pane", "-p", "-t", "t"]);
            if screen.rsplit_once("sleep 100").is_some_and(|(_, after)| after.contains("$ ")) {
                prompt_back = true;
                break;
            }
        }
        assert!(prompt_back, "Ctrl-C never ended sleep: {}", tmux(&["capture-pane", "-p", "-t", "t"]));
        tmux(&["send-keys", "-t", "t", "echo after-$?", "Enter"]);
        screen_shows("after-130");
        tmux(&["send-keys", "-t", "t", "exit 3", "Enter"]);
        screen_shows("exited-3");
        screen_shows("cooked-again");
    });
    let _ = Command::new("tmux").arg("-L").arg(&server).arg("kill-server").status();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Under the namespace rules of Docker's default seccomp profile, `run` fails at once (125)
/// with one sentence saying what refuses and how to allow it; `doctor` says the same.
#[test]
fn a_containers_seccomp_profile_is_named_with_how_to_allow_it() {
    let probe = common::probe();
    let under_filter = |args: &[&str]| -> Output {
        Command::new(probe).arg("docker-seccomp").args(args).stdin(Stdio::null()).output().unwrap()
    };
    // The probe works: commands run under it, and it refuses a new user namespace.
    assert!(under_filter(&["true"]).status.success());
    assert!(!under_filter(&["unshare", "-U", "true"]).status.success(), "the filter refuses namespaces");
    assert!(sandpool(&["run", "--", "true"]).status.success(), "without it, sandpool runs");

    let out = under_filter(&[env!("CARGO_BIN_EXE_sandpool"), "run", "--", "true"]);
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{said}");
    assert_eq!(said.lines().count(), 1, "one sentence: {said}");
    assert!(said.contains("seccomp") && said.contains("--security-opt seccomp=unconfined"), "{said}");
    let doctor = under_filter(&[env!("CARGO_BIN_EXE_sandpool"), "doctor"]);
    assert!(!doctor.status.success());
    assert!(text(&doctor.stdout).contains("--security-opt seccomp=unconfined"), "{}", text(&doctor.stdout));
}

/// Under Docker's profile with `CAP_SYS_ADMIN`, namespaces are allowed but `clone3` still
/// answers `ENOSYS` (so that libcs fall back to `clone`): sandpool falls back too, and its
/// sandbox is the same as anywhere else.
#[test]
fn where_clone3_answers_enosys_sandpool_uses_clone() {
    let probe = common::probe();
    let under_filter = |args: &[&str]| -> Output {
        Command::new(probe).arg("docker-sys-admin").args(args).stdin(Stdio::null()).output().unwrap()
    };
    // The probe works: clone3 answers ENOSYS under it, and namespaces are allowed.
    assert_eq!(text(&under_filter(&[probe.to_str().unwrap(), "clone3"]).stdout).trim(), "err 38");
    assert_ne!(text(&Command::new(probe).arg("clone3").output().unwrap().stdout).trim(), "err 38", "not outside it");
    let bin = env!("CARGO_BIN_EXE_sandpool");
    // The map's inside id and length (its host uid is each sandbox's own on a root host).
    let script = "echo hi; id -u; awk '{print $1, $3}' /proc/self/uid_map";
    let out = under_filter(&[bin, "run", "--json", "--memory", "64", "--", "sh", "-c", script]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut filtered: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut plain: serde_json::Value =
        serde_json::from_slice(&sandpool(&["run", "--json", "--memory", "64", "--", "sh", "-c", script]).stdout)
            .unwrap();
    for v in [&mut filtered, &mut plain] {
        v["isolation"].as_object_mut().unwrap().remove("host_uid");
    }
    assert_eq!(filtered["stdout"], plain["stdout"], "the same user namespace and output");
    assert_eq!(filtered["stdout"], "hi\n1000\n1000 1\n", "{filtered}");
    assert_eq!(filtered["isolation"], plain["isolation"], "the same isolation, limits included");
}

/// With the cgroup file system read-only (a Kubernetes pod's), `run` refuses (125) with one
/// sentence saying so and how to allow it, `--no-cgroups` runs with rlimits, and `doctor`
/// says the same. Root only: it remounts the cgroup mounts read-only in a mount namespace
/// of its own (util-linux `unshare -m`).
#[test]
fn a_read_only_cgroup_file_system_is_named_with_how_to_allow_it() {
    if !common::is_root() {
        common::skip(
            "a_read_only_cgroup_file_system_is_named_with_how_to_allow_it",
            "needs root to remount /sys/fs/cgroup",
        );
        return;
    }
    let bin = env!("CARGO_BIN_EXE_sandpool");
    let read_only = |args: &str| -> Output {
        let script = format!(
            "set -e; mount --make-rprivate /; \
             for m in $(awk '$3 ~ /^cgroup2?$/ {{print $2}}' /proc/mounts); do mount -o remount,bind,ro \"$m\"; done; \
             exec {bin} {args}"
        );
        Command::new("unshare").args(["-m", "sh", "-c", &script]).stdin(Stdio::null()).output().unwrap()
    };
    // The probe works: in the same namespace, a cgroup mount is read-only.
    let probe = read_only("run --no-cgroups -- true");
    assert!(probe.status.success(), "{}", text(&probe.stderr));
    let touch = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount --make-rprivate /; m=$(awk '$3 ~ /^cgroup2?$/ {print $2; exit}' /proc/mounts); mount -o remount,bind,ro \"$m\"; mkdir \"$m/sandpool-ro-test\""])
        .output()
        .unwrap();
    assert!(!touch.status.success() && text(&touch.stderr).contains("Read-only"), "{}", text(&touch.stderr));

    let out = read_only("run -- true");
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{said}");
    assert_eq!(said.lines().count(), 1, "one sentence: {said}");
    assert!(said.contains("read-only") && said.contains("--no-cgroups"), "{said}");
    let doctor = read_only("doctor");
    assert!(text(&doctor.stdout).contains("read-only"), "{}", text(&doctor.stdout));
}

/// Stdin never reaches the command as the host's descriptor: a file, a pipe of another
/// process, a directory all come in through a pipe of sandpool's, and their content arrives.
#[test]
fn stdin_is_always_copied_through_a_pipe_of_sandpools() {
    let fd0 = |program: &str, stdin: Stdio| -> (String, String) {
        let (program, prefix): (&str, &[&str]) = match program {
            "sandpool" => (env!("CARGO_BIN_EXE_sandpool"), &["run", "--", "sh", "-c"]),
            _ => ("sh", &["-c"]),
        };
        let out = Command::new(program)
            .args(prefix)
            .arg("readlink /proc/self/fd/0; head -c 9")
            .stdin(stdin)
            .output()
            .unwrap();
        let text = text(&out.stdout);
        let (link, rest) = text.split_once('\n').unwrap_or((&text, ""));
        (link.to_string(), rest.to_string())
    };
    let dir = common::TempDir::new("stdin");
    let file = dir.path().join("input");
    std::fs::write(&file, "from file").unwrap();
    // The probe of the check: outside, the same command sees the file itself.
    let (outside, _) = fd0("sh", Stdio::from(std::fs::File::open(&file).unwrap()));
    assert_eq!(outside, file.to_str().unwrap(), "outside, stdin is the file");
    let (inside, content) = fd0("sandpool", Stdio::from(std::fs::File::open(&file).unwrap()));
    assert!(inside.starts_with("pipe:"), "a read-only file is copied in: {inside}");
    assert_eq!(content, "from file");

    let mut producer = Command::new("echo").arg("from pipe").stdout(Stdio::piped()).spawn().unwrap();
    let (inside, content) = fd0("sandpool", Stdio::from(producer.stdout.take().unwrap()));
    producer.wait().unwrap();
    assert!(inside.starts_with("pipe:"), "another process's pipe is copied in: {inside}");
    assert_eq!(content, "from pipe");

    let (inside, _) = fd0("sandpool", Stdio::from(std::fs::File::open("/").unwrap()));
    assert!(inside.starts_with("pipe:"), "a directory is not handed in: {inside}");
}

/// A command cannot change the host's file given as `sandpool run`'s stdin, even where the
/// sandbox's user owns it (an unprivileged host's files are the sandbox's): what works on the
/// file's own description (`chmod` and `touch` through `/proc/self/fd/0`) reaches only
/// sandpool's pipe. As root, the check runs as uid 4242 on a file of its own.
#[test]
fn a_command_cannot_change_the_file_on_its_stdin() {
    use std::os::unix::fs::PermissionsExt;
    let dir = common::TempDir::new("stdin-mode");
    let uid = 4242;
    let sandpool = dir.path().join("sandpool");
    std::fs::copy(env!("CARGO_BIN_EXE_sandpool"), &sandpool).unwrap();
    common::set_mode(&sandpool, 0o755);
    let owned_file = |name: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, "data").unwrap();
        common::set_mode(&file, 0o644);
        if common::is_root() {
            std::os::unix::fs::chown(&file, Some(uid), Some(uid)).unwrap();
        }
        file
    };
    // As the file's owner: uid 4242 when we are root, else ourselves.
    let as_owner = |program: &std::path::Path, args: &[&str], stdin: &std::path::Path| {
        let mut cmd = if common::is_root() {
            let mut c = Command::new("setpriv");
            c.args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into()]).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.args(args).current_dir("/").stdin(std::fs::File::open(stdin).unwrap()).output().unwrap()
    };
    let script = "chmod 0666 /proc/self/fd/0; touch -d @0 /proc/self/fd/0; cat >/dev/null";
    // The probe of the check: the same script outside changes the file.
    let outside = owned_file("outside");
    let out = as_owner(std::path::Path::new("/bin/sh"), &["-c", script], &outside);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::metadata(&outside).unwrap().permissions().mode() & 0o7777, 0o666, "outside, it works");

    let file = owned_file("input");
    let before = std::fs::metadata(&file).unwrap();
    let out = as_owner(&sandpool, &["run", "--", "sh", "-c", script], &file);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let after = std::fs::metadata(&file).unwrap();
    assert_eq!(after.permissions().mode() & 0o7777, 0o644, "the host file's mode is unchanged");
    assert_eq!(after.modified().unwrap(), before.modified().unwrap(), "and its times");
}

/// On a hybrid host (memory and pids v1 controllers, v2 holding neither), a read-only v2
/// mount keeps nothing from working: `run` runs, with its cgroups.
#[test]
fn a_read_only_mount_that_blocks_nothing_is_no_reason_to_refuse() {
    let hybrid = std::path::Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists()
        && std::path::Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists();
    if !common::is_root() || !hybrid {
        common::skip(
            "a_read_only_mount_that_blocks_nothing_is_no_reason_to_refuse",
            "needs root on a hybrid cgroup host (v1 memory, v2 at /sys/fs/cgroup/unified)",
        );
        return;
    }
    let script = format!(
        "mount --make-rprivate / && mount -o remount,bind,ro /sys/fs/cgroup/unified && exec {} run --json -- true",
        env!("CARGO_BIN_EXE_sandpool")
    );
    let out = Command::new("unshare").args(["-m", "sh", "-c", &script]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let memory = v["isolation"]["limits"].as_array().unwrap().iter().find(|l| l["name"] == "memory").unwrap().clone();
    assert_eq!(memory["enforced_by"], "cgroup_v1", "{memory}");
}
