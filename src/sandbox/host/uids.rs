//! One host uid per live sandbox, on a root host: what the kernel budgets or checks per user
//! (`pipe-user-pages-soft`, `RLIMIT_NPROC`, inotify and key quotas, `kill` permission, the
//! owner of a file left in a bind) is then no sandbox's but its own.
//!
//! A uid is claimed host-wide, across every process that uses sandpool, with an exclusive
//! lock on one byte of a lock file (`fcntl(F_OFD_SETLK)`, byte N for uid base + N), held by
//! the sandbox: the kernel releases it when the sandbox is dropped or its process dies, so
//! nothing is left to clean up. The lock file lives in a directory only root may use.

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use super::super::sys;

/// The first host uid (and gid) of the range a root host gives its sandboxes.
pub const HOST_UID_BASE: u32 = 1_000_000_000;

/// How many uids the range holds: at most this many sandboxes live at once on a root host.
pub const HOST_UID_COUNT: u32 = 65_536;

/// Where the lock file may live, in order: a directory made (or found) owned by root, mode
/// 0700, never a symlink.
const LOCK_DIRS: [&str; 2] = ["/run/sandpool", "/dev/shm/sandpool-root"];

/// A host uid held for one live sandbox: while this lives, no other sandbox of this host gets
/// it.
#[derive(Debug)]
pub(crate) struct HostUid {
    /// The uid, also the gid.
    pub(crate) uid: u32,
    /// The lock file's description that holds the uid's byte.
    _claim: OwnedFd,
}

/// Claims the next free uid of the range. Fails when the lock file cannot be kept (no root-only
/// directory for it) or every uid is taken.
pub(crate) fn claim() -> io::Result<HostUid> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let path = lock_file()?;
    // One description per sandbox: locks of one description never conflict with each other.
    let file: OwnedFd = fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_CLOEXEC).open(&path)?.into();
    // Processes start at different places, and each goes on from where it was.
    let start = std::process::id().wrapping_mul(2_654_435_761) % HOST_UID_COUNT;
    for _ in 0..HOST_UID_COUNT {
        let n = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % HOST_UID_COUNT;
        if sys::lock_byte(file.as_fd(), u64::from(n))? {
            return Ok(HostUid { uid: HOST_UID_BASE + n, _claim: file });
        }
    }
    Err(io::Error::new(io::ErrorKind::ResourceBusy, "every host uid of sandpool's range is held by a live sandbox"))
}

/// The lock file, in the first directory of [`LOCK_DIRS`] that is (or can be made) root's
/// own; found once per process.
fn lock_file() -> io::Result<std::path::PathBuf> {
    static FOUND: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    if let Some(path) = FOUND.get() {
        return Ok(path.clone());
    }
    let path = find_lock_file()?;
    Ok(FOUND.get_or_init(|| path).clone())
}

fn find_lock_file() -> io::Result<std::path::PathBuf> {
    let mut last = io::Error::from(io::ErrorKind::NotFound);
    for dir in LOCK_DIRS {
        match root_only_dir(Path::new(dir)) {
            Ok(()) => {
                let path = Path::new(dir).join("host-uids.lock");
                let made = fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&path);
                match made {
                    Ok(_) => return Ok(path),
                    Err(e) => last = e,
                }
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Makes `dir` (mode 0700) if it is missing; refuses one that is a symlink, not root's, or
/// open to others.
fn root_only_dir(dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not a directory of root's alone", dir.display()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_claims_never_share_a_uid_and_a_dropped_one_is_free_again() {
        if rustix::process::geteuid().as_raw() != 0 {
            // Past the harness's capture, so the skip is said.
            use std::io::Write;
            let _ = writeln!(
                io::stderr(),
                "SKIP live_claims_never_share_a_uid_and_a_dropped_one_is_free_again: needs root"
            );
            return;
        }
        let claims: Vec<HostUid> = (0..64).map(|_| claim().unwrap()).collect();
        let mut uids: Vec<u32> = claims.iter().map(|c| c.uid).collect();
        uids.sort_unstable();
        uids.dedup();
        assert_eq!(uids.len(), claims.len(), "64 live claims, 64 uids");
        assert!(uids.iter().all(|u| (HOST_UID_BASE..HOST_UID_BASE + HOST_UID_COUNT).contains(u)));
        // Another description cannot take a held byte; once dropped, it can.
        let held = claims[0].uid - HOST_UID_BASE;
        let other: OwnedFd = fs::OpenOptions::new().write(true).open(lock_file().unwrap()).unwrap().into();
        assert!(!sys::lock_byte(other.as_fd(), u64::from(held)).unwrap(), "held by a live claim");
        drop(claims);
        assert!(sys::lock_byte(other.as_fd(), u64::from(held)).unwrap(), "free once the claim is dropped");
    }
}
