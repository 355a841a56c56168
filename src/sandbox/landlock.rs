//! The commands' Landlock ruleset: a second wall behind the mount namespace.
//!
//! Everything visible is readable and executable; only `/tmp`, `/dev/shm`, the device nodes
//! and the read-write binds are writable. With ABI 6 the ruleset also scopes abstract unix
//! sockets and signals to the sandbox.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::sys;

const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
const ABI1_ALL: u64 = (1 << 13) - 1;
const REFER: u64 = 1 << 13;
const TRUNCATE: u64 = 1 << 14;
const IOCTL_DEV: u64 = 1 << 15;
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

/// Every file-system access right the given ABI knows.
fn handled_fs(abi: u32) -> u64 {
    let mut all = ABI1_ALL;
    if abi >= 2 {
        all |= REFER;
    }
    if abi >= 3 {
        all |= TRUNCATE;
    }
    if abi >= 5 {
        all |= IOCTL_DEV;
    }
    all
}

/// A built ruleset, ready for `landlock_restrict_self` in each command child.
pub(crate) struct Ruleset {
    pub fd: OwnedFd,
    pub scoped: bool,
}

/// Builds the ruleset for this sandbox's tree as mounted now (a rule names an inode: each
/// session, with its own `/proc` and session directories, builds its own); `writable` lists
/// the paths (inside) that commands may change.
pub(crate) fn build(abi: u32, writable: &[&str]) -> io::Result<Ruleset> {
    let handled = handled_fs(abi);
    let scoped = if abi >= 6 { SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL } else { 0 };
    let fd = sys::landlock_create_ruleset(handled, scoped)?;
    let read = (READ_FILE | READ_DIR | EXECUTE) & handled;
    sys::landlock_allow_beneath(fd.as_fd(), sys::open_path("/")?.as_fd(), read)?;
    let devices = (READ_FILE | WRITE_FILE | READ_DIR | IOCTL_DEV | TRUNCATE) & handled;
    sys::landlock_allow_beneath(fd.as_fd(), sys::open_path("/dev")?.as_fd(), devices)?;
    // What else a command may write under /proc (`/proc/self/comm`, `oom_score_adj`, ...)
    // the kernel decides.
    sys::landlock_allow_beneath(
        fd.as_fd(),
        sys::open_path("/proc")?.as_fd(),
        (READ_FILE | READ_DIR | WRITE_FILE) & handled,
    )?;
    for path in writable {
        let mut access = handled & !IOCTL_DEV;
        if !std::fs::metadata(path)?.is_dir() {
            // A rule on a file may only name the rights that apply to files.
            access &= EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE;
        }
        sys::landlock_allow_beneath(fd.as_fd(), sys::open_path(path)?.as_fd(), access)?;
    }
    Ok(Ruleset { fd, scoped: scoped != 0 })
}
