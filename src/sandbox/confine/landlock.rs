//! The commands' Landlock ruleset: a second wall behind the mount namespace, built with the
//! [`landlock`] crate.
//!
//! Everything visible is readable and executable; only `/tmp`, `/dev/shm`, `/dev/mqueue`, the
//! device nodes and the read-write binds are writable. From ABI 6 the ruleset also scopes
//! abstract unix sockets and signals to the sandbox. What the kernel enforced is what
//! [`Ruleset::restrict_self`] reports, not a guess from ABI numbers.

use std::io;
use std::os::fd::BorrowedFd;

use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, RulesetAttr, RulesetCreated,
    RulesetCreatedAttr, RulesetStatus, Scope,
};

use super::super::policy::Requirement;
use super::super::protocol::LandlockEnforcement;

/// A ruleset built on the paths of one session, ready to enforce on its spawner.
pub(crate) struct Ruleset {
    created: RulesetCreated,
    /// Whether it asks for scoping (abstract sockets, signals).
    pub scoped: bool,
}

fn to_io(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

/// The compatibility level a [`Requirement`] asks of the crate: a required ruleset that the
/// kernel cannot take in full fails; a best-effort one takes what the kernel has.
fn compat_level(requirement: Requirement) -> CompatLevel {
    match requirement {
        Requirement::Required => CompatLevel::HardRequirement,
        Requirement::BestEffort | Requirement::Off => CompatLevel::BestEffort,
    }
}

/// Builds the ruleset for this sandbox's tree as mounted now (a rule names an inode: each
/// session, with its own `/proc` and session directories, builds its own). It handles every
/// access right of ABI `abi` (the kernel's, or the policy's cap) and scoping from ABI 6;
/// `writable` lists the paths (inside) that commands may change, and `writable_roots` the
/// roots of file systems not mounted yet that commands may change once they are (the session
/// directories a reset in place mounts).
pub(crate) fn build(
    abi: u32,
    requirement: Requirement,
    writable: &[&str],
    writable_roots: &[BorrowedFd<'_>],
) -> io::Result<Ruleset> {
    let abi = ABI::from(abi.min(i32::MAX as u32) as i32);
    let handled = AccessFs::from_all(abi);
    let scopes = Scope::from_all(abi);
    let mut ruleset = landlock::Ruleset::default().set_compatibility(compat_level(requirement));
    ruleset = ruleset.handle_access(handled).map_err(to_io)?;
    if !scopes.is_empty() {
        ruleset = ruleset.scope(scopes).map_err(to_io)?;
    }
    let mut created = ruleset.create().map_err(to_io)?;
    let rule = |path: &str, access: BitFlags<AccessFs>| -> io::Result<PathBeneath<PathFd>> {
        Ok(PathBeneath::new(PathFd::new(path).map_err(to_io)?, access & handled))
    };
    created = created.add_rule(rule("/", AccessFs::from_read(abi))?).map_err(to_io)?;
    let devices =
        AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::ReadDir | AccessFs::IoctlDev | AccessFs::Truncate;
    created = created.add_rule(rule("/dev", devices)?).map_err(to_io)?;
    // What else a command may write under /proc (`/proc/self/comm`, `oom_score_adj`, ...)
    // the kernel decides. Truncate too: a shell's `>` opens with O_TRUNC, which procfs
    // ignores.
    let proc = AccessFs::ReadFile | AccessFs::ReadDir | AccessFs::WriteFile | AccessFs::Truncate;
    created = created.add_rule(rule("/proc", proc)?).map_err(to_io)?;
    for path in writable {
        let mut access = handled & !AccessFs::IoctlDev;
        if !std::fs::metadata(path)?.is_dir() {
            // A rule on a file may only name the rights that apply to files.
            access &= AccessFs::from_file(abi);
        }
        created = created.add_rule(rule(path, access)?).map_err(to_io)?;
    }
    for root in writable_roots {
        let access = handled & !AccessFs::IoctlDev;
        created = created.add_rule(PathBeneath::new(*root, access)).map_err(to_io)?;
    }
    Ok(Ruleset { created, scoped: !scopes.is_empty() })
}

impl Ruleset {
    /// Enforces the ruleset on the calling process for good
    /// ([`landlock_restrict_self(2)`](https://man7.org/linux/man-pages/man2/landlock_restrict_self.2.html);
    /// `no_new_privs` must be set already, or is set here), and says how much of it the
    /// kernel took.
    pub(crate) fn restrict_self(self) -> io::Result<LandlockEnforcement> {
        let status = self.created.restrict_self().map_err(to_io)?;
        Ok(match status.ruleset {
            RulesetStatus::FullyEnforced => LandlockEnforcement::Full,
            RulesetStatus::PartiallyEnforced => LandlockEnforcement::Partial,
            RulesetStatus::NotEnforced => LandlockEnforcement::None,
        })
    }
}
