//! Nothing of a dropped sandbox stays on the host. Alone in its file: it counts this process's
//! descriptors and cgroups, which other tests running in parallel would disturb.

mod common;

use sandpool::sandbox::{Command, Policy, Sandbox};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn mounts_of(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()
}

/// Nothing of a dropped sandbox stays on the host: no process, no descriptor, no cgroup; and
/// its mounts lived only in its own namespace.
#[test]
fn drop_leaves_nothing_on_the_host() {
    // Warm the process-wide handles (image, /dev/null, cgroup probe) so they don't count.
    drop(Sandbox::spawn(&Policy::default()).unwrap());
    let fds_before = open_fds();
    let host_mounts = mounts_of(std::process::id() as i32).unwrap();

    let mut sb = Sandbox::spawn(&Policy::default()).unwrap();
    let out = sb.run(Command::new("/bin/sh").args(["-c", "sleep 1000 & sleep 1000 & echo started"])).unwrap();
    assert!(out.success());
    let init = sb.pid();
    // While alive: the init exists, holds its own mounts, and (as root) its cgroups exist.
    assert!(std::path::Path::new(&format!("/proc/{init}")).exists());
    let inner_mounts = mounts_of(init).unwrap();
    assert!(inner_mounts.contains(" /proc ") && !host_mounts.contains(" /.oldroot"));
    // The probe finds the sandbox's cgroups, in whichever hierarchies the host has, when its
    // report says it has some.
    let cgroups = common::sandbox_cgroups();
    assert_eq!(!cgroups.is_empty(), common::has_cgroups(&sb), "cgroups found: {cgroups:?}");
    assert!(open_fds() > fds_before, "the live sandbox holds descriptors");

    drop(sb);
    assert!(!std::path::Path::new(&format!("/proc/{init}")).exists(), "the init is gone and reaped");
    assert_eq!(open_fds(), fds_before, "no descriptor leaked");
    let left = common::sandbox_cgroups_once_removed();
    assert!(left.is_empty(), "no cgroup left: {left:?}");
    assert_eq!(sandpool::sandbox::cgroup_removal_failures(), 0, "and none the remover gave up on");
    assert_eq!(mounts_of(std::process::id() as i32).unwrap(), host_mounts, "the host's mounts are untouched");
    // The sandbox's processes were in its pid namespace: none survived the init.
    let sleeping = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("cmdline")).ok())
        .filter(|c| c == "sleep\u{0}1000\u{0}")
        .count();
    assert_eq!(sleeping, 0);

    // `destroy` waits until the cgroups are gone, even right after a command that left
    // processes behind (the kernel holds a cgroup busy while its last tasks are torn down).
    let mut sb = Sandbox::spawn(&Policy::default()).unwrap();
    let out = sb.run(Command::new("/bin/sh").args(["-c", "sleep 1000 & sleep 1000 & echo started"])).unwrap();
    assert!(out.success());
    let cgroups = common::sandbox_cgroups();
    assert_eq!(!cgroups.is_empty(), common::has_cgroups(&sb), "cgroups found: {cgroups:?}");
    sb.destroy().unwrap();
    let left: Vec<_> = cgroups.into_iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "destroy returned with cgroups left: {left:?}");
}
