//! Each sandbox's cgroup, as the kernel shows it: where the sandbox's init lives, the limits
//! written there, and (cgroup v2) the subtree sandpool makes in its own cgroup. Where no
//! cgroup is usable (an unprivileged user without delegation), the tests say so and skip.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use sandpool::sandbox::{Enforcement, Sandbox};

/// The cgroup v2 mount, if v2 is mounted.
fn v2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(PathBuf::from)
        .find(|m| m.join("cgroup.controllers").exists())
}

/// Where process `pid` lives in the v2 hierarchy, and in v1 `controller`'s.
fn cgroup_of(pid: u32, controller: Option<&str>) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        match controller {
            None => (controllers.is_empty()).then(|| path.to_string()),
            Some(c) => controllers.split(',').any(|x| x == c).then(|| path.to_string()),
        }
    })?;
    let base = match controller {
        None => v2_root()?,
        Some(c) => Path::new("/sys/fs/cgroup").join(c),
    };
    Some(base.join(rel.trim_start_matches('/')))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_string()
}

#[test]
fn a_sandbox_lives_in_its_own_cgroup_with_its_limits() {
    let sb = Sandbox::spawn(&policy_builder().memory_mib(96).max_processes(20).cpus(0.5).build().unwrap()).unwrap();
    let memory = sb.isolation().limit("memory").unwrap().enforced_by;
    let cpu = sb.isolation().limit("cpu").unwrap().enforced_by;
    let init = sb.pid() as u32;
    match memory {
        Enforcement::CgroupV2 => {
            let dir = cgroup_of(init, None).expect("the init has a cgroup v2");
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with(&format!("sb-{}-", std::process::id())), "{}", dir.display());
            let parent = dir.parent().unwrap();
            assert_eq!(parent.file_name().unwrap(), "sandpool", "{}", dir.display());
            assert_eq!(read(&dir.join("memory.max")), (96u64 << 20).to_string());
            assert_eq!(read(&dir.join("memory.swap.max")), "0");
            assert_eq!(read(&dir.join("pids.max")), (20 + 2).to_string(), "the init and spawner on top");
            if cpu == Enforcement::CgroupV2 {
                assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
            }
            // We live in a leaf beside the subtree, unless we started in the root cgroup.
            let own = cgroup_of(std::process::id(), None).unwrap();
            if own != v2_root().unwrap() {
                assert_eq!(own.file_name().unwrap(), "sandpool-host", "{}", own.display());
                assert_eq!(own.parent(), parent.parent(), "the leaf and the subtree share our cgroup");
            }
            drop(sb);
            assert!(sandbox_cgroups_once_removed().is_empty(), "the sandbox's cgroup goes with it");
        }
        Enforcement::CgroupV1 => {
            let dir = cgroup_of(init, Some("memory")).expect("the init has a v1 memory cgroup");
            assert!(
                dir.to_string_lossy().contains(&format!("/sandpool/sb-{}-", std::process::id())),
                "{}",
                dir.display()
            );
            assert_eq!(read(&dir.join("memory.limit_in_bytes")), (96u64 << 20).to_string());
            let pids = cgroup_of(init, Some("pids")).unwrap();
            assert_eq!(read(&pids.join("pids.max")), (20 + 2).to_string(), "the init and spawner on top");
            if cpu == Enforcement::CgroupV1 {
                let cpu_dir = cgroup_of(init, Some("cpu")).unwrap();
                assert_eq!(read(&cpu_dir.join("cpu.cfs_quota_us")), "50000");
                assert_eq!(read(&cpu_dir.join("cpu.cfs_period_us")), "100000");
            }
        }
        other => skip(
            "a_sandbox_lives_in_its_own_cgroup_with_its_limits",
            &format!("memory is enforced by {other} here, not a cgroup"),
        ),
    }
}
