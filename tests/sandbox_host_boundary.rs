//! Where a sandbox meets the host: its binds, and the kernel's shared facilities. Nothing a
//! command does there may be turned against the host. Each check first shows that the action
//! works outside the sandbox (the probe run by the test's own uid), then that inside it fails
//! and leaves the host unchanged. CI runs this file as root and as an unprivileged uid, with
//! Landlock as the kernel has it, capped at ABI 5, and off: none of it rests on Landlock.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use common::*;
use sandpool::sandbox::{Command, Sandbox, SandboxError};

/// The file's setuid and setgid bits, as the host sees them (0 when it does not exist).
fn set_id_bits(path: &Path) -> u32 {
    std::fs::metadata(path).map(|m| m.permissions().mode() & 0o6000).unwrap_or(0)
}

/// The routes to a setuid or setgid file the probe knows, and whether each works on a file
/// that exists already (else it makes the file).
const SET_ID_ROUTES: [(&str, bool); 8] = [
    ("chmod", true),
    ("chmod-sgid", true),
    ("fchmod", true),
    ("fchmodat", true),
    ("fchmodat2", true),
    ("open", false),
    ("creat", false),
    ("mknod", false),
];

/// A read-write bind is the host's directory: no call inside leaves a setuid or setgid file
/// there, by any route the probe knows. As root the bound directory is root's (0755), so the
/// sandbox acts as root's files' owner through its idmapped bind: the case where such a file
/// would run as root on the host.
#[test]
fn no_route_leaves_a_setuid_or_setgid_file_in_a_read_write_bind() {
    let outside = TempDir::new("setid-outside");
    let bound = TempDir::new("setid-bound");
    let mut proven = Vec::new();
    for (route, existing) in SET_ID_ROUTES {
        let file = outside.path().join(route);
        if existing {
            std::fs::write(&file, "x").unwrap();
        }
        let answer = probe_outside(&["setid", route, file.to_str().unwrap()]);
        if answer != "ok" {
            // fchmodat2 is Linux 6.6+.
            skip(&format!("setid route {route}"), &format!("it does not work outside either ({answer})"));
            continue;
        }
        assert_ne!(set_id_bits(&file), 0, "{route}: outside, the file is setuid or setgid");
        proven.push((route, existing));
    }
    assert!(proven.len() >= 7, "the routes work outside: {proven:?}");

    let policy = probe_policy().rw(bound.path()).build().unwrap();
    let mut sb = Sandbox::spawn(&policy).unwrap();
    for (route, existing) in proven {
        let file = bound.path().join(route);
        let inside = file.to_str().unwrap();
        if existing {
            assert_eq!(probe_inside(&mut sb, &["write", inside]), "ok", "{route}: the sandbox writes the bind");
        }
        assert_eq!(probe_inside(&mut sb, &["setid", route, inside]), "err 1", "{route} is refused inside");
        assert_eq!(set_id_bits(&file), 0, "{route}: no setuid or setgid file on the host");
    }
    // `cp -p` of a setuid program keeps its mode where it can: not here.
    let copy = bound.path().join("su-copy");
    let script = format!(
        "for f in /usr/bin/su /bin/su /usr/bin/passwd; do [ -u $f ] && exec cp -p $f {}; done; exit 9",
        copy.display()
    );
    let out = sh(&mut sb, &script);
    if out.status.code() != Some(9) {
        assert_eq!(set_id_bits(&copy), 0, "cp -p leaves no setuid copy");
    }
}

/// A write by a command clears the setuid bit of a file it writes (no command has
/// `CAP_FSETID`); as root, the same write outside keeps it, which shows the bit can survive.
#[test]
fn a_write_inside_clears_the_setuid_bit_of_a_bound_file() {
    if !is_root() {
        skip(
            "a_write_inside_clears_the_setuid_bit_of_a_bound_file",
            "the positive control (a write that keeps the bit) needs CAP_FSETID: root",
        );
        return;
    }
    let dir = TempDir::new("setid-write");
    let (outside, inside) = (dir.path().join("outside"), dir.path().join("inside"));
    for f in [&outside, &inside] {
        std::fs::write(f, "x").unwrap();
        set_mode(f, 0o4755);
    }
    assert_eq!(probe_outside(&["write", outside.to_str().unwrap()]), "ok");
    assert_eq!(set_id_bits(&outside), 0o4000, "outside, root's write keeps the bit");
    let mut sb = Sandbox::spawn(&probe_policy().rw(dir.path()).build().unwrap()).unwrap();
    assert_eq!(probe_inside(&mut sb, &["write", inside.to_str().unwrap()]), "ok");
    assert_eq!(set_id_bits(&inside), 0, "a command's write clears it");
}

/// No file capabilities either: setting `security.capability` needs `CAP_SETFCAP`, which no
/// command has, and no command can make a user namespace to get it.
#[test]
fn no_file_capabilities_in_a_read_write_bind() {
    let dir = TempDir::new("setcap");
    let (outside, inside) = (dir.path().join("outside"), dir.path().join("inside"));
    std::fs::write(&outside, "x").unwrap();
    assert_eq!(probe_outside(&["setcap", outside.to_str().unwrap()]), "ok", "outside, the owner sets capabilities");
    assert_eq!(probe_outside(&["hascap", outside.to_str().unwrap()]), "ok");

    let mut sb = Sandbox::spawn(&probe_policy().rw(dir.path()).build().unwrap()).unwrap();
    assert_eq!(probe_inside(&mut sb, &["write", inside.to_str().unwrap()]), "ok");
    assert_eq!(probe_inside(&mut sb, &["setcap", inside.to_str().unwrap()]), "err 1", "refused inside");
    assert_eq!(
        probe_outside(&["hascap", inside.to_str().unwrap()]),
        format!("err {}", libc::ENODATA),
        "the host's file has none"
    );
}

/// A file made inside a bind is the bind owner's on the host (as root, root's, through the
/// idmapped bind; unprivileged, the user's), and never setuid: the combination that would be
/// a root shell.
#[test]
fn files_made_in_a_bind_belong_to_its_owner_and_are_never_setuid() {
    let dir = TempDir::new("owner");
    let owner = std::fs::metadata(dir.path()).unwrap().uid();
    let file = dir.path().join("made");
    let mut sb = Sandbox::spawn(&probe_policy().rw(dir.path()).build().unwrap()).unwrap();
    assert_eq!(probe_inside(&mut sb, &["setid", "open", file.to_str().unwrap()]), "err 1");
    assert_eq!(probe_inside(&mut sb, &["write", file.to_str().unwrap()]), "ok");
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), owner);
    assert_eq!(set_id_bits(&file), 0);
}

/// `(family, type, protocol, name)` of sockets a command may not make: each, where the kernel
/// has it, would otherwise load a module on a kernel that has it as one.
const UNLISTED_SOCKETS: [(i32, i32, i32, &str); 6] = [
    (libc::AF_VSOCK, libc::SOCK_STREAM, 0, "AF_VSOCK"),
    (libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_SOCK_DIAG, "NETLINK_SOCK_DIAG"),
    (libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_XFRM, "NETLINK_XFRM"),
    (libc::AF_INET, libc::SOCK_STREAM, 262, "IPPROTO_MPTCP"),
    (libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE, "IPPROTO_UDPLITE"),
    (libc::AF_INET6, libc::SOCK_STREAM, libc::IPPROTO_SCTP, "IPPROTO_SCTP"),
];

/// Socket families and protocols are an allow-list: the ones outside it answer as on a
/// kernel without them, before the kernel could look for a module; the ones programs use
/// still work.
#[test]
fn sockets_outside_the_allow_list_are_refused_before_the_module_loader() {
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    let mut proven = 0;
    for (family, kind, protocol, name) in UNLISTED_SOCKETS {
        let args = [family.to_string(), kind.to_string(), protocol.to_string()];
        let args: Vec<&str> = std::iter::once("socket").chain(args.iter().map(String::as_str)).collect();
        let outside = probe_outside(&args);
        let expected = if family == libc::AF_VSOCK { libc::EAFNOSUPPORT } else { libc::EPROTONOSUPPORT };
        assert_eq!(probe_inside(&mut sb, &args), format!("err {expected}"), "{name} is refused inside");
        if outside == "ok" {
            proven += 1;
        } else {
            skip(&format!("socket {name}"), &format!("this kernel has no such socket outside either ({outside})"));
        }
    }
    assert!(proven >= 2, "at least two of the refused sockets work outside, so the refusal is the filter's");
    assert_eq!(
        probe_inside(&mut sb, &["socketpair", &libc::AF_INET.to_string()]),
        format!("err {}", libc::EAFNOSUPPORT)
    );
    for (family, kind, protocol) in [
        (libc::AF_UNIX, libc::SOCK_STREAM, 0),
        (libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0),
        (libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0),
        (libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDP),
        (libc::AF_INET6, libc::SOCK_STREAM, libc::IPPROTO_TCP),
        (libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE),
    ] {
        let args = [family.to_string(), kind.to_string(), protocol.to_string()];
        let args: Vec<&str> = std::iter::once("socket").chain(args.iter().map(String::as_str)).collect();
        assert_eq!(probe_inside(&mut sb, &args), "ok", "{args:?} works inside");
    }
    assert_eq!(probe_inside(&mut sb, &["socketpair", &libc::AF_UNIX.to_string()]), "ok");
    let isolation = sb.isolation();
    assert_eq!(isolation.seccomp.socket_families, ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK (NETLINK_ROUTE)"]);
}

/// Line disciplines are modules too (`n_hdlc`, `ppp`, `slip`): `TIOCSETD` is refused, even on
/// a command's own terminal; outside, the probe sets `N_TTY` on one of its own.
#[test]
fn line_disciplines_cannot_be_changed() {
    assert_eq!(probe_outside(&["tiocsetd"]), "ok", "outside, a terminal's owner sets its line discipline");
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    assert_eq!(probe_inside(&mut sb, &["tiocsetd"]), "err 1");
}

/// A zombie left in a command's process group, whose parent lives elsewhere, keeps the group
/// from ever being empty: the spawner's kill at the timeout gives up going round it, reports
/// the command's end, and goes on serving the session.
#[test]
fn a_zombie_in_the_command_group_does_not_wedge_the_spawner() {
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    let mut cmd = Command::new(probe());
    cmd.arg("zombiegroup").timeout(Duration::from_millis(500));
    let out = sb.run(&cmd).unwrap();
    assert_eq!(stdout(&out), "ready", "the zombie was there");
    assert!(out.timed_out, "{out:?}");
    assert!(!sb.is_clean(), "what is left of the group is seen");
    assert_eq!(stdout(&sh(&mut sb, "echo alive")), "alive", "the session still answers");
}

/// A command that stops every process it may, again and again (the next command's child
/// among them, maybe before its `execve`), holds no one but itself: each next command ends
/// (ran, timed out, or failed to start), the sandbox is never declared dead or unanswering,
/// and a reset gives a session that runs commands again.
#[test]
fn stopping_the_next_commands_child_does_not_wedge_the_spawner() {
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    assert_eq!(probe_inside(&mut sb, &["stopper"]), "ok");
    // Until two commands were caught (the stopper starts a moment after the probe is gone).
    let mut caught = 0;
    for _ in 0..10 {
        let mut cmd = Command::new("/bin/true");
        cmd.timeout(Duration::from_secs(1));
        match sb.run(&cmd) {
            // Stopped after its execve (then timed out, or killed), or not caught at all.
            Ok(out) => caught += usize::from(!out.success()),
            // Stopped before its execve, and killed.
            Err(SandboxError::Exec { .. }) => caught += 1,
            Err(e) => panic!("the spawner must answer: {e}"),
        }
        if caught == 2 {
            break;
        }
    }
    assert!(caught > 0, "the stopper caught no command: the check proved nothing");
    sb.reset().unwrap();
    assert_eq!(stdout(&sh(&mut sb, "echo alive")), "alive");
}

/// An IPv6 flow label outlives its socket (it lingers) and takes no packet to make: the
/// verdict sees it, so the session is not handed on, and the reset sees it, so the next
/// session gets a new network namespace, without it. Outside, in a network namespace of its
/// own, the probe shows the label listed after its socket closed.
#[test]
fn a_lingering_flow_label_is_not_handed_to_the_next_lease() {
    let outside = probe_outside(&["flowlabel", "count"]);
    if outside == format!("err {}", libc::EAFNOSUPPORT) {
        skip("a_lingering_flow_label_is_not_handed_to_the_next_lease", "no IPv6 here");
        return;
    }
    assert_eq!(outside, "1", "outside, the label is listed once its socket is closed");
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    assert!(sh(&mut sb, "true").success());
    assert!(sb.is_clean(), "a command that leaves nothing leaves the session clean");
    assert_eq!(probe_inside(&mut sb, &["flowlabel"]), "ok");
    assert!(!sb.is_clean(), "the verdict sees the label");
    let labels = "tail -n +2 /proc/net/ip6_flowlabel | wc -l";
    assert_eq!(stdout(&sh(&mut sb, labels)), "1", "within the session, it lingers");
    sb.reset().unwrap();
    assert_eq!(stdout(&sh(&mut sb, labels)), "0", "the next session's network namespace has none");
    assert!(sb.is_clean());
    assert_eq!(probe_inside(&mut sb, &["flowlabel"]), "ok", "and the same label is free again");
}

/// Each live sandbox of a root host runs as a host uid of its own, so what the kernel budgets
/// per user is not shared: one sandbox spending its pipe budget (its new pipes shrink to
/// 8 KiB, the positive control) leaves another's new pipes at 64 KiB.
#[test]
fn each_live_sandbox_of_a_root_host_has_a_host_uid_of_its_own() {
    if !is_root() {
        skip(
            "each_live_sandbox_of_a_root_host_has_a_host_uid_of_its_own",
            "an unprivileged host has one uid to map, which its sandboxes share (documented)",
        );
        return;
    }
    let host_uid_of = |pid: i32| -> u32 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let mut a = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    let mut b = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    let (ua, ub) = (a.isolation().host_uid, b.isolation().host_uid);
    assert_ne!(ua, ub, "two live sandboxes, two host uids");
    assert_eq!(host_uid_of(a.pid()), ua, "the report says the uid the kernel sees");
    assert_eq!(host_uid_of(b.pid()), ub);
    assert!(a.isolation().missing.iter().all(|m| !m.contains("host uid")), "{:?}", a.isolation().missing);

    let hog = format!("{} pipehog > /tmp/hog &", probe().display());
    assert!(sh(&mut a, &hog).success());
    let held = stdout(&sh(&mut a, "for i in $(seq 200); do [ -s /tmp/hog ] && break; sleep 0.05; done; cat /tmp/hog"));
    assert!(held.starts_with("held "), "{held}");
    assert_eq!(probe_inside(&mut a, &["pipesize"]), "8192", "the budget of a's uid is spent ({held})");
    assert_eq!(probe_inside(&mut b, &["pipesize"]), "65536", "b's is its own");
}

/// An ACL is no way around the mode: one naming another host user, which the owner may set
/// outside, is refused inside (a sandbox's user namespace maps no id but its own, so no ACL
/// written there can name anyone else), and the host's file keeps none.
#[test]
fn no_acl_in_a_read_write_bind_names_another_user() {
    let dir = TempDir::new("acl");
    let (outside, inside) = (dir.path().join("outside"), dir.path().join("inside"));
    std::fs::write(&outside, "x").unwrap();
    let answer = probe_outside(&["setacl", outside.to_str().unwrap(), "4243"]);
    if answer == format!("err {}", libc::EOPNOTSUPP) {
        return skip("no_acl_in_a_read_write_bind_names_another_user", "this file system has no POSIX ACLs");
    }
    assert_eq!(answer, "ok", "outside, the owner grants another user");
    assert_eq!(probe_outside(&["hasacl", outside.to_str().unwrap()]), "ok");

    let mut sb = Sandbox::spawn(&probe_policy().rw(dir.path()).build().unwrap()).unwrap();
    assert_eq!(probe_inside(&mut sb, &["write", inside.to_str().unwrap()]), "ok");
    let refused = probe_inside(&mut sb, &["setacl", inside.to_str().unwrap(), "4243"]);
    assert!(refused.starts_with("err "), "refused inside: {refused}");
    assert_eq!(
        probe_outside(&["hasacl", inside.to_str().unwrap()]),
        format!("err {}", libc::ENODATA),
        "the host's file has no ACL"
    );
}

/// What a mode does not bound is said: without a memory cgroup, `missing` names the memory
/// no process maps; with the host's network and no Landlock scoping, the host's abstract
/// sockets. With a cgroup, or with scoping, it does not (the positive control: the report
/// tells the two apart).
#[test]
fn the_report_names_what_a_mode_does_not_bound() {
    use sandpool::sandbox::{Network, Requirement};
    let says = |sb: &Sandbox, what: &str| sb.isolation().missing.iter().any(|m| m.contains(what));
    let without = Sandbox::spawn(&probe_policy().cgroups(Requirement::Off).build().unwrap()).unwrap();
    assert!(says(&without, "memfd"), "{:?}", without.isolation().missing);
    let with = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    if has_cgroups(&with) {
        assert!(!says(&with, "memfd"), "{:?}", with.isolation().missing);
    }

    let shared = |landlock: Option<u32>| {
        let mut policy = probe_policy().network(Network::Host);
        if let Some(abi) = landlock {
            policy = policy.landlock_max_abi(abi);
        }
        Sandbox::spawn(&policy.build().unwrap()).unwrap()
    };
    let unscoped = shared(Some(5));
    assert!(!unscoped.isolation().landlock.scoped);
    assert!(says(&unscoped, "abstract unix sockets"), "{:?}", unscoped.isolation().missing);
    let scoped = shared(None);
    if scoped.isolation().landlock.scoped {
        assert!(!says(&scoped, "abstract unix sockets"), "{:?}", scoped.isolation().missing);
    } else {
        skip("the_report_names_what_a_mode_does_not_bound (scoped)", "no Landlock scoping here (ABI 6+)");
    }
}
