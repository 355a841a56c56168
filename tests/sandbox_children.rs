//! Live processes: a [`Child`] whose streams are read and written as it runs, several children
//! in one session, kills from another thread, timeouts and output caps on streams, and a
//! session's processes living exactly as long as the session.
//!
//! Streaming is proven by ordering, never by timing: a command that prints a line and then
//! waits for a line on stdin gets its answer only if its output reaches the host before it
//! ends. A buffered implementation deadlocks there; a watchdog kills the command after a
//! generous bound so that such a failure fails the test instead of hanging it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use common::*;
use sandpool::SandboxPool;
use sandpool::sandbox::{Child, Command, ExitStatus, KillReason, Sandbox, SandboxError, Stdio};

fn start(sandbox: &Sandbox, cmd: &mut Command) -> Child {
    sandbox.start(cmd.timeout(Duration::from_secs(120))).unwrap()
}

#[test]
fn a_command_gets_its_answer_to_what_it_printed() {
    let sb = Sandbox::spawn(&default_policy()).unwrap();
    let script = "echo question; read answer; echo \"got $answer\"; read again; echo \"and $again\"";
    let mut child = start(&sb, Command::new("/bin/sh").args(["-c", script]).stdin(Stdio::piped()));
    let dog = Watchdog::new(child.killer());
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "question", "printed before it reads: streamed");
    stdin.write_all(b"forty-two\n").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "got forty-two");
    stdin.write_all(b"more\n").unwrap();
    drop(stdin);
    assert_eq!(lines.next().unwrap().unwrap(), "and more");
    assert!(lines.next().is_none(), "then the stream ends");
    let exit = child.wait().unwrap();
    dog.finish();
    assert!(exit.success() && exit.code() == Some(0) && exit.killed_by_sandbox.is_none(), "{exit:?}");
}

#[test]
fn stdin_streams_without_being_read_to_its_end_first() {
    // `head -n1` ends after one line while stdin stays open: a host that buffered stdin to
    // its end first would never start it.
    let sb = Sandbox::spawn(&default_policy()).unwrap();
    let mut child = start(&sb, Command::new("head").arg("-n1").stdin(Stdio::piped()));
    let dog = Watchdog::new(child.killer());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"first\nsecond\n").unwrap();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(out, "first\n");
    let exit = child.wait().unwrap();
    dog.finish();
    assert!(exit.success());
    drop(stdin);
}

#[test]
fn two_children_of_one_session_talk_while_both_run() {
    let mut sb = Sandbox::spawn(&default_policy()).unwrap();
    assert!(sh(&mut sb, "mkfifo /tmp/pipe").success());
    // The reader blocks on the FIFO until the writer, started after it, opens it.
    let mut reader = start(&sb, Command::new("cat").arg("/tmp/pipe"));
    let dog = Watchdog::new(reader.killer());
    assert!(reader.try_wait().unwrap().is_none(), "the reader waits for a writer");
    let mut writer = start(&sb, Command::new("/bin/sh").args(["-c", "echo through the fifo > /tmp/pipe"]));
    assert_ne!(reader.id(), writer.id());
    let mut out = String::new();
    reader.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(out, "through the fifo\n");
    assert!(writer.wait().unwrap().success());
    assert!(reader.wait().unwrap().success());
    dog.finish();
}

#[test]
fn a_child_is_killed_from_another_thread() {
    let sb = Sandbox::spawn(&default_policy()).unwrap();
    let mut child = start(&sb, Command::new("/bin/sh").args(["-c", "sleep 1000 & echo started; sleep 1000"]));
    // Ordered by the line, not by time: the background sleep is forked before it is printed.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "started");
    assert!(child.try_wait().unwrap().is_none(), "it runs");
    assert!(session_processes(&sb) >= 2, "the probe sees the command and its background sleep");
    let killer = child.killer();
    std::thread::spawn(move || killer.kill().unwrap()).join().unwrap();
    let exit = child.wait().unwrap();
    assert_eq!(exit.status, ExitStatus::Signaled(libc::SIGKILL));
    assert_eq!(exit.killed_by_sandbox, None, "killed by the caller, not the sandbox");
    assert_eq!(session_processes(&sb), 0, "its whole process group went with it");
}

#[test]
fn a_signal_reaches_the_command_and_its_group() {
    let sb = Sandbox::spawn(&default_policy()).unwrap();
    let mut child = start(
        &sb,
        Command::new("/bin/sh")
            .args(["-c", "trap 'echo got INT; exit 3' INT; echo ready; while :; do sleep 0.05; done"]),
    );
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready", "the trap is set");
    child.signal(libc::SIGINT).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "got INT");
    assert_eq!(child.wait().unwrap().code(), Some(3));
}

#[test]
fn a_childs_timeout_kills_it_and_says_so() {
    let sb = Sandbox::spawn(&default_policy()).unwrap();
    let mut child = sb.start(Command::new("sleep").arg("1000").timeout(Duration::from_millis(300))).unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.timed_out(), "{exit:?}");
    assert_eq!(exit.status, ExitStatus::Signaled(libc::SIGKILL));
    // A command that ends in time is not marked.
    let mut quick = sb.start(Command::new("true").timeout(Duration::from_secs(30))).unwrap();
    assert!(!quick.wait().unwrap().timed_out());
}

#[test]
fn a_streamed_output_ends_at_the_cap_and_the_exit_says_it_was_cut() {
    let sb = Sandbox::spawn(&default_policy()).unwrap();
    let cap = 64 * 1024;
    let mut child = start(&sb, Command::new("yes").output_limit(cap));
    let mut stdout = child.stdout.take().unwrap();
    let mut got = Vec::new();
    stdout.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), cap, "the reader sees the stream end at the cap");
    assert!(stdout.truncated());
    let exit = child.wait().unwrap();
    assert_eq!(exit.killed_by_sandbox, Some(KillReason::OutputLimit), "{exit:?}");
    // Exactly the cap is not past it.
    let mut exact = start(&sb, Command::new("head").args(["-c", &cap.to_string(), "/dev/zero"]).output_limit(cap));
    let mut stdout = exact.stdout.take().unwrap();
    let mut got = Vec::new();
    stdout.read_to_end(&mut got).unwrap();
    assert_eq!((got.len(), stdout.truncated()), (cap, false));
    assert_eq!(exact.wait().unwrap().killed_by_sandbox, None);
}

#[test]
fn a_callers_descriptor_is_the_commands_stdout() {
    let dir = TempDir::new("children-fd");
    let path = dir.path().join("out");
    let file = std::fs::File::create(&path).unwrap();
    let sb = Sandbox::spawn(&default_policy()).unwrap();
    let mut child = start(&sb, Command::new("echo").arg("into the caller's file").stdout(file));
    assert!(child.stdout.is_none(), "not piped: nothing to read on the host");
    assert!(child.wait().unwrap().success());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "into the caller's file\n");
}

#[test]
fn a_reset_ends_the_sessions_children() {
    let mut sb = Sandbox::spawn(&default_policy()).unwrap();
    let mut child = start(&sb, Command::new("sleep").arg("1000"));
    assert!(child.try_wait().unwrap().is_none());
    sb.reset().unwrap();
    assert!(matches!(child.wait(), Err(SandboxError::SessionEnded)));
    assert!(sh(&mut sb, "true").success(), "the sandbox itself goes on");
}

#[test]
fn a_background_process_lives_through_the_lease_and_not_into_the_next() {
    let pool = SandboxPool::builder(default_policy()).max_size(1).min_idle(0).build().unwrap();
    let mut lease = pool.acquire().unwrap();
    let started = lease.run(Command::new("/bin/sh").args(["-c", "sleep 1000 > /dev/null 2>&1 & echo $!"])).unwrap();
    let pid = String::from_utf8(started.stdout).unwrap().trim().to_string();
    assert!(!pid.is_empty());
    let mut alive = Command::new("kill");
    alive.args(["-0", &pid]);
    assert!(lease.run(&alive).unwrap().success(), "the next command of the lease sees it running");
    drop(lease);
    let mut next = pool.acquire().unwrap();
    let out = next
        .run(
            Command::new("/bin/sh")
                .args(["-c", &format!("kill -0 {pid} 2>/dev/null; echo $?; ls /proc | grep -c '^[0-9]'")]),
        )
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("1"), "the next lease finds no such process");
    // Its own sh and ls (and the grep) are all it sees.
    assert!(lines.next().unwrap().parse::<u32>().unwrap() <= 3, "{text}");
}

#[test]
fn a_dropped_child_runs_to_its_end_and_leaves_the_session_clean() {
    let mut sb = Sandbox::spawn(&default_policy()).unwrap();
    // Its handle goes at once: its end is reported to no one (the spawner writes to a pipe
    // the host closed, and must not keep the SIGPIPE that brings).
    let child = start(&sb, Command::new("sleep").arg("0.2"));
    let pid = child.id();
    drop(child);
    assert!(!sb.is_clean(), "a command ran");
    // A command that waits for its end (the spawner reaps it at once) and changes nothing
    // finds the session as fresh as it started: nothing left running, the spawner's settings
    // (pending signals among them) as they were.
    assert!(sh(&mut sb, &format!("while kill -0 {pid} 2>/dev/null; do sleep 0.05; done")).success());
    assert!(sb.is_clean(), "the session counts as untouched once the dropped command has ended");
}

#[test]
fn a_cleared_environment_reaches_the_command_as_set() {
    let mut sb = Sandbox::spawn(&default_policy()).unwrap();
    let out = sb.run(Command::new("env").env_clear().envs([("ONLY", "this")])).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "ONLY=this\n", "found without PATH, through the default");
    let out = sb.run(Command::new("env").env_remove("HOME").current_dir("/")).unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("PATH=") && !text.contains("HOME="), "{text}");
}

/// A session of an agent platform: one command starts a server in the background, the next
/// command of the same lease is its client and gets an answer; the next lease finds neither
/// the server nor a trace of it.
#[test]
fn a_server_started_in_one_command_answers_the_next_and_not_the_next_lease() {
    if !std::path::Path::new("/usr/bin/python3").exists() {
        skip("a_server_started_in_one_command_answers_the_next_and_not_the_next_lease", "no /usr/bin/python3");
        return;
    }
    let server = "import socket\n\
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
        s.bind(('127.0.0.1', 7000)); s.listen()\n\
        open('/tmp/ready', 'w').close()\n\
        while True:\n    c, _ = s.accept(); c.sendall(b'hello from the server'); c.close()\n";
    let client = "while [ ! -e /tmp/ready ]; do sleep 0.05; done; python3 -c \"import socket\n\
        try:\n    print(socket.create_connection(('127.0.0.1', 7000)).recv(100).decode())\n\
        except OSError as e:\n    print('no server:', e.errno)\"";
    let pool = SandboxPool::builder(default_policy()).max_size(1).min_idle(0).build().unwrap();
    let mut lease = pool.acquire().unwrap();
    let mut serve = Command::new("python3");
    serve.args(["-c", server]).stdout(Stdio::null()).stderr(Stdio::null());
    let server_child = lease.start(&serve).unwrap();
    drop(server_child); // it runs on in the session
    let asked = lease.run(Command::new("/bin/sh").args(["-c", client]).timeout(Duration::from_secs(60))).unwrap();
    assert_eq!(String::from_utf8_lossy(&asked.stdout), "hello from the server\n", "{asked:?}");
    drop(lease);

    let mut next = pool.acquire().unwrap();
    let probe = "test -e /tmp/ready && echo ready-file; python3 -c \"import socket\n\
        try:\n    socket.create_connection(('127.0.0.1', 7000)); print('connected')\n\
        except OSError as e:\n    print('no server:', e.errno)\"";
    let out = next.run(Command::new("/bin/sh").args(["-c", probe])).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("no server: {}\n", libc::ECONNREFUSED), "{out:?}");
}

/// A verdict of "untouched" that the spawner made before another command of the session
/// reached it says nothing of that command: the session stays unclean, and the next lease
/// gets a reset. (The pause lets the first command's verdict come first; on a slower machine
/// the verdict may see the second command anyway, which makes the test weaker, never wrong.)
#[test]
fn a_verdict_does_not_cover_a_command_sent_after_it() {
    let pool = SandboxPool::builder(default_policy()).max_size(1).min_idle(0).build().unwrap();
    let lease = pool.acquire().unwrap();
    let mut first = lease.start(&Command::new("true")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut second = lease.start(Command::new("/bin/sh").args(["-c", "echo left > /tmp/left; sleep 1000"])).unwrap();
    assert!(first.wait().unwrap().success());
    assert!(!lease.is_clean(), "a command is still running");
    second.kill().unwrap();
    let _ = second.wait().unwrap();
    drop(lease);
    let mut next = pool.acquire().unwrap();
    let out = next.run(Command::new("ls").arg("/tmp")).unwrap();
    assert!(out.stdout.is_empty(), "{out:?}");
}

/// `start` returns without waiting to hear the command started; a command that cannot start
/// says so from its wait, typed, and has no pid.
#[test]
fn a_command_that_cannot_start_says_so_from_its_wait() {
    let sb = Sandbox::spawn(&default_policy()).unwrap();
    let mut missing = sb.start(&Command::new("no-such-program-anywhere")).unwrap();
    assert_eq!(missing.id(), 0);
    assert!(matches!(missing.wait(), Err(SandboxError::ProgramNotFound { .. })), "not found");
    let mut not_executable = sb.start(&Command::new("/etc/hostname")).unwrap();
    assert!(matches!(not_executable.wait(), Err(SandboxError::Exec { .. })), "not executable");
    // The probe can fail: a command that starts has its pid (the session's first is 2).
    let mut fine = sb.start(&Command::new("true")).unwrap();
    assert!(fine.id() >= 2);
    assert!(fine.wait().unwrap().success());
}

/// A command's usage: `wait4`'s figures always, and the sandbox's from its cgroup where it
/// has one that keeps them, each saying where it comes from.
#[test]
fn a_commands_usage_says_where_it_comes_from() {
    use sandpool::sandbox::{Enforcement, UsageSource};
    let mut sb = Sandbox::spawn(&default_policy()).unwrap();
    let out = sb
        .run(Command::new("/bin/sh").args([
            "-c",
            "dd if=/dev/zero of=/dev/null bs=32M count=1 2>/dev/null; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done",
        ]))
        .unwrap();
    assert!(out.success(), "{out:?}");
    let (peak, peak_from) = out.usage.peak_memory();
    assert!(peak >= 32 << 20, "dd's 32 MiB buffer shows: {:?}", out.usage);
    let memory_cgroup = sb.isolation().limit("memory").map(|l| l.enforced_by);
    let v2 = memory_cgroup == Some(Enforcement::CgroupV2);
    // A peak per command needs a memory.peak that resets per descriptor (6.12+).
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut version = release.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u32>().unwrap_or(0));
    let resettable_peak = (version.next().unwrap(), version.next().unwrap()) >= (6, 12);
    let expected = if v2 && resettable_peak { UsageSource::Cgroup } else { UsageSource::Wait4 };
    assert_eq!(peak_from, expected, "{:?}", out.usage);
    // The next command's peak is its own: nothing of the 32 MiB before it, which a lifetime
    // peak would carry on into later commands and later leases.
    let quiet = sb.run(&Command::new("true")).unwrap();
    let (quiet_peak, quiet_from) = quiet.usage.peak_memory();
    assert_eq!(quiet_from, expected);
    assert!(quiet_peak < 32 << 20, "{:?}", quiet.usage);
    let (cpu, cpu_from) = out.usage.cpu_time();
    assert!(cpu > Duration::ZERO, "{:?}", out.usage);
    assert_eq!(cpu_from, if v2 { UsageSource::Cgroup } else { UsageSource::Wait4 }, "{:?}", out.usage);
    if v2 {
        // The sandbox's CPU time covers the command's own.
        assert!(cpu >= (out.usage.user_time + out.usage.system_time) / 2, "{:?}", out.usage);
    }
}
