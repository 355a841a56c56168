//! Idmapped binds: a bind whose owner the sandbox's user is not, seen through a user
//! namespace that maps that owner to the sandbox's host uid.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::CWD;
use rustix::mount::{OpenTreeFlags, open_tree};

use super::super::policy::Policy;
use super::super::sys;

/// Idmapped copies of the mount trees of the binds the sandbox's user could not use otherwise
/// (a read-only bind whose root others cannot read, a read-write one others cannot write), so
/// that the sandbox acts as the owner of the bound path. Root hosts only: an unprivileged
/// host's sandbox user already is the owner of what it binds. Where an idmapped mount is
/// impossible (the file system does not support it), the bind falls back to a plain one and
/// the report says so.
pub(crate) fn idmapped_trees(policy: &Policy, host_uid: u32, missing: &mut Vec<String>) -> (Vec<bool>, Vec<OwnedFd>) {
    use std::os::unix::fs::MetadataExt;
    let mut has_tree = Vec::new();
    let mut trees = Vec::new();
    for b in &policy.binds {
        let meta = match std::fs::metadata(&b.path) {
            Ok(m) => m,
            Err(e) => {
                missing.push(format!("bind of {}: {e}", b.path.display()));
                has_tree.push(false);
                continue;
            }
        };
        // Only where the sandbox's user could not otherwise use the bind's root: mapping its
        // owner hands the sandbox every file of that owner below it, which `--ro /etc` must
        // not do for /etc/shadow.
        let others = meta.mode() & 0o007;
        let (r, w, x) = (others & 4 != 0, others & 2 != 0, others & 1 != 0);
        let usable = match (meta.is_dir(), b.writable) {
            (true, true) => r && w && x,
            (true, false) => r && x,
            (false, true) => r && w,
            (false, false) => r,
        };
        if usable {
            has_tree.push(false);
            continue;
        }
        match idmapped_tree(&b.path, meta.uid(), meta.gid(), host_uid) {
            Ok(t) => {
                trees.push(t);
                has_tree.push(true);
            }
            Err(e) => {
                missing.push(format!(
                    "idmapped bind of {}: {e}; bound as is, the sandbox's user gets only what host uid {host_uid} may do there",
                    b.path.display()
                ));
                has_tree.push(false);
            }
        }
    }
    (has_tree, trees)
}

fn idmapped_tree(path: &std::path::Path, uid: u32, gid: u32, host_uid: u32) -> io::Result<OwnedFd> {
    /// User namespaces kept for the next sandboxes (making one costs a clone and two map
    /// writes); each sandbox of a root host has a uid of its own, so only the latest few.
    const KEPT: usize = 32;
    type Key = (u32, u32, u32);
    static USERNS: std::sync::Mutex<Vec<(Key, OwnedFd)>> = std::sync::Mutex::new(Vec::new());
    let c_path = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let tree = open_tree(
        CWD,
        c_path.as_c_str(),
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_RECURSIVE,
    )?;
    let key = (uid, gid, host_uid);
    let mut cache = USERNS.lock().unwrap_or_else(|p| p.into_inner());
    let userns = match cache.iter().position(|(k, _)| *k == key) {
        Some(i) => &cache[i].1,
        None => {
            let ns = sys::userns_with_maps(&format!("{uid} {host_uid} 1\n"), &format!("{gid} {host_uid} 1\n"))?;
            if cache.len() == KEPT {
                cache.remove(0);
            }
            cache.push((key, ns));
            &cache.last().expect("just pushed").1
        }
    };
    sys::idmap_tree(tree.as_fd(), userns.as_fd())?;
    Ok(tree)
}
