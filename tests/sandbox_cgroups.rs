//! Each sandbox's cgroup, as the kernel shows it: where the sandbox's init lives, the limits
//! written there, and (cgroup v2) the subtree sandpool makes in its own cgroup. Where no
//! cgroup is usable (an unprivileged user without delegation), the tests say so and skip.

mod common;

use std::path::Path;

use common::*;
use sandpool::sandbox::{Command, Enforcement, Sandbox};

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
            // The init lives in a leaf of its own, beside the commands' cgroup, which carries
            // the limit; the sandbox's cgroup above them allows 32 MiB more.
            let leaf = cgroup_of(init, None).expect("the init has a cgroup v2");
            assert_eq!(leaf.file_name().unwrap(), "init", "{}", leaf.display());
            let dir = leaf.parent().unwrap().to_path_buf();
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with(&format!("sb-{}-", std::process::id())), "{}", dir.display());
            let parent = dir.parent().unwrap();
            assert_eq!(parent.file_name().unwrap(), "sandpool", "{}", dir.display());
            let commands = dir.join("cmd");
            assert_eq!(read(&commands.join("memory.max")), (96u64 << 20).to_string());
            assert_eq!(read(&commands.join("memory.swap.max")), "0");
            assert_eq!(read(&dir.join("memory.max")), ((96u64 + 32) << 20).to_string());
            assert_eq!(read(&dir.join("memory.swap.max")), "0");
            assert!(read(&dir.join("cgroup.subtree_control")).contains("memory"));
            // A command runs there, alone: not the init, nor the spawner.
            let mut child = sb.start(Command::new("/bin/sleep").arg("10")).unwrap();
            assert_ne!(child.id(), 0, "it started");
            let procs = read(&commands.join("cgroup.procs"));
            assert_eq!(procs.lines().count(), 1, "the command alone: {procs}");
            assert!(!procs.lines().any(|t| t == init.to_string()), "not the init: {procs}");
            assert!(read(&dir.join("cgroup.procs")).is_empty(), "nothing in the sandbox's cgroup itself");
            child.kill().unwrap();
            child.wait().unwrap();
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
            // The commands' own cgroup below the sandbox's carries the limit; processes and TCP
            // buffers, which v1 counts apart, share its 96 MiB: 84 and 12. The sandbox's own,
            // where the init and spawner live, allows 32 MiB more.
            let commands = dir.join("cmd");
            let tcp = commands.join("memory.kmem.tcp.limit_in_bytes");
            let processes = if tcp.exists() { 84u64 } else { 96 };
            assert_eq!(read(&commands.join("memory.limit_in_bytes")), (processes << 20).to_string());
            if tcp.exists() {
                assert_eq!(read(&tcp), (12u64 << 20).to_string(), "socket buffers within the limit, not beside it");
            }
            assert_eq!(read(&dir.join("memory.limit_in_bytes")), ((processes + 32) << 20).to_string());
            // A command runs there, alone: not the init, nor the spawner.
            let mut child = sb.start(Command::new("/bin/sleep").arg("10")).unwrap();
            assert_ne!(child.id(), 0, "it started");
            let tasks = read(&commands.join("tasks"));
            assert_eq!(tasks.lines().count(), 1, "the command alone: {tasks}");
            assert!(!tasks.lines().any(|t| t == init.to_string()), "not the init: {tasks}");
            child.kill().unwrap();
            child.wait().unwrap();
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

/// Out of memory, the kernel kills a command, never the sandbox's own processes. Memory a
/// command fills without owning it (here a file in `/tmp`: tmpfs pages count against the
/// limit, and with no swap they stay) leaves every process small, so a victim picked by size
/// alone could be the spawner, and then the command's end is lost with its session. The
/// commands start with the highest `oom_score_adj`, above the init's and the spawner's.
#[test]
fn out_of_memory_kills_the_command_not_the_sandbox() {
    const TEST: &str = "out_of_memory_kills_the_command_not_the_sandbox";
    let mut sb = Sandbox::spawn(&policy_builder().memory_mib(64).tmp_size_mib(256).build().unwrap()).unwrap();
    if !has_cgroups(&sb) {
        skip(TEST, "memory is not limited by a cgroup here");
        return;
    }
    // The probe works: the same fill fits where there is room for it.
    let fits = sb.run(Command::new("/bin/sh").args(["-c", "exec head -c 16M /dev/zero > /tmp/fill"])).unwrap();
    assert!(fits.status.success(), "16 MiB into /tmp: {fits:?}");
    assert!(!sb.oom_killed(), "nothing was killed yet");
    assert_eq!(fits.usage.sandbox_oom_kills, Some(0), "{fits:?}");
    let out = sb
        .run(Command::new("/bin/sh").args(["-c", "exec head -c 200M /dev/zero > /tmp/fill"]))
        .unwrap_or_else(|e| panic!("the command's end was lost (its sandbox's own processes were killed?): {e}"));
    assert_eq!(out.status.signal(), Some(9), "the command itself is killed: {:?}", out.status);
    assert!(sb.oom_killed(), "and the kill is an out-of-memory one");
    assert_eq!(out.usage.sandbox_oom_kills, Some(1), "of this command: {:?}", out.usage);
    assert!(out.usage.oom_killed());
}

/// Whatever a command does to its own `oom_score_adj`, out of memory the kernel takes a
/// command, never the sandbox's init or spawner: here the command lowers its score to the
/// floor it inherits (0) and fills `/tmp` (memory it does not own) while staying small,
/// which, with everyone in one cgroup, made the larger init the victim. Commands live in a
/// cgroup of their own below the sandbox's, which carries the limit.
#[test]
fn a_command_that_lowers_its_oom_score_still_is_the_one_killed() {
    const TEST: &str = "a_command_that_lowers_its_oom_score_still_is_the_one_killed";
    let mut sb = Sandbox::spawn(&policy_builder().memory_mib(64).tmp_size_mib(256).build().unwrap()).unwrap();
    if !has_cgroups(&sb) {
        return skip(TEST, "memory is not limited by a cgroup here");
    }
    // The probe works: the command does lower its score.
    let lowered = sb
        .run(Command::new("/bin/sh").args(["-c", "echo 0 > /proc/self/oom_score_adj; cat /proc/self/oom_score_adj"]))
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&lowered.stdout).trim(), "0", "{lowered:?}");
    let script = "echo 0 > /proc/self/oom_score_adj && exec head -c 200M /dev/zero > /tmp/fill";
    let out = sb
        .run(Command::new("/bin/sh").args(["-c", script]))
        .unwrap_or_else(|e| panic!("the sandbox's own processes were killed: {e}"));
    assert_eq!(out.status.signal(), Some(9), "the command itself is killed: {out:?}");
    assert!(sb.oom_killed(), "for memory");
    assert!(sb.is_alive());
}

/// The sandbox's cgroup namespace is rooted at its own cgroup, in every mode (v1, v2 born in
/// its cgroup, v2 joined after the clone): inside, every hierarchy shows `/`, where the host
/// sees the sandbox's cgroup, `sandpool/sb-...`, which is the positive control.
#[test]
fn the_cgroup_namespace_is_rooted_at_the_sandboxs_own_cgroup() {
    let mut sb = Sandbox::spawn(&default_policy()).unwrap();
    if !has_cgroups(&sb) {
        return skip("the_cgroup_namespace_is_rooted_at_the_sandboxs_own_cgroup", "no cgroup for sandboxes here");
    }
    let host_view = std::fs::read_to_string(format!("/proc/{}/cgroup", sb.pid())).unwrap();
    let ours = format!("/sb-{}-", std::process::id());
    assert!(host_view.contains(&ours), "the host sees the sandbox's cgroup: {host_view}");
    let inside = sb.run(Command::new("/bin/cat").arg("/proc/self/cgroup")).unwrap();
    let inside = String::from_utf8_lossy(&inside.stdout).into_owned();
    assert!(!inside.is_empty() && !inside.contains("sb-"), "inside, no host path: {inside}");
    // A command sits at the root, or (cgroup v1 memory) in the commands' own cgroup below it.
    for (host_line, inside_line) in host_view.lines().zip(inside.lines()) {
        if host_line.contains(&ours) {
            assert!(inside_line.ends_with(":/") || inside_line.ends_with(":/cmd"), "{inside_line} (host: {host_line})");
        }
    }
}
