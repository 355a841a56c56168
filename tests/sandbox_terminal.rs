//! Commands on a terminal of their own ([`Command::pty`]): the terminal is the command's
//! (`isatty`, its size, Ctrl-C, its exit status), the output cap and the timeout hold on it,
//! and nothing of it reaches the next lease.
//!
//! Each test that waits for the command's output runs under a watchdog that kills the
//! command after a generous bound, so a terminal that never shows what it should fails the
//! test instead of hanging it.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use sandpool::SandboxPool;
use sandpool::sandbox::{ChildPty, Command, ExitStatus, KillReason, Sandbox};

/// Reads the terminal until `text` shows; everything read so far.
fn read_until(pty: &mut ChildPty, text: &str) -> String {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(text) {
        let n = pty.read(&mut chunk).unwrap();
        assert!(n > 0, "the terminal ended before {text:?} showed; it showed {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[test]
fn the_terminal_is_the_commands_own() {
    let mut sb = Sandbox::spawn(&default_policy()).unwrap();
    let script = "tty; test -t 0 && test -t 1 && test -t 2 && echo all-terminals; stty size";
    // The probe can fail: on pipes, the same script finds no terminal.
    let piped = sb.run(Command::new("/bin/sh").args(["-c", script])).unwrap();
    assert!(String::from_utf8_lossy(&piped.stdout).contains("not a tty"), "{piped:?}");
    assert!(!String::from_utf8_lossy(&piped.stdout).contains("all-terminals"));

    let out = sb.run(Command::new("/bin/sh").args(["-c", script]).pty(24, 80)).unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.success(), "{out:?}");
    // A terminal of the session's own devpts, with the size asked for; it ends lines with \r\n.
    assert!(shown.starts_with("/dev/pts/0\r\n"), "{shown:?}");
    assert!(shown.contains("all-terminals\r\n") && shown.contains("24 80\r\n"), "{shown:?}");
}

#[test]
fn a_resize_reaches_the_command() {
    let sb = Sandbox::spawn(&default_policy()).unwrap();
    let script = "trap 'echo winch' WINCH; stty size; echo ready; read line; stty size";
    let mut child = sb.start(Command::new("/bin/sh").args(["-c", script]).pty(24, 80)).unwrap();
    let dog = Watchdog::new(child.killer());
    let mut pty = child.pty.take().unwrap();
    let first = read_until(&mut pty, "ready");
    assert!(first.contains("24 80"), "{first:?}");
    pty.resize(50, 132).unwrap();
    pty.write_all(b"go\n").unwrap();
    let rest = read_until(&mut pty, "50 132");
    // The shell heard of the change too (its trap runs before the next command).
    assert!(rest.contains("winch"), "{rest:?}");
    assert!(child.wait().unwrap().success());
    dog.finish();
}

#[test]
fn ctrl_c_interrupts_the_command_and_its_status_comes_back() {
    let sb = Sandbox::spawn(&default_policy()).unwrap();
    // `exec`: a shell that forks `sleep` may lose a Ctrl-C typed between its fork and the
    // child's exec (dash defers SIGINT while it waits, and acts on it only if the child died
    // of it), on any terminal; this test is about the terminal, not that race.
    let mut child = sb.start(Command::new("/bin/sh").args(["-c", "echo ready; exec sleep 100"]).pty(24, 80)).unwrap();
    let dog = Watchdog::new(child.killer());
    let mut pty = child.pty.take().unwrap();
    read_until(&mut pty, "ready");
    pty.write_all(b"\x03").unwrap();
    let exit = child.wait().unwrap();
    dog.finish();
    assert_eq!(exit.status, ExitStatus::Signaled(libc::SIGINT), "{exit:?}");
    assert_eq!(exit.killed_by_sandbox, None);
    let mut rest = Vec::new();
    pty.read_to_end(&mut rest).unwrap();
    // What is left: the end of the line "ready" began (the terminal may pass its "\r\n" in a
    // read of its own), then the echo of the interrupt.
    assert_eq!(String::from_utf8_lossy(&rest).trim_start(), "^C", "the terminal echoes the interrupt");

    // An interactive shell gets its exit status back through the terminal as well.
    let mut shell = sb.start(Command::new("/bin/sh").arg("-i").pty(24, 80)).unwrap();
    let dog = Watchdog::new(shell.killer());
    let mut pty = shell.pty.take().unwrap();
    pty.write_all(b"echo typed-$((6*7)); exit 7\n").unwrap();
    let screen = read_until(&mut pty, "typed-42");
    assert!(screen.contains("echo typed-$((6*7))"), "the terminal echoes what is typed: {screen:?}");
    assert_eq!(shell.wait().unwrap().code(), Some(7));
    dog.finish();
}

#[test]
fn the_output_cap_and_the_timeout_hold_on_a_terminal() {
    let sb = Sandbox::spawn(&default_policy()).unwrap();
    let mut flood = sb.start(Command::new("yes").pty(24, 80).output_limit(10_000)).unwrap();
    let dog = Watchdog::new(flood.killer());
    let mut pty = flood.pty.take().unwrap();
    let mut shown = Vec::new();
    pty.read_to_end(&mut shown).unwrap();
    assert_eq!(shown.len(), 10_000, "the reads end at the cap");
    assert!(pty.truncated());
    let exit = flood.wait().unwrap();
    dog.finish();
    assert_eq!(exit.killed_by_sandbox, Some(KillReason::OutputLimit), "{exit:?}");

    let mut slow = sb.start(Command::new("sleep").arg("100").pty(24, 80).timeout(Duration::from_millis(300))).unwrap();
    let exit = slow.wait().unwrap();
    assert!(exit.timed_out(), "{exit:?}");
    let mut rest = Vec::new();
    slow.pty.take().unwrap().read_to_end(&mut rest).unwrap();
}

/// A lease whose command had a terminal, its near end still held by the host: the next lease
/// gets a devpts of its own, with no terminal of the one before in it, and what the host
/// writes to the old terminal reaches nobody there.
#[test]
fn a_terminal_stays_with_its_lease() {
    let pool = SandboxPool::builder(default_policy()).max_size(1).min_idle(0).build().unwrap();
    let mut lease = pool.acquire().unwrap();
    // A probe that can fail: while the terminal lives, its lease sees it.
    let mut child =
        lease.start(Command::new("/bin/sh").args(["-c", "echo ready; exec sleep 100"]).pty(24, 80)).unwrap();
    let mut kept = child.pty.take().unwrap();
    read_until(&mut kept, "ready");
    let listed = lease.run(Command::new("ls").arg("/dev/pts")).unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "0\nptmx\n");
    child.kill().unwrap();
    let _ = child.wait().unwrap();
    // The lease's last command ends with nothing else running, as a careful attacker's would.
    assert!(lease.run(&Command::new("true")).unwrap().success());
    drop(lease);

    let mut next = pool.acquire().unwrap();
    let _ = kept.write(b"to whom it may concern\n");
    let listed = next.run(Command::new("ls").arg("/dev/pts")).unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "ptmx\n", "{listed:?}");
    let read = next.run(Command::new("cat").arg("/dev/pts/0")).unwrap();
    assert!(!read.success() && read.stdout.is_empty(), "{read:?}");
}

/// Terminals are a host-wide resource (`kernel.pty.max`): a session may hold at most 16, so
/// one tenant cannot take what other sandboxes' terminals need.
#[test]
fn a_session_holds_a_bounded_number_of_terminals() {
    // The probe works: outside, it opens as many as it asks for.
    assert_eq!(probe_outside(&["ptys", "20"]), "20");
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    assert_eq!(probe_inside(&mut sb, &["ptys", "20"]), "16");
}
