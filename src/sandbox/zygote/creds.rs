//! Who the zygote and each spawner are: the sandbox's uid, the capabilities they keep, and
//! what they lock for good.

use std::io;

use rustix::process::{DumpableBehavior, Gid, Uid, set_child_subreaper, set_dumpable_behavior};
use rustix::thread::{
    CapabilitiesSecureBits, CapabilitySet, CapabilitySets, clear_ambient_capability_set,
    remove_capability_from_bounding_set, set_capabilities, set_capabilities_secure_bits, set_no_new_privs,
    set_thread_groups, set_thread_res_gid, set_thread_res_uid,
};

/// Takes on the sandbox's uid and gid (`setgroups(2)`, `setresgid(2)`, `setresuid(2)`),
/// keeping the zygote's capabilities (`SECBIT_NO_SETUID_FIXUP`). The zygote is
/// single-threaded, so rustix's per-thread calls change the whole process.
pub(crate) fn become_user(uid: u32, gid: u32) -> io::Result<()> {
    set_capabilities_secure_bits(CapabilitiesSecureBits::NO_SETUID_FIXUP)?;
    // With setgroups denied (unprivileged hosts) the host user's groups stay; elsewhere
    // drop every supplementary group.
    match set_thread_groups(&[]) {
        Ok(()) | Err(rustix::io::Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let gid = Gid::from_raw(gid);
    set_thread_res_gid(gid, gid, gid)?;
    let uid = Uid::from_raw(uid);
    set_thread_res_uid(uid, uid, uid)?;
    Ok(())
}

/// `prctl(PR_CAPBSET_DROP)` for every capability up to `last_cap`, then locks the secure bits
/// (`PR_SET_SECUREBITS`) so that no later exec can regain capabilities.
pub(crate) fn drop_bounding_set_and_lock(last_cap: u32) -> io::Result<()> {
    for cap in 0..=last_cap.min(63) {
        remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << cap))?;
    }
    let bits = CapabilitiesSecureBits::NO_ROOT
        | CapabilitiesSecureBits::NO_ROOT_LOCKED
        | CapabilitiesSecureBits::NO_SETUID_FIXUP
        | CapabilitiesSecureBits::NO_SETUID_FIXUP_LOCKED
        | CapabilitiesSecureBits::KEEP_CAPS_LOCKED
        | CapabilitiesSecureBits::NO_CAP_AMBIENT_RAISE
        | CapabilitiesSecureBits::NO_CAP_AMBIENT_RAISE_LOCKED;
    Ok(set_capabilities_secure_bits(bits)?)
}

/// `prctl(PR_SET_DUMPABLE, 0)`: keeps commands (same uid) out of the process's `/proc`
/// entries and from tracing it.
pub(crate) fn set_not_dumpable() -> io::Result<()> {
    Ok(set_dumpable_behavior(DumpableBehavior::NotDumpable)?)
}

/// The spawner's own `oom_score_adj`, held open. Commands are born with the highest score:
/// the kernel copies the score into a child at `clone`, so the spawner takes that score for
/// each clone only and then goes back to its own (an unprivileged process may lower its score
/// back to where it was). Out of memory, the kernel then kills commands first, and never the
/// sandbox's init or spawner for them: its victim is otherwise the largest process, and a
/// command can fill memory it does not own (tmpfs files, socket and pipe buffers) while
/// staying small. A write that fails changes only that order, so its error is not kept.
pub(crate) struct OomScore {
    file: std::fs::File,
    own: Vec<u8>,
}

impl OomScore {
    /// Opens `/proc/self/oom_score_adj` (before Landlock). A non-dumpable process's `/proc`
    /// files belong to root, so the process is made dumpable for the open and left dumpable:
    /// the caller makes it non-dumpable again before anything untrusted runs.
    pub(crate) fn open() -> io::Result<OomScore> {
        use std::io::Read;
        set_dumpable_behavior(DumpableBehavior::Dumpable)?;
        let mut file = std::fs::OpenOptions::new().read(true).write(true).open("/proc/self/oom_score_adj")?;
        let mut own = String::new();
        file.read_to_string(&mut own)?;
        Ok(OomScore { file, own: own.trim().as_bytes().to_vec() })
    }

    /// Takes the commands' score, until [`back_to_own`](Self::back_to_own).
    pub(crate) fn for_commands(&self) {
        let _ = std::os::unix::fs::FileExt::write_at(&self.file, b"1000", 0);
    }

    /// Goes back to the score the process had.
    pub(crate) fn back_to_own(&self) {
        let _ = std::os::unix::fs::FileExt::write_at(&self.file, &self.own, 0);
    }
}

/// The one capability a spawner keeps: `CAP_CHECKPOINT_RESTORE` (Linux 5.9+, number 40), or
/// `CAP_SYS_ADMIN` before it, for `ns_last_pid` and the `*_next_id` files. It never reaches a
/// command: the command's `execve` as a non-root uid, with no inheritable or ambient
/// capability and an empty bounding set, drops it.
pub(crate) fn pid_counter_capability(last_cap: u32) -> CapabilitySet {
    if last_cap >= 40 { CapabilitySet::CHECKPOINT_RESTORE } else { CapabilitySet::SYS_ADMIN }
}

/// Confines a spawner for good: child subreaper (every orphan of its commands comes back to
/// it), not dumpable, `no_new_privs`, and of all capabilities only `keep` (effective and
/// permitted; none inheritable or ambient, so an `execve` by the sandbox's non-root uid, with
/// the bounding set empty, ends with none). Landlock comes between `no_new_privs` and the
/// capabilities: `restrict` is called there.
pub(crate) fn confine_spawner<T>(
    keep: CapabilitySet,
    restrict: impl FnOnce() -> io::Result<T>,
) -> Result<T, (&'static str, io::Error)> {
    let step = |what: &'static str| move |e: rustix::io::Errno| (what, io::Error::from(e));
    set_child_subreaper(Some(rustix::process::getpid())).map_err(step("become a subreaper"))?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable).map_err(step("make the spawner non-dumpable"))?;
    set_no_new_privs(true).map_err(step("set no_new_privs"))?;
    let restricted = restrict().map_err(|e| ("enforce Landlock", e))?;
    clear_ambient_capability_set().map_err(step("clear ambient capabilities"))?;
    let sets = CapabilitySets { effective: keep, permitted: keep, inheritable: CapabilitySet::empty() };
    set_capabilities(None, sets).map_err(step("drop capabilities"))?;
    Ok(restricted)
}
