//! Warm runtimes: commands naming the runtime's interpreter are served by a fork of the
//! session's template, and behave as when exec'd.

use sandpool::sandbox::{Command, Output, Policy, Runtime, RuntimeStatus, Sandbox, Stdio};
use sandpool::{SandboxLease, SandboxPool};

/// Whether the sandbox's root has a `python3` (the system's, bound read-only); says why not.
fn python_present(test: &str) -> bool {
    let present = std::path::Path::new("/usr/bin/python3").exists();
    if !present {
        println!("SKIP {test}: no /usr/bin/python3 on this host");
    }
    present
}

fn runtime_policy(share_across_leases: bool) -> Policy {
    Policy::builder()
        .runtime(Runtime::python3().preload(["json"]).share_across_leases(share_across_leases))
        .build()
        .expect("policy")
}

/// The pool's counters once no reset is in flight (a lease's reset runs in the background).
fn settled(pool: &SandboxPool) -> sandpool::SandboxPoolStats {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let stats = pool.stats();
        if stats.resetting == 0 || std::time::Instant::now() > give_up {
            return stats;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn sh(sandbox: &mut impl RunsCommands, script: &str) -> Output {
    sandbox.run_command(Command::new("sh").args(["-c", script]))
}

fn run(sandbox: &mut impl RunsCommands, args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = Command::new("python3");
    cmd.args(args);
    if !stdin.is_empty() {
        cmd.stdin(Stdio::bytes(stdin.to_vec()));
    }
    sandbox.run_command(&cmd)
}

/// A sandbox, or a lease of one.
trait RunsCommands {
    fn run_command(&mut self, cmd: &Command) -> Output;
}

impl RunsCommands for Sandbox {
    fn run_command(&mut self, cmd: &Command) -> Output {
        self.run(cmd).expect("run")
    }
}

impl RunsCommands for SandboxLease {
    fn run_command(&mut self, cmd: &Command) -> Output {
        self.run(cmd).expect("run")
    }
}

/// `gc.get_freeze_count()` is 0 in a fresh interpreter and not in a served child (the
/// template freezes what it imported before it forks): what tells them apart from outside.
const SERVED_PROBE: &str = "import gc; print(gc.get_freeze_count() > 0)";

#[test]
fn served_commands_behave_as_exec_d_ones() {
    if !python_present("served_commands_behave_as_exec_d_ones") {
        return;
    }
    let mut warm = Sandbox::spawn(&runtime_policy(false)).unwrap();
    let mut plain = Sandbox::spawn(&Policy::default()).unwrap();
    assert_eq!(run(&mut warm, &["-c", SERVED_PROBE], b"").stdout, b"True\n", "the runtime serves python3 -c");
    assert_eq!(run(&mut plain, &["-c", SERVED_PROBE], b"").stdout, b"False\n", "without it, python3 is exec'd");
    let corpus: &[(&[&str], &[u8])] = &[
        (&["-c", "import json; print(json.dumps({'a': 1}))"], b""),
        (&["-c", "import sys, os; print(sys.argv, repr(sys.path[0]), sorted(globals()), os.getcwd())", "a", "b"], b""),
        (&["-c", "import sys; sys.exit(3)"], b""),
        (&["-c", "import sys; sys.exit('bye')"], b""),
        (&["-c", "1/0"], b""),
        (&["-c", "1+"], b""),
        (&["-c", "def f():\n  raise KeyError(5)\nf()"], b""),
        (&["-c", "import os; print(sorted(os.environ), os.getpid() == os.getpgid(0) == os.getsid(0))"], b""),
        (
            &[
                "-c",
                "import signal; print(signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGPIPE), signal.pthread_sigmask(0, []))",
            ],
            b"",
        ),
        (&["-c", "print(input()); print(input())"], b"one\ntwo\n"),
        (&["-c", "import atexit; atexit.register(print, 'bye'); print('hi')"], b""),
        (
            &[
                "-c",
                "import threading; said = threading.Event(); t = threading.Thread(target=lambda: (said.wait(), print('thread'))); t.start(); print('main'); said.set()",
            ],
            b"",
        ),
        (&["-c", "import subprocess; print(subprocess.run(['echo', 'sub'], capture_output=True).stdout)"], b""),
        (
            &[
                "-c",
                "import multiprocessing as m\nif __name__ == '__main__':\n  with m.Pool(2) as p: print(p.map(abs, [-1, -2]))",
            ],
            b"",
        ),
        (&["-c", "open('/tmp/f', 'w').write('x'); print(open('/tmp/f').read())"], b""),
        (&["-c", "raise KeyboardInterrupt"], b""),
        (&["-c", "import sys; print(sys.flags, sys.executable, sys.orig_argv)"], b""),
        (
            &["-c", "print(open('/proc/self/cmdline', 'rb').read(), open('/proc/self/environ', 'rb').read())", "x y"],
            b"",
        ),
        (
            &[
                "-c",
                "import signal, os\nsignal.signal(signal.SIGUSR1, lambda *a: print('handled'))\nos.kill(os.getpid(), signal.SIGUSR1)\nos.kill(os.getpid(), signal.SIGINT)",
            ],
            b"",
        ),
        (&["-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"], b""),
        (&["-c", "import sys; print(len(sys.argv), sys.argv[1:])", "", "-c", "--x"], b""),
        (
            &[
                "-c",
                "import csv, io, re, collections, itertools, hashlib, base64, datetime, decimal, fractions, statistics, textwrap, string, struct, zlib\nprint(hashlib.sha256(b'x').hexdigest()[:8], statistics.mean([1, 2, 3]), decimal.Decimal('1.1') + 1)",
            ],
            b"",
        ),
        (
            &[
                "-c",
                "import tempfile, os\nwith tempfile.TemporaryDirectory() as d:\n  open(os.path.join(d, 'f'), 'w').write('x')\n  print(os.listdir(d))",
            ],
            b"",
        ),
        (&["-c", "import sys; sys.stdout.write('no newline'); sys.stderr.write('err')"], b""),
        (&["-c", "import sys; sys.stdout.close()"], b""),
        (
            &[
                "-c",
                "import sys; print(sys.stdin.isatty(), sys.stdout.isatty(), sys.stdin.encoding, sys.stdout.encoding, sys.stdout.line_buffering)",
            ],
            b"",
        ),
        (&["-c", "import os; print(os.getppid() > 0, os.getuid(), os.getgid(), os.umask(0o22))"], b""),
        (&["-m", "json.tool"], b"{\"k\": [1, 2]}"),
        (&["-m", "nosuchmodule"], b""),
        (&["/tmp/nope.py"], b""),
        (&[], b"import sys\nprint('from stdin', sys.argv)\n"),
        (&["-", "q"], b"import sys\nprint('from stdin', sys.argv)\n"),
    ];
    for (args, stdin) in corpus {
        let served = run(&mut warm, args, stdin);
        let execd = run(&mut plain, args, stdin);
        assert_same(&served, &execd, &format!("python3 {args:?}"));
    }
    // Environments: added, removed, reordered (served, the environment set); without the
    // variables Python reads at start as the template had them (declined: exec'd). The
    // program shows both `os.environ` and the C environment a child inherits.
    let show_environment = "import os, subprocess\nprint(sorted(os.environ.items()))\nprint(subprocess.run(['env'], capture_output=True).stdout.decode())";
    let environments: [(&str, SetEnvironment); 6] = [
        ("one added", |c| {
            c.env("FOO", "bar");
        }),
        ("one removed", |c| {
            c.env_remove("TMPDIR");
        }),
        ("one set again", |c| {
            c.env("TMPDIR", "/tmp");
        }),
        ("all but one, in another order", |c| {
            c.env_clear().env("LANG", "C.UTF-8").env("HOME", "/tmp").env("PATH", sandpool::sandbox::DEFAULT_PATH);
        }),
        ("none", |c| {
            c.env_clear();
        }),
        ("another locale", |c| {
            c.env("LANG", "C");
        }),
    ];
    for (what, set) in environments {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", show_environment]);
        set(&mut cmd);
        let (served, execd) = (warm.run(&cmd).expect("run"), plain.run(&cmd).expect("run"));
        assert_same(&served, &execd, &format!("environment: {what}"));
    }
}

/// A change to a command's environment.
type SetEnvironment = fn(&mut Command);

/// Asserts two runs ended alike and wrote the same.
fn assert_same(served: &Output, execd: &Output, what: &str) {
    assert_eq!(
        (
            served.status.code(),
            served.status.signal(),
            String::from_utf8_lossy(&served.stdout),
            String::from_utf8_lossy(&served.stderr)
        ),
        (
            execd.status.code(),
            execd.status.signal(),
            String::from_utf8_lossy(&execd.stdout),
            String::from_utf8_lossy(&execd.stderr)
        ),
        "{what}"
    );
}

#[test]
fn commands_cannot_reach_the_template() {
    if !python_present("commands_cannot_reach_the_template") {
        return;
    }
    let mut sandbox = Sandbox::spawn(&runtime_policy(false)).unwrap();
    assert_eq!(run(&mut sandbox, &["-c", SERVED_PROBE], b"").stdout, b"True\n", "the template serves");
    // The probes work: a command signals, renices, limits and reads /proc of a process of
    // its own.
    let own = sh(
        &mut sandbox,
        "sleep 5 & p=$!; kill -0 $p && test -r /proc/$p/status && renice -n 5 -p $p >/dev/null && prlimit --pid $p --nofile=100 && kill $p && echo ok",
    );
    assert_eq!(own.stdout, b"ok\n", "{own:?}");
    // The template, pid 2 (it exists: a signal to it is refused, not missing its target): no
    // signal, no priority, no limit, no /proc entry.
    for probe in ["kill -0 2", "kill -STOP 2", "kill -0 -2", "renice -n 5 -p 2", "prlimit --pid 2 --nofile=1"] {
        let out = sh(&mut sandbox, probe);
        let said = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(
            !out.status.success() && (said.contains("not permitted") || said.contains("permission denied")),
            "{probe} reached the template: {out:?}"
        );
    }
    let proc_entry = sh(&mut sandbox, "cat /proc/2/status");
    assert!(!proc_entry.status.success() && proc_entry.stdout.is_empty(), "{proc_entry:?}");
    assert_eq!(run(&mut sandbox, &["-c", SERVED_PROBE], b"").stdout, b"True\n", "the template still serves");
}

#[test]
fn a_killed_template_is_seen_and_commands_run_exec_d() {
    if !python_present("a_killed_template_is_seen_and_commands_run_exec_d") {
        return;
    }
    let pool = SandboxPool::builder(runtime_policy(true)).max_size(1).min_idle(0).build().unwrap();
    let mut lease = pool.acquire().unwrap();
    assert_eq!(run(&mut lease, &["-c", SERVED_PROBE], b"").stdout, b"True\n");
    // A served command runs while a signal to every process the command may signal reaches
    // the template and it: its end is still reported (by the template, or by the spawner once
    // it inherits it).
    let mut running = lease
        .start(
            Command::new("python3")
                .args([
                    "-c",
                    "import gc, time; assert gc.get_freeze_count() > 0; print('ready', flush=True); time.sleep(30)",
                ])
                .stdout(Stdio::piped()),
        )
        .expect("start a served command");
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(running.stdout.take().unwrap()), &mut ready).unwrap();
    assert_eq!(ready, "ready\n", "the served command runs");
    let killed = sh(&mut lease, "kill -9 -1; true");
    assert!(killed.status.success(), "{killed:?}");
    let end = running.wait().expect("the served command's end");
    assert_eq!(end.status.signal(), Some(libc::SIGKILL), "{end:?}");
    let after = run(&mut lease, &["-c", "import json, gc; print(json.dumps([gc.get_freeze_count() > 0]))"], b"");
    assert_eq!(after.stdout, b"[false]\n", "exec'd once the template is gone: {after:?}");
    drop(lease);
    let stats = settled(&pool);
    assert_eq!(
        (stats.resets, stats.resets_skipped),
        (1, 0),
        "a session without its template is not handed on: {stats:?}"
    );
    let mut lease = pool.acquire().unwrap();
    assert_eq!(run(&mut lease, &["-c", SERVED_PROBE], b"").stdout, b"True\n", "the next lease has a new template");
}

#[test]
fn a_stopped_template_is_killed_and_commands_run_exec_d() {
    if !python_present("a_stopped_template_is_killed_and_commands_run_exec_d") {
        return;
    }
    let mut sandbox = Sandbox::spawn(&runtime_policy(false)).unwrap();
    assert_eq!(run(&mut sandbox, &["-c", SERVED_PROBE], b"").stdout, b"True\n", "the template serves");
    // `getsid` is no call the guard refuses: it tells whether pid 2 exists (a session leader).
    let template_session = ["-c", "import os\ntry: print(os.getsid(2))\nexcept ProcessLookupError: print('gone')"];
    assert_eq!(run(&mut sandbox, &template_session, b"").stdout, b"2\n", "the probe sees the template");
    let stopped = sh(&mut sandbox, "kill -STOP -1; true");
    assert!(stopped.status.success(), "{stopped:?}");
    // The spawner sees the template stopped, kills it, and execs the command.
    let after = run(&mut sandbox, &["-c", SERVED_PROBE], b"");
    assert_eq!(after.stdout, b"False\n", "exec'd once the template is stopped: {after:?}");
    assert_eq!(run(&mut sandbox, &template_session, b"").stdout, b"gone\n", "the stopped template is killed, not kept");
}

/// A script that signals every pid from 3 to 64 but its own and prints those it reached: the
/// child a template forked ahead is the only other process of a session between commands
/// (the template, pid 2, refuses every signal).
fn signal_every_other_process(signal: &str) -> String {
    format!("for p in $(seq 3 64); do if [ $p != $$ ] && kill -{signal} $p 2>/dev/null; then echo $p; fi; done")
}

#[test]
fn a_child_is_forked_ahead_only_where_the_session_is_never_handed_on() {
    if !python_present("a_child_is_forked_ahead_only_where_the_session_is_never_handed_on") {
        return;
    }
    for (share, expected) in [(false, 1), (true, 0)] {
        let mut sandbox = Sandbox::spawn(&runtime_policy(share)).unwrap();
        assert_eq!(run(&mut sandbox, &["-c", SERVED_PROBE], b"").stdout, b"True\n", "the template serves");
        let found = sh(&mut sandbox, &signal_every_other_process("0"));
        assert_eq!(
            String::from_utf8_lossy(&found.stdout).lines().count(),
            expected,
            "share_across_leases({share}): processes other than the command: {found:?}"
        );
    }
}

#[test]
fn signals_sent_to_the_child_forked_ahead_do_not_reach_its_command() {
    if !python_present("signals_sent_to_the_child_forked_ahead_do_not_reach_its_command") {
        return;
    }
    let mut sandbox = Sandbox::spawn(&runtime_policy(false)).unwrap();
    assert_eq!(run(&mut sandbox, &["-c", SERVED_PROBE], b"").stdout, b"True\n", "the template serves");
    // The signal reaches the waiting child (blocked there, so pending)...
    let reached = sh(&mut sandbox, &signal_every_other_process("USR1"));
    let reached = String::from_utf8_lossy(&reached.stdout).trim().to_string();
    assert!(reached.parse::<i32>().is_ok(), "one process reached: {reached:?}");
    // ... which becomes the next command, and starts with none pending, as an exec'd one.
    let next = run(&mut sandbox, &["-c", "import gc, os; print(gc.get_freeze_count() > 0, os.getpid())"], b"");
    assert_eq!(
        (next.status.code(), String::from_utf8_lossy(&next.stdout).trim()),
        (Some(0), format!("True {reached}").as_str()),
        "{next:?}"
    );
}

#[test]
fn a_lease_that_used_the_template_gets_a_new_one_unless_shared() {
    if !python_present("a_lease_that_used_the_template_gets_a_new_one_unless_shared") {
        return;
    }
    for share in [false, true] {
        let pool = SandboxPool::builder(runtime_policy(share)).max_size(1).min_idle(0).build().unwrap();
        for _ in 0..3 {
            let mut lease = pool.acquire().unwrap();
            let out = run(&mut lease, &["-c", "import gc; print(gc.get_freeze_count() > 0)"], b"");
            assert_eq!(out.stdout, b"True\n", "{out:?}");
        }
        let stats = settled(&pool);
        let expected = if share { (0, 3) } else { (3, 0) };
        assert_eq!((stats.resets, stats.resets_skipped), expected, "share_across_leases({share}): {stats:?}");
    }
}

#[test]
fn a_template_that_cannot_start_says_why_and_commands_are_exec_d() {
    if !python_present("a_template_that_cannot_start_says_why_and_commands_are_exec_d") {
        return;
    }
    let ok = Sandbox::spawn(&runtime_policy(false)).unwrap();
    assert_eq!(ok.runtime_status(), Some(&RuntimeStatus::Ready));
    assert_eq!(Sandbox::spawn(&Policy::default()).unwrap().runtime_status(), None);
    let with = |runtime: Runtime| Policy::builder().runtime(runtime).build().unwrap();
    let without_filter =
        Policy::builder().seccomp(sandpool::sandbox::Requirement::Off).runtime(Runtime::python3()).build().unwrap();
    for (policy, expected) in [
        (with(Runtime::python3().preload(["json", "no_such_module_here"])), "no_such_module_here"),
        (with(Runtime::python3().interpreter("/usr/bin/no-such-python")), "Exec"),
        (without_filter, "seccomp"),
    ] {
        let pool = SandboxPool::builder(policy).max_size(1).build().unwrap();
        let mut lease = pool.acquire().unwrap();
        match lease.runtime_status() {
            Some(RuntimeStatus::Failed { reason }) => assert!(reason.contains(expected), "{reason}"),
            other => panic!("expected a failure naming {expected}: {other:?}"),
        }
        let out = run(&mut lease, &["-c", "import gc, json; print(json.dumps(gc.get_freeze_count()))"], b"");
        assert_eq!(out.stdout, b"0\n", "exec'd: {out:?}");
        drop(lease);
        // A session without its template is an ordinary one: an untouched lease is handed on.
        let stats = settled(&pool);
        assert_eq!((stats.resets, stats.resets_skipped), (0, 1), "{stats:?}");
    }
}

#[test]
fn served_commands_keep_the_command_s_limits() {
    if !python_present("served_commands_keep_the_command_s_limits") {
        return;
    }
    let mut sandbox = Sandbox::spawn(&runtime_policy(false)).unwrap();
    let served = |sandbox: &mut Sandbox, code: &str, timeout_ms: u64, cap: usize| {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", &format!("import gc; assert gc.get_freeze_count() > 0, 'exec d'\n{code}")])
            .timeout(std::time::Duration::from_millis(timeout_ms))
            .output_limit(cap);
        sandbox.run(&cmd).expect("run")
    };
    // The timeout kills the command's process group: the served child and what it started.
    let slow = served(
        &mut sandbox,
        "import subprocess, time\nsubprocess.Popen(['sleep', '30'])\ntime.sleep(30)",
        500,
        1 << 20,
    );
    assert!(slow.timed_out && !slow.success(), "{slow:?}");
    let count_sleeps = "for p in /proc/[0-9]*; do cat $p/comm 2>/dev/null; done | grep -c '^sleep$' || true";
    let probe = sh(&mut sandbox, &format!("sleep 30 & {count_sleeps}; kill $!"));
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "1", "the probe sees a sleep: {probe:?}");
    let left = sh(&mut sandbox, count_sleeps);
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "0", "the timeout left a process: {left:?}");
    // The output cap.
    let loud = served(&mut sandbox, "import sys\nwhile True: sys.stdout.write('x' * 4096)", 10_000, 10_000);
    assert!(loud.stdout_truncated && loud.stdout.len() <= 10_000, "{:?}", (loud.status, loud.stdout.len()));
    // Its own CPU time and memory, as its parent's wait4 saw them.
    let busy = served(&mut sandbox, "x = 0\nfor i in range(3_000_000): x += i\nprint(x)", 30_000, 1 << 20);
    assert!(busy.success(), "{busy:?}");
    assert!(!busy.usage.user_time.is_zero(), "{:?}", busy.usage);
    assert!(busy.usage.max_rss_kib > 1024, "{:?}", busy.usage);
    // A working directory it cannot enter: it does not start, as an exec'd one.
    let mut nowhere = Command::new("python3");
    nowhere.args(["-c", "print(1)"]).current_dir("/tmp/no-such-dir");
    let served_error = sandbox.run(&nowhere).expect_err("no such directory").to_string();
    let execd_error =
        Sandbox::spawn(&Policy::default()).unwrap().run(&nowhere).expect_err("no such directory").to_string();
    assert_eq!(served_error, execd_error);
    assert!(served_error.contains("working directory"), "{served_error}");
    assert_eq!(run(&mut sandbox, &["-c", "import gc; print(gc.get_freeze_count() > 0)"], b"").stdout, b"True\n");
    // The policy's CPU limit (RLIMIT_CPU), its own from the fork on.
    let policy = Policy::builder()
        .cpu_time(Some(std::time::Duration::from_secs(7)))
        .runtime(Runtime::python3())
        .build()
        .unwrap();
    let mut limited = Sandbox::spawn(&policy).unwrap();
    let limit = run(
        &mut limited,
        &["-c", "import gc, resource; print(gc.get_freeze_count() > 0, resource.getrlimit(resource.RLIMIT_CPU))"],
        b"",
    );
    assert_eq!(limit.stdout, b"True (7, 8)\n", "{limit:?}");
}

#[test]
fn served_commands_do_not_share_state_but_what_is_documented() {
    if !python_present("served_commands_do_not_share_state_but_what_is_documented") {
        return;
    }
    let mut sandbox = Sandbox::spawn(&runtime_policy(false)).unwrap();
    let twice = |sandbox: &mut Sandbox, code: &str| {
        let a = run(sandbox, &["-c", &format!("import gc; assert gc.get_freeze_count() > 0\n{code}")], b"");
        let b = run(sandbox, &["-c", &format!("import gc; assert gc.get_freeze_count() > 0\n{code}")], b"");
        assert!(a.success() && b.success(), "{a:?} {b:?}");
        (a.stdout, b.stdout)
    };
    // Random generators are seeded afresh in each child.
    let (a, b) = twice(&mut sandbox, "import random, os; print(random.random(), os.urandom(8).hex())");
    assert_ne!(a, b, "two served children drew the same numbers");
    // What one run does to the interpreter's state does not reach the next.
    let (a, b) = twice(
        &mut sandbox,
        "import json, sys\nprint(hasattr(json, 'mark'), 'x' in sys.modules)\njson.mark = 1\nsys.modules['x'] = json",
    );
    assert_eq!((a.as_slice(), b.as_slice()), (&b"False False\n"[..], &b"False False\n"[..]));
    // The string-hash secret is the template's: shared by its children (documented in
    // Isolation::runtime), unlike two exec'd interpreters'.
    let (a, b) = twice(&mut sandbox, "print(hash('sandpool'))");
    assert_eq!(a, b, "served children of one template share its hash secret");
    let shared = &sandbox.isolation().runtime.as_ref().expect("a runtime").served_commands_share;
    assert!(shared.iter().any(|s| s.contains("hash")), "{shared:?}");
}

#[test]
fn a_served_server_answers_the_next_command() {
    if !python_present("a_served_server_answers_the_next_command") {
        return;
    }
    let mut sandbox = Sandbox::spawn(&runtime_policy(false)).unwrap();
    let server = sandbox
        .start(Command::new("python3").args(["-m", "http.server", "8765"]).stdout(Stdio::null()).stderr(Stdio::null()))
        .expect("start the server");
    let client = "import time, urllib.request, gc\nfor _ in range(100):\n  try:\n    print(urllib.request.urlopen('http://127.0.0.1:8765/').status, gc.get_freeze_count() > 0); break\n  except OSError: time.sleep(0.05)";
    let out = run(&mut sandbox, &["-c", client], b"");
    assert_eq!(out.stdout, b"200 True\n", "{out:?}");
    server.killer().kill().unwrap();
}

/// A served command that searches its own memory (all of it a copy of the template's) for a
/// string: how many places hold it, outside the needle the search itself built. The needle is
/// made from two halves at run time, so the program's text holds neither it nor the string.
fn search_own_memory(halves: [&str; 2]) -> String {
    format!(
        r#"
import ctypes, gc
assert gc.get_freeze_count() > 0
needle = bytearray({a:?}.encode()); needle += {b:?}.encode()
own = ctypes.addressof((ctypes.c_char * len(needle)).from_buffer(needle))
hits = 0
with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", buffering=0) as mem:
    for line in maps.read().splitlines():
        span, perms = line.split()[:2]
        if not perms.startswith("r") or line.endswith(("[vvar]", "[vsyscall]", "[vvar_vclock]")):
            continue
        start, end = (int(x, 16) for x in span.split("-"))
        try:
            mem.seek(start)
            chunk = mem.read(end - start)
        except OSError:
            continue
        at = chunk.find(needle)
        while at >= 0:
            if start + at != own:
                hits += 1
            at = chunk.find(needle, at + 1)
print(hits > 0)
"#,
        a = halves[0],
        b = halves[1],
    )
}

#[test]
fn a_command_s_arguments_and_environment_do_not_reach_a_later_served_command() {
    if !python_present("a_command_s_arguments_and_environment_do_not_reach_a_later_served_command") {
        return;
    }
    // Shared across leases: the case where a later command is another tenant's; and the
    // next command of the same lease, served by a child forked ahead (where not shared).
    for share in [true, false] {
        let pool = SandboxPool::builder(runtime_policy(share)).max_size(1).build().unwrap();
        let secret = ["sandpool-secret-", "4f2c9a71e08d"];
        let mut first = pool.acquire().unwrap();
        let mut cmd = Command::new("python3");
        // Longer than the requests after it, so that nothing of theirs would cover it.
        let padded = format!("{}{}", "x".repeat(8000), secret.concat());
        cmd.args(["-c", "import gc; print(gc.get_freeze_count() > 0)", &padded]).env("API_KEY", &padded);
        assert_eq!(first.run(&cmd).unwrap().stdout, b"True\n");
        let mut next = if share {
            drop(first);
            pool.acquire().unwrap()
        } else {
            first
        };
        // The probe finds what is in its own memory: its own environment.
        let own = ["sandpool-own-", "77e1b05c3d"];
        let mut probe = Command::new("python3");
        probe.args(["-c", &search_own_memory(own)]).env("MINE", own.concat());
        let found = next.run(&probe).unwrap();
        assert_eq!(found.stdout, b"True\n", "the probe works: {found:?}");
        // And not the first command's arguments or environment.
        let mut probe = Command::new("python3");
        probe.args(["-c", &search_own_memory(secret)]);
        let found = next.run(&probe).unwrap();
        assert_eq!(
            found.stdout, b"False\n",
            "share {share}: the first command's secret is in a later one's memory: {found:?}"
        );
        drop(next);
        if share {
            assert_eq!(settled(&pool).resets, 0, "one template served both leases");
        }
    }
}
