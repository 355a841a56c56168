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
    /// The access rights it handles.
    handled: u64,
}

impl Ruleset {
    /// Lets commands read and write the `/proc` mounted now (files such as
    /// `/proc/self/oom_score_adj` or `comm`; what else they may write there the kernel
    /// decides). The session's `/proc` is mounted by the spawner, after the ruleset was built:
    /// a rule names an inode, so it must be added once that mount exists.
    pub(crate) fn allow_proc(&self) -> io::Result<()> {
        let access = (READ_FILE | READ_DIR | WRITE_FILE) & self.handled;
        sys::landlock_allow_beneath(self.fd.as_fd(), sys::open_path("/proc")?.as_fd(), access)
    }
}

/// Builds the ruleset for this sandbox's tree; `writable` lists the paths (inside) that
/// commands may change.
pub(crate) fn build(abi: u32, writable: &[&str]) -> io::Result<Ruleset> {
    let handled = handled_fs(abi);
    let scoped = if abi >= 6 { SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL } else { 0 };
    let fd = sys::landlock_create_ruleset(handled, scoped)?;
    let read = (READ_FILE | READ_DIR | EXECUTE) & handled;
    sys::landlock_allow_beneath(fd.as_fd(), sys::open_path("/")?.as_fd(), read)?;
    let devices = (READ_FILE | WRITE_FILE | READ_DIR | IOCTL_DEV | TRUNCATE) & handled;
    sys::landlock_allow_beneath(fd.as_fd(), sys::open_path("/dev")?.as_fd(), devices)?;
    for path in writable {
        let mut access = handled & !IOCTL_DEV;
        if !std::fs::metadata(path)?.is_dir() {
            // A rule on a file may only name the rights that apply to files.
            access &= EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE;
        }
        sys::landlock_allow_beneath(fd.as_fd(), sys::open_path(path)?.as_fd(), access)?;
    }
    Ok(Ruleset { fd, scoped: scoped != 0, handled })
}
