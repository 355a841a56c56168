//! What a sandbox must keep out. Every test first shows that its probe works where nothing
//! stops it (on the host, or with the layer off), then that the sandbox stops it. CI runs this
//! file both as root and as an unprivileged uid.

mod common;

use std::io::Read;
use std::time::Duration;

use common::*;
use sandpool::sandbox::{Command, Enforcement, ExitStatus, KillReason, Requirement, Sandbox};

#[test]
fn host_files_outside_binds_do_not_exist() {
    let dir = TempDir::new("secret");
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "top secret").unwrap();
    set_mode(&secret, 0o644);
    let secret = secret.to_str().unwrap();
    assert_eq!(probe_outside(&["read", secret]), "ok", "the probe reads the file on the host");

    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    assert_eq!(probe_inside(&mut sb, &["read", "/etc/passwd"]), "ok", "the probe reads what the sandbox shows");
    assert_eq!(probe_inside(&mut sb, &["read", secret]), "err 2", "a host file outside the binds does not exist");
    assert_eq!(probe_inside(&mut sb, &["read", "/etc/shadow"]), "err 2", "/etc/shadow does not exist inside");
    for hidden in ["/root", "/home", "/var", "/sys", "/run"] {
        assert_eq!(probe_inside(&mut sb, &["read", hidden]), "err 2", "{hidden} is not in the sandbox");
    }
    // Of `/etc`, what identifies the host or may hold credentials is not there, where the
    // host has it; the public databases programs read are.
    for private in ["/etc/machine-id", "/etc/gitconfig", "/etc/pip.conf", "/etc/npmrc", "/etc/wgetrc", "/etc/subuid"] {
        if probe_outside(&["read", private]) == "ok" {
            assert_eq!(probe_inside(&mut sb, &["read", private]), "err 2", "{private} is not in the sandbox");
        }
    }
    for public in ["/etc/services", "/etc/protocols", "/etc/os-release"] {
        if probe_outside(&["read", public]) == "ok" {
            assert_eq!(probe_inside(&mut sb, &["read", public]), "ok", "{public} is in the sandbox");
        }
    }
}

/// Programs that name a service (`getservbyname`, `getaddrinfo(host, "http")`) find it: the
/// sandbox shows the host's `/etc/services`.
#[test]
fn services_are_found_by_name() {
    let outside = std::process::Command::new("getent").args(["services", "http"]).output().ok();
    let Some(outside) = outside.filter(|o| o.status.success()) else {
        return skip("services_are_found_by_name", "getent finds no http service on this host");
    };
    let mut sb = Sandbox::spawn(&default_policy()).unwrap();
    let inside = sb.run(Command::new("getent").args(["services", "http"])).unwrap();
    assert!(inside.success(), "{inside:?}");
    assert_eq!(inside.stdout, outside.stdout);
}

#[test]
fn read_only_binds_cannot_be_written_and_read_write_binds_can() {
    let ro = TempDir::new("ro");
    let rw = TempDir::new("rw");
    std::fs::write(ro.path().join("f"), "data").unwrap();
    set_mode(&ro.path().join("f"), 0o644);
    let ro_file = ro.path().join("f");
    let ro_file = ro_file.to_str().unwrap();
    let rw_file = rw.path().join("out");
    assert_eq!(probe_outside(&["write", ro_file]), "ok", "the probe writes the file on the host");

    let policy = probe_policy().ro(ro.path()).rw(rw.path()).build().unwrap();
    let mut sb = Sandbox::spawn(&policy).unwrap();
    assert_eq!(probe_inside(&mut sb, &["read", ro_file]), "ok");
    assert_eq!(probe_inside(&mut sb, &["write", ro_file]), "err 30", "a read-only bind refuses writes (EROFS)");
    assert_eq!(probe_inside(&mut sb, &["write", rw_file.to_str().unwrap()]), "ok", "a read-write bind takes writes");
    assert_eq!(std::fs::read_to_string(&rw_file).unwrap(), "probe\n", "and the host sees them");
}

#[test]
fn binding_etc_read_only_does_not_expose_shadow() {
    // Root hosts idmap a bind only when the sandbox could not use its root otherwise; /etc is
    // world-readable, so it is bound as is and /etc/shadow keeps its host permissions.
    let policy = probe_policy().ro("/etc").build().unwrap();
    let mut sb = Sandbox::spawn(&policy).unwrap();
    assert_eq!(probe_inside(&mut sb, &["read", "/etc/passwd"]), "ok", "the bind is there");
    assert_eq!(probe_inside(&mut sb, &["read", "/etc/shadow"]), "err 13");
}

#[test]
fn single_files_can_be_bound_read_only_and_read_write() {
    let dir = TempDir::new("files");
    let (ro, rw) = (dir.path().join("ro.txt"), dir.path().join("rw.txt"));
    for f in [&ro, &rw] {
        std::fs::write(f, "data\n").unwrap();
        set_mode(f, 0o600);
    }
    let mut sb = Sandbox::spawn(&probe_policy().ro(&ro).rw(&rw).build().unwrap()).unwrap();
    assert_eq!(probe_inside(&mut sb, &["read", ro.to_str().unwrap()]), "ok");
    assert_eq!(probe_inside(&mut sb, &["write", ro.to_str().unwrap()]), "err 30");
    assert_eq!(probe_inside(&mut sb, &["write", rw.to_str().unwrap()]), "ok");
    assert_eq!(std::fs::read_to_string(&rw).unwrap(), "probe\n");
    assert_eq!(probe_inside(&mut sb, &["read", dir.path().join("other").to_str().unwrap()]), "err 2");
}

#[test]
fn tmp_writes_do_not_reach_the_host() {
    let name = format!("/tmp/sandpool-leak-{}", std::process::id());
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    assert_eq!(probe_inside(&mut sb, &["write", &name]), "ok");
    assert_eq!(probe_inside(&mut sb, &["read", &name]), "ok", "the file exists inside");
    assert!(!std::path::Path::new(&name).exists(), "but not on the host");
    assert_eq!(probe_inside(&mut sb, &["write", "/usr/sandpool-probe"]), "err 30", "system dirs are read-only");
    assert_eq!(probe_inside(&mut sb, &["write", "/sandpool-probe"]), "err 30", "the root is read-only");
}

#[test]
fn host_processes_are_neither_visible_nor_signalable() {
    let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    let pid = child.id().to_string();
    assert_eq!(probe_outside(&["kill", &pid]), "ok", "the probe can signal the host process from the host");

    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    assert_eq!(probe_inside(&mut sb, &["kill", &pid]), "err 3", "no such process inside (ESRCH)");
    assert_eq!(probe_inside(&mut sb, &["read", &format!("/proc/{pid}/status")]), "err 2");
    // Not even the sandbox's own: the init is in another pid namespace, and the spawner, pid 1
    // of the commands' namespace, is not listed. Only the probe itself.
    assert_eq!(probe_inside(&mut sb, &["procs"]), "1");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn dangerous_system_calls_fail_with_eperm() {
    // Outside, each call reaches the kernel (success, or an error other than EPERM for the
    // deliberately invalid arguments); inside, the filter answers EPERM.
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    for action in ["ptrace", "mount", "unshare", "chroot", "bpf", "keyctl", "perf", "io_uring", "setns"] {
        let outside = probe_outside(&[action]);
        assert_ne!(outside, "err 1", "{action}: the probe must reach the kernel outside the sandbox");
        assert_eq!(probe_inside(&mut sb, &[action]), "err 1", "{action} must fail with EPERM inside");
    }
}

#[test]
fn clone3_answers_enosys_and_the_x32_abi_is_refused() {
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    assert_eq!(probe_outside(&["clone3"]), "err 22", "the kernel sees clone3 outside");
    if commands_born_in_their_cgroup(&sb) {
        // Spawners start commands with clone3 there: the kernel sees it, and what it could
        // ask beyond clone's rules, a user namespace, the sandbox's own limit refuses.
        assert_eq!(probe_inside(&mut sb, &["clone3"]), "err 22", "left to the spawners");
        if probe_outside(&["clone3-newuser"]) == "ok" {
            assert_eq!(probe_inside(&mut sb, &["clone3-newuser"]), "err 28", "no user namespace inside");
        } else {
            skip("clone3_answers_enosys (user namespace)", "this host makes no user namespace either");
        }
    } else {
        assert_eq!(probe_inside(&mut sb, &["clone3"]), "err 38", "libc then falls back to clone");
    }
    if cfg!(target_arch = "x86_64") {
        assert_ne!(probe_outside(&["x32"]), "err 1");
        assert_eq!(probe_inside(&mut sb, &["x32"]), "err 1");
    }
}

#[test]
fn commands_cannot_signal_the_sandbox_own_processes() {
    // The init is not in the commands' pid namespace; the spawner is its pid 1, which the
    // seccomp filter (and, on ABI 6+, Landlock's scoping) keeps out of reach.
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    let own = sh(&mut sb, "sleep 5 & kill -0 $! && echo can-signal-own-child");
    assert_eq!(stdout(&own), "can-signal-own-child", "the probe's way of signalling works");
    assert_eq!(probe_inside(&mut sb, &["kill", "1"]), "err 1");
    assert!(sb.run(&Command::new("true")).unwrap().success(), "the sandbox still serves");
}

/// A `--no-fork` command makes no process, by any call (`fork`, `clone`, and `clone3`, also
/// where the sandbox leaves `clone3` to its spawners), and still makes threads.
#[test]
fn a_no_fork_command_makes_threads_but_no_process() {
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    assert_eq!(probe_inside(&mut sb, &["fork"]), "ok", "an ordinary command forks");
    assert_eq!(probe_inside(&mut sb, &["thread"]), "ok");
    let mut no_fork = |action: &str| {
        let out = sb.run(Command::new(probe()).arg(action).no_fork(true)).unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(no_fork("fork"), "err 1");
    assert_eq!(no_fork("clone3"), "err 38");
    assert_eq!(no_fork("thread"), "ok", "threads are not processes");
}

/// Whether `sandbox`'s commands are born in a cgroup of their own by `clone3`, which its
/// spawners then keep (memory a cgroup v2 controller, and `clone3` not refused to sandpool).
fn commands_born_in_their_cgroup(sandbox: &Sandbox) -> bool {
    sandbox.isolation().limit("memory").unwrap().enforced_by == Enforcement::CgroupV2
        && !sandbox.isolation().missing.iter().any(|m| m.contains("commands share the init's cgroup"))
}

/// No user namespace can be made inside, by any call the filter lets through: the sandbox's
/// own `user.max_user_namespaces` is 0, a layer of its own, shown here with the filter off.
#[test]
fn no_user_namespace_is_made_inside_even_without_the_filter() {
    const TEST: &str = "no_user_namespace_is_made_inside_even_without_the_filter";
    if probe_outside(&["unshare"]) != "ok" {
        return skip(TEST, "this host makes no user namespace for the probe outside either");
    }
    let policy = probe_policy().seccomp(Requirement::Off).build().unwrap();
    let mut sb = Sandbox::spawn(&policy).unwrap();
    assert!(!sb.isolation().seccomp.enforced);
    assert_eq!(stdout(&sh(&mut sb, "cat /proc/sys/user/max_user_namespaces")), "0");
    assert_eq!(probe_inside(&mut sb, &["unshare"]), "err 28", "ENOSPC: the limit, not the filter (EPERM)");
    assert_eq!(probe_inside(&mut sb, &["clone3-newuser"]), "err 28");
    let raise = sh(&mut sb, "echo 10 > /proc/sys/user/max_user_namespaces");
    assert!(!raise.success(), "no command may raise it: {raise:?}");
    assert_eq!(stdout(&sh(&mut sb, "cat /proc/sys/user/max_user_namespaces")), "0");
}

#[test]
fn the_filter_is_what_refuses_them() {
    // With seccomp off, an invalid bpf call reaches the kernel again (EINVAL, not EPERM): the
    // EPERM above comes from the filter, not from the probe.
    let policy = probe_policy().seccomp(Requirement::Off).build().unwrap();
    let mut sb = Sandbox::spawn(&policy).unwrap();
    assert!(!sb.isolation().seccomp.enforced);
    assert_eq!(probe_inside(&mut sb, &["bpf"]), "err 22");
}

#[test]
fn capabilities_are_empty_and_no_new_privs_is_set() {
    let script = "grep -E '^(CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status";
    let host = std::process::Command::new("sh").args(["-c", script]).output().unwrap();
    let host = String::from_utf8_lossy(&host.stdout).into_owned();
    assert!(host.contains("NoNewPrivs:\t0"), "the probe reads the flag on the host: {host}");

    let mut sb = Sandbox::spawn(&default_policy()).unwrap();
    let inside = stdout(&sh(&mut sb, script));
    for line in [
        "CapPrm:\t0000000000000000",
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
    ] {
        assert!(inside.contains(line), "missing {line:?} in {inside}");
    }
    let id = stdout(&sh(&mut sb, "id -u; id -g"));
    assert_eq!(id, "1000\n1000");
}

#[test]
fn only_loopback_exists_and_a_host_listener_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    assert_eq!(probe_outside(&["connect", &port]), "ok", "the probe reaches the listener from the host");

    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    assert!(sb.isolation().loopback_only);
    assert_eq!(probe_inside(&mut sb, &["connect", &port]), "err 111", "refused: nothing listens in the sandbox");
    let ifaces = stdout(&sh(&mut sb, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"));
    assert_eq!(ifaces, "lo");
    // Loopback inside works (programs that talk to themselves over TCP keep working).
    let out = sh(&mut sb, "grep -q ' 0100007F:' /proc/net/tcp || echo no-listeners");
    assert_eq!(stdout(&out), "no-listeners");
}

#[test]
fn a_fork_bomb_stays_within_the_process_limit() {
    assert_eq!(probe_outside(&["forkmany", "40"]), "40", "the probe forks 40 times on the host");
    let policy = probe_policy().max_processes(16).build().unwrap();
    let mut sb = Sandbox::spawn(&policy).unwrap();
    let made: u32 = probe_inside(&mut sb, &["forkmany", "40"]).parse().unwrap();
    assert!(made < 16, "at most 16 processes in the sandbox, the init and the probe among them; made {made}");
    assert!(made > 0, "forking itself works");

    // A real bomb: it ends by the timeout, the host keeps working, the sandbox can be reset.
    let mut bomb = Command::new("/bin/sh");
    bomb.args(["-c", "b() { b | b & }; b; sleep 60"]).timeout(Duration::from_millis(1500));
    let out = sb.run(&bomb).unwrap();
    assert!(out.timed_out || out.exit_code().is_some());
    assert!(std::process::Command::new("true").status().unwrap().success(), "the host still forks");
    sb.reset().unwrap();
    assert_eq!(session_processes(&sb), 0, "reset took the bomb down");
}

#[test]
fn a_memory_hog_is_stopped() {
    assert_eq!(probe_outside(&["alloc", "256"]), "ok", "the probe allocates 256 MiB on the host");
    let policy = probe_policy().memory_mib(64).build().unwrap();
    let mut sb = Sandbox::spawn(&policy).unwrap();
    let out = sb.run(Command::new(probe()).args(["alloc", "256"])).unwrap();
    let stopped = out.signal() == Some(libc::SIGKILL) || stdout(&out) == "err 12";
    assert!(stopped, "killed by the memory cgroup or refused by RLIMIT_AS: {out:?}");
    assert_eq!(probe_inside(&mut sb, &["alloc", "16"]), "ok", "within the limit it works");
}

#[test]
fn an_output_flood_is_truncated_and_killed() {
    let mut sb = Sandbox::spawn(&default_policy()).unwrap();
    let out = sb.run(Command::new("yes").output_limit(1 << 20)).unwrap();
    assert_eq!(out.stdout.len(), 1 << 20);
    assert!(out.stdout_truncated && !out.stderr_truncated);
    assert_eq!(out.killed_by_sandbox, Some(KillReason::OutputLimit));
    assert_eq!(out.status, ExitStatus::Signaled(libc::SIGKILL));
    // Under the cap nothing is cut.
    let out = sb.run(Command::new("head").args(["-c", "1000", "/dev/zero"]).output_limit(1 << 20)).unwrap();
    assert_eq!((out.stdout.len(), out.stdout_truncated, out.killed_by_sandbox), (1000, false, None));
}

#[test]
fn a_timeout_is_enforced_on_the_whole_command() {
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    let out = sb.run(Command::new("/bin/sh").args(["-c", "sleep 60 & sleep 60"]).timeout(Duration::from_millis(300)));
    let out = out.unwrap();
    assert!(out.timed_out);
    assert_eq!(out.killed_by_sandbox, Some(KillReason::Timeout));
    assert_eq!(out.status, ExitStatus::Signaled(libc::SIGKILL));
    assert_eq!(session_processes(&sb), 0, "the background sleep died too");
    // A command that ends in time is not flagged.
    let out = sb.run(Command::new("true").timeout(Duration::from_secs(30))).unwrap();
    assert!(!out.timed_out && out.success());
}

#[test]
fn reset_leaves_nothing_of_the_previous_session() {
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    let out = sh(&mut sb, "echo secret > /tmp/f; echo shm > /dev/shm/s; sleep 1000 >/dev/null 2>&1 &");
    assert!(out.success());
    // Same session: the file and the process are still there (the checks can see them).
    assert_eq!(stdout(&sh(&mut sb, "cat /tmp/f /dev/shm/s")), "secret\nshm");
    assert_eq!(session_processes(&sb), 1, "the background sleep");
    sb.reset().unwrap();
    // Only the probe's bind (a bind under /tmp survives resets) is left.
    let probe_name = probe_dir().file_name().unwrap().to_str().unwrap();
    assert_eq!(stdout(&sh(&mut sb, "ls -A /tmp /dev/shm")), format!("/dev/shm:\n\n/tmp:\n{probe_name}"));
    assert_eq!(session_processes(&sb), 0);
}

#[test]
fn reset_keeps_binds_under_tmp_and_wipes_the_rest() {
    let rw = TempDir::new("rw-under-tmp");
    assert!(rw.path().starts_with("/tmp"), "this test needs the bind under /tmp");
    std::fs::write(rw.path().join("kept"), "user data").unwrap();
    set_mode(&rw.path().join("kept"), 0o666);
    let dir = rw.path().to_str().unwrap().to_string();
    let mut sb = Sandbox::spawn(&policy_builder().rw(rw.path()).build().unwrap()).unwrap();
    let script = format!(
        "echo new > {dir}/made-inside && mkdir -p /tmp/a/b/c && touch /tmp/a/b/c/f && chmod 700 /tmp && \
         touch /dev/mqueue/q /dev/shm/s && chmod 711 /dev/shm && \
         ipcmk -M 4096 >/dev/null && ipcmk -Q >/dev/null && ipcmk -S 2 >/dev/null && \
         ls -A /dev/mqueue /dev/shm | grep -c '^[qs]$'; ipcs | grep -c '^0x'"
    );
    assert_eq!(
        stdout(&sh(&mut sb, &script)),
        "2\n3",
        "the session made a message queue, a file, and a shared memory segment, a System V queue and a semaphore set"
    );
    sb.reset().unwrap();
    let after = format!(
        "ls -A /tmp | grep -v '^{}$'; stat -c %a /tmp /dev/shm; ls {dir}; ls -A /dev/mqueue /dev/shm | grep -c .; \
         ipcs | grep -c '^0x'",
        rw.path().file_name().unwrap().to_str().unwrap()
    );
    assert_eq!(stdout(&sh(&mut sb, &after)), "1777\n1777\nkept\nmade-inside\n2\n0");
    assert_eq!(std::fs::read_to_string(rw.path().join("kept")).unwrap(), "user data", "the bind's content is intact");
}

/// Extended attributes a command sets on the session directories it owns (a place to leave
/// data for the next lease) are gone after a reset.
#[test]
fn reset_removes_extended_attributes_of_the_session_directories() {
    if !tmpfs_user_xattrs("reset_removes_extended_attributes_of_the_session_directories") {
        return;
    }
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    for dir in ["/tmp", "/dev/shm"] {
        assert_eq!(probe_inside(&mut sb, &["xattrs", dir]), "0", "{dir} starts without any");
        assert_eq!(probe_inside(&mut sb, &["setxattr", dir]), "ok", "the probe can set one on {dir}");
        assert_ne!(probe_inside(&mut sb, &["xattrs", dir]), "0", "and it stays within the session");
    }
    sb.reset().unwrap();
    for dir in ["/tmp", "/dev/shm"] {
        assert_eq!(probe_inside(&mut sb, &["xattrs", dir]), "0", "{dir} after the reset");
    }
}

#[test]
fn stdin_env_and_cwd_reach_the_command() {
    let mut sb = Sandbox::spawn(&default_policy()).unwrap();
    let out = sb.run(Command::new("cat").stdin(b"from stdin".to_vec())).unwrap();
    assert_eq!(out.stdout, b"from stdin");
    let script = "echo $K; pwd; env | cut -d= -f1 | sort | tr '\\n' ' '";
    let out = sb.run(Command::new("/bin/sh").args(["-c", script]).env("K", "v").cwd("/usr")).unwrap();
    assert_eq!(stdout(&out), "v\n/usr\nHOME K LANG PATH PWD TMPDIR", "no host variable gets in");
}

#[test]
fn ordinary_programs_work_under_the_default_policy() {
    // The filter and the minimal root must not break everyday tools: a shell pipeline, Python
    // with threads and subprocesses, and the C compiler end to end.
    let mut sb = Sandbox::spawn(&default_policy()).unwrap();
    let out = sh(&mut sb, "echo abc | tr a-z A-Z | sed s/B/b/");
    assert_eq!(stdout(&out), "AbC");
    let py = "import threading, subprocess, json; t = threading.Thread(target=lambda: None); t.start(); t.join(); \
              print(json.dumps(subprocess.run(['echo', 'sub'], capture_output=True, text=True).stdout))";
    let out = sb.run(Command::new("python3").args(["-c", py])).unwrap();
    assert_eq!(stdout(&out), "\"sub\\n\"", "{}", String::from_utf8_lossy(&out.stderr));
    let out = sh(&mut sb, "printf 'int main(void){return 42;}' > m.c && cc m.c -o m && ./m; echo $?");
    assert_eq!(stdout(&out), "42", "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn missing_programs_are_typed_errors() {
    let mut sb = Sandbox::spawn(&default_policy()).unwrap();
    let err = sb.run(&Command::new("definitely-not-a-program")).unwrap_err();
    assert!(matches!(err, sandpool::sandbox::SandboxError::ProgramNotFound { .. }), "{err:?}");
    let err = sb.run(&Command::new("/etc/passwd")).unwrap_err();
    assert!(matches!(err, sandpool::sandbox::SandboxError::Exec { .. }), "{err:?}");
    assert!(sb.run(&Command::new("true")).unwrap().success(), "and the sandbox is still usable");
}

#[test]
fn the_isolation_report_matches_what_the_kernel_applied() {
    let sb = Sandbox::spawn(&default_policy()).unwrap();
    let iso = sb.isolation();
    assert!(iso.seccomp.enforced && iso.no_new_privs);
    // Landlock as the tests run it: this kernel's ABI, capped, or off.
    let kernel_abi = std::fs::read_to_string("/sys/kernel/security/lsm").ok().filter(|l| l.contains("landlock"));
    match landlock_under_test().as_deref() {
        Some("off") => assert!(!iso.landlock.enforced, "{:?}", iso.landlock),
        Some(cap) => {
            let cap: u32 = cap.parse().unwrap();
            assert!(iso.landlock.enforced && iso.landlock.abi.is_some_and(|abi| abi <= cap), "{:?}", iso.landlock);
            assert_eq!(iso.landlock.scoped, cap >= 6, "scoping comes with ABI 6: {:?}", iso.landlock);
        }
        None => assert!(iso.landlock.enforced || kernel_abi.is_none(), "{:?}", iso.landlock),
    }
    let s = &iso.sessions;
    assert!(
        s.own_pid_namespace && s.pid_counter_rewound && s.calls_on_the_spawner_refused && s.spawner_settings_checked
    );
    let mut status = String::new();
    std::fs::File::open(format!("/proc/{}/status", sb.pid())).unwrap().read_to_string(&mut status).unwrap();
    // The init itself runs as the sandbox's host uid.
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid_line.split_whitespace().skip(1).all(|u| u == iso.host_uid.to_string()), "{uid_line}");
    // The init left the host's session: a Ctrl-C at the host's terminal does not reach it.
    let field = |pid: String, n: usize| -> String {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat.rsplit_once(')').unwrap().1.split_whitespace().nth(n).unwrap().to_string()
    };
    assert_ne!(field(sb.pid().to_string(), 3), field("self".into(), 3), "not in the host's session");
    let memory = iso.limit("memory").unwrap();
    if is_root() {
        assert_ne!(memory.enforced_by, sandpool::sandbox::Enforcement::Rlimit, "root gets a memory cgroup here");
    }
}

/// The spawner's "untouched" verdict, which lets the pool skip a reset, must never miss a
/// trace: each kind of trace a reset wipes marks the session dirty, and `true` (which leaves
/// nothing) shows the verdict can say clean at all. Writes inside a bind under `/tmp`
/// persist by design and do not count.
#[test]
fn every_trace_a_reset_wipes_marks_the_session_dirty() {
    let rw = TempDir::new("rw-bind-under-tmp");
    assert!(rw.path().starts_with("/tmp"), "this test needs the bind under /tmp");
    let bind = rw.path().to_str().unwrap().to_string();
    let mut sb = Sandbox::spawn(&probe_policy().rw(rw.path()).build().unwrap()).unwrap();
    assert!(sb.is_clean(), "a fresh sandbox is clean");
    let write_in_bind = format!("echo data > {bind}/inside");
    let probe = probe().to_str().unwrap();
    let xattr_on_tmp = format!("{probe} setxattr /tmp | grep -qx ok");
    let xattr_on_shm = format!("{probe} setxattr /dev/shm | grep -qx ok");
    // A file made and removed, then /tmp's access and modification times put back: only the
    // change time tells (and the next inode number, a channel to the next lease).
    let times_put_back = format!("{probe} restoretimes /tmp | grep -qx ok");
    let with_xattrs = tmpfs_user_xattrs("every_trace_a_reset_wipes_marks_the_session_dirty (extended attributes)");
    let xattr_traces: &[&str] = if with_xattrs { &[&xattr_on_tmp, &xattr_on_shm] } else { &[] };
    let traces: Vec<&str> = xattr_traces
        .iter()
        .copied()
        .chain([
            times_put_back.as_str(),
            "echo x > /tmp/f",
            "mkdir /tmp/d",
            "ln -s /etc/hostname /tmp/link",
            "echo x > /dev/shm/f",
            "touch /dev/mqueue/q",
            "chmod 700 /tmp",
            "chmod 711 /dev/shm",
            "ipcmk -M 4096",
            "ipcmk -Q",
            "ipcmk -S 1",
            "sleep 1000 >/dev/null 2>&1 &",
        ])
        .collect();
    for trace in traces {
        let out = sh(&mut sb, "true");
        assert!(out.success());
        assert!(sb.is_clean(), "`true` leaves the session clean (before: {trace})");
        assert!(sh(&mut sb, &write_in_bind).success());
        assert!(sb.is_clean(), "a write inside a bind is not session state");
        let out = sh(&mut sb, trace);
        assert!(out.success(), "{trace}: {out:?}");
        assert!(!sb.is_clean(), "`{trace}` left a trace the verdict missed");
        // A later command that leaves nothing does not make the session clean again.
        assert!(sh(&mut sb, "true").success());
        assert!(!sb.is_clean(), "after `{trace}`, the next command saw the trace too");
        sb.reset().unwrap();
        assert!(sb.is_clean(), "reset after `{trace}`");
    }
    assert_eq!(std::fs::read_to_string(rw.path().join("inside")).unwrap(), "data\n");
}

/// With a bind nested below a session directory (`/tmp/x/inner`), the directory between
/// (`/tmp/x`, the sandbox's own) could hold a trace that `/tmp` does not show: the verdict
/// watches it too. A session that touched nothing stays untouched; one that left a file there
/// is not, and its reset wipes it.
#[test]
fn a_nested_bind_under_tmp_keeps_the_verdict_and_a_trace_beside_it_is_seen() {
    let outer = TempDir::new("nested");
    assert!(outer.path().starts_with("/tmp"), "this test needs the bind under /tmp");
    let inner = outer.path().join("inner");
    std::fs::create_dir(&inner).unwrap();
    set_mode(&inner, 0o777);
    let mut sb = Sandbox::spawn(&policy_builder().rw(&inner).build().unwrap()).unwrap();
    let outer_dir = outer.path().to_str().unwrap();
    assert!(sh(&mut sb, &format!("echo data > {}/in-bind", inner.display())).success());
    assert!(sb.is_clean(), "a nested bind, and a write into it only: untouched");
    let out = sh(&mut sb, &format!("echo left > {outer_dir}/trace && ls -A {outer_dir}"));
    assert_eq!(stdout(&out), "inner\ntrace", "the session can write next to the bind: {out:?}");
    assert!(!sb.is_clean(), "a file beside the bind is a trace");
    sb.reset().unwrap();
    assert_eq!(stdout(&sh(&mut sb, &format!("ls -A {outer_dir}"))), "inner", "the reset wiped it");
    assert!(sb.is_clean());
    for change in ["touch -d 2001-01-01", "chmod 700"] {
        assert!(sh(&mut sb, &format!("{change} {outer_dir}")).success());
        assert!(!sb.is_clean(), "`{change}` on the directory between is a trace");
        sb.reset().unwrap();
    }
    assert_eq!(std::fs::read_to_string(inner.join("in-bind")).unwrap(), "data\n");
}

/// `TIOCSTI` types into a terminal as if at its keyboard: on a terminal of the host's handed
/// in as a descriptor, into the host's shell. The probe first types into its own terminal
/// with the sandbox's seccomp filter off, which works wherever the kernel still allows it.
#[test]
fn a_command_cannot_type_into_a_terminal() {
    let legacy = std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti");
    if legacy.as_deref().is_ok_and(|v| v.trim() == "0") {
        skip("a_command_cannot_type_into_a_terminal", "the kernel refuses TIOCSTI itself (dev.tty.legacy_tiocsti=0)");
        return;
    }
    let typed = |seccomp: Requirement| {
        let mut sb = Sandbox::spawn(&probe_policy().seccomp(seccomp).build().unwrap()).unwrap();
        let out = sb.run(Command::new(probe()).arg("tiocsti").pty(24, 80)).unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let unfiltered = typed(Requirement::Off);
    assert!(unfiltered.contains("ok"), "the probe types into its own terminal without the filter: {unfiltered:?}");
    let filtered = typed(Requirement::Required);
    assert!(filtered.contains(&format!("err {}", libc::EPERM)), "{filtered:?}");
}
