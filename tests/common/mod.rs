//! Helpers shared by the sandbox tests: the compiled probe, temp dirs, and running the same
//! action inside and outside a sandbox.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command as HostCommand;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sandpool::sandbox::{Command, Killer, Output, Policy, Sandbox};

/// A fresh directory under the system temp dir, world-readable, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sandpool-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        set_mode(&dir, 0o755);
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The probe (`tests/probe/probe.c`), compiled once per test process with the host's `cc`,
/// statically, so it runs inside a sandbox that shows only system directories.
pub fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        // One probe per user and source version, shared by every test process: nothing piles
        // up in /tmp, and concurrent compiles race harmlessly (each renames its own result).
        let source = include_str!("../probe/probe.c");
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(source, &mut hasher);
        let uid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("sandpool-probe-{uid}-{:016x}", std::hash::Hasher::finish(&hasher)));
        let out = dir.join("probe");
        if out.exists() {
            return out;
        }
        std::fs::create_dir_all(&dir).unwrap();
        set_mode(&dir, 0o755);
        // The source travels inside the test binary, so the binary runs anywhere (CI copies it
        // out of the checkout to run it as an unprivileged uid).
        let src = dir.join(format!("probe-{}.c", std::process::id()));
        std::fs::write(&src, source).unwrap();
        let tmp = dir.join(format!("probe-{}", std::process::id()));
        let status = HostCommand::new("cc")
            .args(["-O2", "-static", "-o"])
            .arg(&tmp)
            .arg(&src)
            .status()
            .expect("a C compiler (cc) is needed to build the test probe");
        assert!(status.success(), "compiling the probe failed");
        std::fs::remove_file(&src).unwrap();
        std::fs::rename(&tmp, &out).unwrap();
        out
    })
}

/// The directory that holds the probe, to bind read-only.
pub fn probe_dir() -> &'static Path {
    probe().parent().unwrap()
}

/// Runs the probe on the host, outside any sandbox.
pub fn probe_outside(args: &[&str]) -> String {
    let out = HostCommand::new(probe()).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The Landlock the tests run under, from `SANDPOOL_TEST_LANDLOCK`: unset (this kernel's ABI),
/// an ABI number to cap it at (`5`: as every kernel before 6.12, without signal scoping), or
/// `off`. CI runs the sandbox suites under each, so older kernels are covered on a new one.
pub fn landlock_under_test() -> Option<String> {
    std::env::var("SANDPOOL_TEST_LANDLOCK").ok().filter(|v| !v.is_empty())
}

/// A policy builder with the defaults and the Landlock under test.
pub fn policy_builder() -> sandpool::sandbox::PolicyBuilder {
    match landlock_under_test().as_deref() {
        None => Policy::builder(),
        Some("off") => Policy::builder().landlock(sandpool::sandbox::Requirement::Off),
        Some(abi) => {
            Policy::builder().landlock_max_abi(abi.parse().expect("SANDPOOL_TEST_LANDLOCK: an ABI number or `off`"))
        }
    }
}

/// The default policy with the Landlock under test.
pub fn default_policy() -> Policy {
    policy_builder().build().unwrap()
}

/// A policy that shows the probe (and `extra` binds done by the caller).
pub fn probe_policy() -> sandpool::sandbox::PolicyBuilder {
    policy_builder().ro(probe_dir())
}

/// Runs the probe in `sandbox`.
pub fn probe_inside(sandbox: &mut Sandbox, args: &[&str]) -> String {
    let out = sandbox.run(Command::new(probe()).args(args)).unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `sh -c script` in `sandbox`.
pub fn sh(sandbox: &mut Sandbox, script: &str) -> Output {
    sandbox.run(Command::new("/bin/sh").args(["-c", script])).unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Whether this test process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"))
}

/// Says, past the test harness's capture (straight to the process's stderr), that `test`
/// is skipped and why: a skip is never silent.
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {why}");
}

/// `(pid, ppid, comm)` of every host process (`comm` may hold spaces, so `stat` is split
/// after its last `)`).
pub fn processes() -> Vec<(i32, i32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (head, tail) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_string();
            let ppid = tail.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid, comm))
        })
        .collect()
}

/// The host pid of the sandbox's spawner: the zygote's only child (which names itself
/// `sandpool-spawn` once it runs, maybe just after the sandbox is ready).
pub fn spawner_of(sandbox: &Sandbox) -> i32 {
    let found: Vec<i32> =
        processes().into_iter().filter(|(_, ppid, _)| *ppid == sandbox.pid()).map(|(pid, _, _)| pid).collect();
    assert_eq!(found.len(), 1, "one spawner per sandbox: {found:?}");
    found[0]
}

/// How many processes the sandbox's session holds, as the host sees them: every descendant
/// of the spawner (a command's `/proc` shows only what it may trace).
pub fn session_processes(sandbox: &Sandbox) -> usize {
    let all = processes();
    let mut session = vec![spawner_of(sandbox)];
    let mut i = 0;
    while i < session.len() {
        let parent = session[i];
        session.extend(all.iter().filter(|(_, ppid, _)| *ppid == parent).map(|(pid, _, _)| *pid));
        i += 1;
    }
    session.len() - 1
}

/// Whether the sandbox's tmpfs takes user extended attributes (Linux 6.6+); says so past the
/// harness's capture when it does not, for `test`.
pub fn tmpfs_user_xattrs(test: &str) -> bool {
    let mut sb = Sandbox::spawn(&probe_policy().build().unwrap()).unwrap();
    let answer = probe_inside(&mut sb, &["setxattr", "/tmp"]);
    if answer == format!("err {}", libc::EOPNOTSUPP) {
        skip(test, "tmpfs has no user extended attributes here (Linux 6.6+): nothing to leave there");
        return false;
    }
    true
}

/// The cgroup directories of this test process's sandboxes (`sb-<pid>-<n>`), found in every
/// cgroup hierarchy mounted here, v1 and v2 alike: what a "nothing left behind" check must
/// look at, whichever version the host uses.
pub fn sandbox_cgroups() -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let roots: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split_whitespace().next()?;
            let mount_point = pre.split_whitespace().nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .collect();
    let prefix = format!("sb-{}-", std::process::id());
    let mut found = Vec::new();
    let mut todo: Vec<(PathBuf, usize)> = roots.into_iter().map(|r| (r, 0)).collect();
    while let Some((dir, depth)) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                found.push(e.path());
            } else if depth < 6 {
                todo.push((e.path(), depth + 1));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// The cgroup v2 mount, if v2 is mounted.
pub fn v2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(PathBuf::from)
        .find(|m| m.join("cgroup.controllers").exists())
}

/// Where process `pid` lives in the v2 hierarchy, and in v1 `controller`'s.
pub fn cgroup_of(pid: u32, controller: Option<&str>) -> Option<PathBuf> {
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

/// The sandboxes' cgroups still there once they are gone, waiting while the background
/// remover works: a dropped sandbox leaves a cgroup that the kernel still holds busy to it.
/// Generous (the remover itself gives up after 10 s): this bounds a hang, it times nothing.
pub fn sandbox_cgroups_once_removed() -> Vec<PathBuf> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left = sandbox_cgroups();
        if left.is_empty() || std::time::Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Whether `sandbox`'s report says a cgroup (v1 or v2) enforces its memory limit.
pub fn has_cgroups(sandbox: &Sandbox) -> bool {
    use sandpool::sandbox::Enforcement;
    sandbox
        .isolation()
        .limit("memory")
        .is_some_and(|l| matches!(l.enforced_by, Enforcement::CgroupV1 | Enforcement::CgroupV2))
}

/// Kills the child if the test has not finished within a minute; says whether it had to.
pub struct Watchdog {
    fired: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
}

impl Watchdog {
    pub fn new(killer: Killer) -> Watchdog {
        let fired = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let (f, d) = (fired.clone(), done.clone());
        std::thread::spawn(move || {
            for _ in 0..600 {
                if d.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            f.store(true, Ordering::Release);
            let _ = killer.kill();
        });
        Watchdog { fired, done }
    }

    pub fn finish(self) {
        self.done.store(true, Ordering::Release);
        assert!(!self.fired.load(Ordering::Acquire), "the watchdog had to kill the command: it deadlocked");
    }
}

/// What a lease can observe of its session at its start, without timestamps (which differ
/// between any two sandboxes): its pid, the session directories (entries, modes, owners,
/// inode numbers, inode flags), the next file's inode number, System V IPC (objects and the
/// next id), the network namespace's counters and sockets, the processes it can see, its
/// limits, priority, signal and capability state, the kernel's next-id knobs, and its mount
/// points in the order the mount table lists them (by when they were mounted). (Not the
/// inode numbers of mqueue, pipes or sockets: the kernel counts those host-wide, so they
/// differ between any two sandboxes and tell of the host, not of a lease; nor sockstat's
/// host-wide fields and its count of the sockets in use now, which includes the sandbox's own
/// and those the kernel has yet to free; nor `SigQ`, the user's signals queued at that
/// moment; the processes it sees are counted from one `ls`, not a pipeline racing it.)
pub const FINGERPRINT: &str = r#"
echo "pid $$"
ls -lanR --time-style=+ /tmp /dev/shm /dev/mqueue
stat -c '%n %i %a %u %g %s' /tmp /dev/shm
stat -c '%n %a %u %g %s' /dev/mqueue
lsattr -d /tmp /dev/shm 2>&1
touch /tmp/.fp && stat -c 'next inode %i' /tmp/.fp && rm /tmp/.fp
ipcs -a
id=$(ipcmk -M 4096 | awk '{print $NF}') && echo "next shm id $id" && ipcrm -m "$id"
cat /proc/net/dev /proc/net/snmp /proc/net/netstat
sed -E 's/ (orphan|alloc|mem|memory) [0-9]+//g' /proc/net/sockstat /proc/net/sockstat6 | grep -v '^sockets:'
ls /proc > /tmp/.procs && grep -c '^[0-9]' /tmp/.procs && rm /tmp/.procs
ulimit -a
nice
grep -E '^(SigPnd|ShdPnd|SigBlk|SigIgn|SigCgt|Cap|NoNewPrivs|Seccomp|Cpus_allowed)' /proc/self/status
cat /proc/sys/kernel/ns_last_pid /proc/sys/kernel/shm_next_id /proc/sys/kernel/msg_next_id /proc/sys/kernel/sem_next_id
awk '{print $5}' /proc/self/mountinfo
"#;

/// The [`FINGERPRINT`] script without its one step that makes a System V IPC object (the next
/// id is still read): a lease that runs it changes only files in `/tmp`, so it keeps what
/// follows it to a reset in place.
pub fn fingerprint_leaving_files_only() -> String {
    let ipc_object = "id=$(ipcmk -M 4096 | awk '{print $NF}') && echo \"next shm id $id\" && ipcrm -m \"$id\"\n";
    assert!(FINGERPRINT.contains(ipc_object), "the fingerprint's IPC step");
    FINGERPRINT.replace(ipc_object, "")
}

/// A fingerprint's output, once it ran successfully.
pub fn fingerprint(out: &sandpool::sandbox::Output) -> String {
    assert!(out.success(), "the fingerprint runs: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
