//! What on this host refuses the namespaces every sandbox needs, said in one sentence with
//! how to allow it: a container's seccomp profile (Docker's default), Ubuntu's AppArmor
//! restriction of unprivileged user namespaces, or user namespaces turned off.

use std::fs;

fn read(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Whether a seccomp filter is on this process (`Seccomp: 2` in `/proc/self/status`): a
/// container runtime's, as a rule.
fn seccomp_filtered() -> bool {
    read("/proc/self/status").is_some_and(|s| s.lines().any(|l| l.split_whitespace().eq(["Seccomp:", "2"])))
}

fn root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Why the host refused to make the sandbox's namespaces with `errno`, if it is one of the
/// known blockers. `at_clone`: the refusal came from the clone itself (`clone3`, or `clone`
/// where `clone3` answers `ENOSYS`), not from a later step inside the new namespaces, which
/// is where AppArmor's restriction shows.
pub(crate) fn what_refuses_namespaces(errno: i32, at_clone: bool) -> Option<String> {
    if at_clone && matches!(errno, libc::ENOSYS | libc::EPERM) && seccomp_filtered() {
        return Some(
            "a seccomp filter on sandpool refuses to create namespaces (as a container's default profile \
             does, Docker's among them): run the container with `--security-opt seccomp=unconfined`, or with a \
             profile that allows clone, unshare and setns with namespace flags"
                .into(),
        );
    }
    if read("/proc/sys/user/max_user_namespaces").is_some_and(|v| v == "0") {
        return Some(
            "user namespaces are turned off on this host (user.max_user_namespaces=0): allow them with \
             `sysctl -w user.max_user_namespaces=15000`"
                .into(),
        );
    }
    if !root() && read("/proc/sys/kernel/unprivileged_userns_clone").is_some_and(|v| v == "0") {
        return Some(
            "unprivileged user namespaces are turned off (kernel.unprivileged_userns_clone=0): allow them with \
             `sysctl -w kernel.unprivileged_userns_clone=1`, or run sandpool as root"
                .into(),
        );
    }
    if !root()
        && matches!(errno, libc::EPERM | libc::EACCES)
        && read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").is_some_and(|v| v == "1")
    {
        return Some(
            "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1, as \
             on Ubuntu 24.04): give sandpool an AppArmor profile that allows `userns,`, or \
             `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`"
                .into(),
        );
    }
    if at_clone && errno == libc::ENOSPC {
        return Some(
            "the host's limit of user namespaces is reached (user.max_user_namespaces): raise it with \
             `sysctl -w user.max_user_namespaces=15000`"
                .into(),
        );
    }
    None
}
