//! The zygote: the sandbox's init, pid 1 of its pid namespace.
//!
//! It is this very program image, re-executed by [`super::sys::spawn_zygote`] and entered
//! through a constructor before `main` (so the host needs no hook). Being a fresh,
//! single-threaded image, it may allocate freely while it builds the sandbox: the minimal root,
//! `/proc`, `/dev`, `/tmp`, the binds, hostname, loopback, limits, the Landlock ruleset and the
//! seccomp programs. Then it forks the spawner into a pid and mount namespace of their own,
//! where the spawner is pid 1, confines itself for good, and starts each command with
//! `clone(CLONE_VM | CLONE_VFORK)`: the child only sets up its stdio and execs. The zygote
//! itself runs no command and stays out of the commands' pid namespace.

use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::command::DEFAULT_PATH;
use super::landlock;
use super::network::{NetworkWatch, cap_socket_buffers};
use super::protocol::{BindSpec, MAX_MESSAGE, Reply, Request, RunRequest, Usage, ZygoteConfig, ZygoteReport};
use super::seccomp::{self, Filters};
use super::sys::{self, CommandSpec, CommandStack};

/// Host directories shown read-only (symlinks, as on merged-/usr systems, are recreated).
use super::policy::VISIBLE_SYSTEM_DIRS as SYSTEM_DIRS;

/// Host files and directories under `/etc` that programs need (loader cache, alternatives,
/// time zone, certificates), shown read-only when they exist.
const ETC_ENTRIES: [&str; 9] = [
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/mime.types",
    "/etc/protocols",
];

/// Device nodes bound from the host.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Where the host's root sits while the new root is built.
const OLD_ROOT: &str = "/.oldroot";

/// The uid and gid commands run as inside.
pub(crate) const SANDBOX_UID: u32 = 1000;

type StepResult<T> = Result<T, (String, io::Error)>;

fn step<T>(name: impl Into<String>, r: io::Result<T>) -> StepResult<T> {
    r.map_err(|e| (name.into(), e))
}

fn c(path: &str) -> CString {
    CString::new(path).expect("internal paths have no NUL")
}

fn cp(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in path"))
}

fn mount_tmpfs(target: &str, options: &str) -> io::Result<()> {
    mount_tmpfs_with(target, options, 0)
}

fn mount_tmpfs_with(target: &str, options: &str, flags: libc::c_ulong) -> io::Result<()> {
    let flags = libc::MS_NOSUID | libc::MS_NODEV | flags;
    sys::mount(Some(c"tmpfs"), &c(target), Some(c"tmpfs"), flags, Some(&c(options)))
}

/// Binds `source` at `target` (recursively) and sets `attrs` on the whole new subtree.
fn bind(source: &Path, target: &Path, attrs: u64) -> io::Result<()> {
    let t = cp(target)?;
    sys::mount(Some(&cp(source)?), &t, None, libc::MS_BIND | libc::MS_REC, None)?;
    sys::mount_setattr(&t, attrs, true)
}

/// Creates a mount point for `source` at `target`: a directory, or an empty file.
fn make_mount_point(source: &Path, target: &Path) -> io::Result<()> {
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    if fs::metadata(source)?.is_dir() {
        match fs::create_dir(target) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    } else {
        match fs::OpenOptions::new().write(true).create(true).truncate(false).open(target) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    }
}

fn under_old_root(path: &Path) -> PathBuf {
    Path::new(OLD_ROOT).join(path.strip_prefix("/").unwrap_or(path))
}

const RO: u64 = sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
const RW: u64 = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;

/// A user bind: where it goes, and its mount tree until it is attached.
struct UserBind {
    spec: BindSpec,
    tree: Option<OwnedFd>,
}

impl UserBind {
    fn path(&self) -> &Path {
        Path::new(std::ffi::OsStr::from_bytes(&self.spec.path))
    }

    /// Attaches the bind's detached tree at its path, with its access mode.
    fn mount(&mut self) -> io::Result<()> {
        let tree = self.tree.take().ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        let target = self.path().to_owned();
        make_mount_point(Path::new(&format!("/proc/self/fd/{}", tree.as_raw_fd())), &target)?;
        let t = cp(&target)?;
        sys::attach_tree(tree.as_fd(), &t)?;
        sys::mount_setattr(&t, if self.spec.writable { RW } else { RO }, true)
    }
}

fn build_root(config: &ZygoteConfig, mut trees: Vec<OwnedFd>) -> StepResult<Vec<UserBind>> {
    step("make mounts private", sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None))?;
    step("mount the new root", mount_tmpfs("/tmp", "size=4m,mode=0755"))?;
    step("create the old-root mount point", fs::create_dir("/tmp/.oldroot"))?;
    step("pivot_root", sys::pivot_root(c"/tmp", c"/tmp/.oldroot"))?;
    step("enter the new root", std::env::set_current_dir("/"))?;

    for dir in SYSTEM_DIRS {
        let host = under_old_root(Path::new(dir));
        let Ok(meta) = fs::symlink_metadata(&host) else { continue };
        if meta.file_type().is_symlink() {
            let target = step(format!("read link {dir}"), fs::read_link(&host))?;
            step(format!("link {dir}"), symlink(target, dir))?;
        } else if meta.is_dir() {
            step(format!("create {dir}"), fs::create_dir(dir))?;
            step(format!("bind {dir}"), bind(&host, Path::new(dir), RO))?;
        }
    }

    step("create /etc", fs::create_dir("/etc"))?;
    for entry in ETC_ENTRIES {
        let host = under_old_root(Path::new(entry));
        if fs::metadata(&host).is_ok() {
            step(format!("mount point {entry}"), make_mount_point(&host, Path::new(entry)))?;
            step(format!("bind {entry}"), bind(&host, Path::new(entry), RO))?;
        }
    }
    if config.share_network {
        let host = under_old_root(Path::new("/etc/resolv.conf"));
        if fs::metadata(&host).is_ok() {
            step("mount point /etc/resolv.conf", make_mount_point(&host, Path::new("/etc/resolv.conf")))?;
            step("bind /etc/resolv.conf", bind(&host, Path::new("/etc/resolv.conf"), RO))?;
        }
    }
    let uid = SANDBOX_UID;
    let files = [
        (
            "/etc/passwd",
            format!(
                "root:x:0:0:root:/root:/bin/sh\nsandbox:x:{uid}:{uid}:sandbox:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            ),
        ),
        ("/etc/group", format!("root:x:0:\nsandbox:x:{uid}:\nnogroup:x:65534:\n")),
        ("/etc/hostname", "sandpool\n".to_string()),
        ("/etc/hosts", "127.0.0.1\tlocalhost sandpool\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string()),
        ("/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n".to_string()),
    ];
    for (path, text) in files {
        step(format!("write {path}"), fs::write(path, text))?;
    }

    step("create /proc", fs::create_dir("/proc"))?;
    step(
        "mount /proc",
        sys::mount(Some(c"proc"), c"/proc", Some(c"proc"), libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, None),
    )?;

    step("create /dev", fs::create_dir("/dev"))?;
    step("mount /dev", mount_tmpfs("/dev", "size=64k,mode=0755"))?;
    // The tmpfs above is nodev; each node is a bind of the host's own node (a user namespace
    // cannot mknod), which keeps the host mount's device access.
    for node in DEVICES {
        let host = under_old_root(&Path::new("/dev").join(node));
        if fs::metadata(&host).is_err() {
            continue;
        }
        let target = Path::new("/dev").join(node);
        step(format!("mount point /dev/{node}"), make_mount_point(&host, &target))?;
        step(
            format!("bind /dev/{node}"),
            sys::mount(
                Some(&cp(&host).unwrap_or_default()),
                &cp(&target).unwrap_or_default(),
                None,
                libc::MS_BIND,
                None,
            ),
        )?;
        step(
            format!("restrict /dev/{node}"),
            sys::mount_setattr(&cp(&target).unwrap_or_default(), sys::MOUNT_ATTR_NOSUID, false),
        )?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        step(format!("link /dev/{name}"), symlink(target, Path::new("/dev").join(name)))?;
    }
    step("create /dev/shm", fs::create_dir("/dev/shm"))?;
    step("create /dev/mqueue", fs::create_dir("/dev/mqueue"))?;
    step("create /tmp", fs::create_dir("/tmp"))?;
    mount_session_dirs(config)?;

    // Trees sent by the host come in bind order; take them before sorting.
    trees.reverse();
    let mut specs = Vec::new();
    for spec in &config.binds {
        let path = Path::new(std::ffi::OsStr::from_bytes(&spec.path)).to_owned();
        let tree = if spec.has_tree {
            trees.pop().ok_or_else(|| {
                (format!("receive the tree of {}", path.display()), io::Error::from_raw_os_error(libc::EPROTO))
            })?
        } else {
            let host = cp(&under_old_root(&path)).map_err(|e| (format!("bind {}", path.display()), e))?;
            step(format!("open bind source {}", path.display()), sys::clone_tree(None, &host))?
        };
        specs.push(UserBind { spec: spec.clone(), tree: Some(tree) });
    }
    // Parents before children, so a bind inside another lands on top of it.
    specs.sort_by_key(|b| b.spec.path.iter().filter(|&&ch| ch == b'/').count());
    for b in &mut specs {
        step(format!("bind {}", b.path().display()), b.mount())?;
    }
    let binds = specs;

    step("detach the host's root", sys::umount2(&c(OLD_ROOT), libc::MNT_DETACH))?;
    step("remove the old-root mount point", fs::remove_dir(OLD_ROOT))?;
    step("make / read-only", sys::mount_setattr(c"/", RO, false))?;
    step("make /dev read-only", sys::mount_setattr(c"/dev", sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID, false))?;
    Ok(binds)
}

/// Most files and directories the session's `/tmp` (and `/dev/shm`) may hold.
const SESSION_INODES: u64 = 65_536;

/// The mount options of `/tmp` and `/dev/shm`.
fn session_tmpfs_options(config: &ZygoteConfig) -> String {
    format!(
        "size={},nr_inodes={SESSION_INODES},mode=1777,uid={SANDBOX_UID},gid={SANDBOX_UID}",
        config.tmp_size.max(4096)
    )
}

fn mount_mqueue() -> io::Result<()> {
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_NOATIME;
    sys::mount(Some(c"mqueue"), c"/dev/mqueue", Some(c"mqueue"), flags, None)
}

/// Mounts the size-capped `/tmp` and `/dev/shm`, and `/dev/mqueue`, all `noatime`: reading a
/// session directory leaves its times as they were, so only a command's changes move them.
/// Each session covers them with fresh ones ([`fresh_session_dirs`]); these are the mount
/// points the binds below them are first attached to, and the directories Landlock's rules
/// name.
fn mount_session_dirs(config: &ZygoteConfig) -> StepResult<()> {
    let opts = session_tmpfs_options(config);
    step("mount /tmp", mount_tmpfs_with("/tmp", &opts, libc::MS_NOATIME))?;
    step("mount /dev/shm", mount_tmpfs_with("/dev/shm", &opts, libc::MS_NOATIME))?;
    step("mount /dev/mqueue", mount_mqueue())
}

/// Covers the session directories, in the session's own mount namespace, with fresh file
/// systems: a new tmpfs on `/tmp` and `/dev/shm` (the policy's binds below them attached
/// again, as clones of the mounts they cover), a new mqueue (of the session's new IPC
/// namespace) on `/dev/mqueue`. So nothing an earlier session did shows, not even what no
/// call can undo: inode numbers, times (change times included), IPC ids. Landlock's rules
/// name the directories they cover, which the walk from a file up to the root still passes.
fn fresh_session_dirs(config: &ZygoteConfig, binds: &[UserBind]) -> StepResult<()> {
    let opts = session_tmpfs_options(config);
    for dir in ["/tmp", "/dev/shm"] {
        let below = format!("{dir}/");
        let mut kept = Vec::new();
        for b in binds.iter().filter(|b| b.spec.path.starts_with(below.as_bytes())) {
            let path = b.path();
            // A bind inside another kept one comes along with it (the clone is recursive).
            if kept.iter().any(|(outer, _): &(&Path, OwnedFd)| path.starts_with(outer)) {
                continue;
            }
            let tree =
                step(format!("keep the bind {}", path.display()), cp(path).and_then(|p| sys::clone_tree(None, &p)))?;
            kept.push((path, tree));
        }
        step(format!("mount a fresh {dir}"), mount_tmpfs_with(dir, &opts, libc::MS_NOATIME))?;
        // In bind order: parents before children.
        for (path, tree) in kept {
            let attach = make_mount_point(Path::new(&format!("/proc/self/fd/{}", tree.as_raw_fd())), path)
                .and_then(|()| sys::attach_tree(tree.as_fd(), &cp(path)?));
            step(format!("bind {} again", path.display()), attach)?;
        }
    }
    step("mount a fresh /dev/mqueue", mount_mqueue())
}

/// The size tmpfs and mqueue report for a directory holding only `.` and `..`: they count 20
/// bytes per entry (the kernel keeps it; a command cannot change it but by adding entries).
const EMPTY_DIR_SIZE: u64 = 40;

fn apply_limits(config: &ZygoteConfig) -> StepResult<()> {
    let set =
        |name: &str, res, v: u64| step(format!("set {name}"), if v > 0 { sys::set_rlimit(res, v) } else { Ok(()) });
    set("RLIMIT_NPROC", libc::RLIMIT_NPROC, config.max_processes)?;
    set("RLIMIT_AS", libc::RLIMIT_AS, config.address_space)?;
    set("RLIMIT_FSIZE", libc::RLIMIT_FSIZE, config.max_file_size)?;
    set("RLIMIT_NOFILE", libc::RLIMIT_NOFILE, config.max_open_files)?;
    step("set RLIMIT_CORE", sys::set_rlimit(libc::RLIMIT_CORE, 0))?;
    Ok(())
}

/// A run request turned into C strings, with the paths `execve` will try.
struct PreparedCommand {
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: CString,
    candidates: Vec<CString>,
}

impl PreparedCommand {
    fn new(req: &RunRequest) -> Result<Self, i32> {
        let to_c = |v: Vec<u8>| CString::new(v).map_err(|_| libc::EINVAL);
        let program = req.argv.first().cloned().ok_or(libc::EINVAL)?;
        let candidates = if program.contains(&b'/') {
            vec![to_c(program)?]
        } else {
            // Like execvp: each directory of the command's own PATH, in order.
            let path = req.env.iter().find_map(|e| e.strip_prefix(b"PATH=")).unwrap_or(DEFAULT_PATH.as_bytes());
            path.split(|&b| b == b':')
                .filter(|d| !d.is_empty())
                .map(|d| to_c([d, b"/", &program].concat()))
                .collect::<Result<_, _>>()?
        };
        Ok(PreparedCommand {
            argv: req.argv.iter().cloned().map(to_c).collect::<Result<_, _>>()?,
            envp: req.env.iter().cloned().map(to_c).collect::<Result<_, _>>()?,
            cwd: to_c(req.cwd.clone())?,
            candidates,
        })
    }
}

/// Waits until `socket` has a message (or hang-up) or `signals` reports a child's end; says
/// which (the signalfd is drained).
fn wait_for(socket: &OwnedFd, signals: &OwnedFd) -> (bool, bool) {
    let mut fds = [
        libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: signals.as_raw_fd(), events: libc::POLLIN, revents: 0 },
    ];
    if sys::poll(&mut fds, None).is_err() {
        return (false, false);
    }
    if fds[1].revents != 0 {
        sys::drain_signalfd(signals.as_fd());
    }
    (fds[0].revents != 0, fds[1].revents != 0)
}

/// The sandbox's init: builds the sandbox, keeps the privileges that resets need, and never
/// runs a command itself.
struct Zygote {
    control: OwnedFd,
    signals: OwnedFd,
    config: ZygoteConfig,
    binds: Vec<UserBind>,
    filters: Option<Filters>,
    landlock_abi: Option<u32>,
    /// The ruleset built once to see that this kernel takes it (what the report says); each
    /// session builds its own on its own directories.
    landlock: Option<landlock::Ruleset>,
    /// What it applied, sent with each new session's socket.
    report: ZygoteReport,
    /// Its own pid namespace, to start each session's from.
    own_pid_ns: Option<OwnedFd>,
    /// The sandbox's own network namespace as it was made, which no session may change.
    network: Option<NetworkWatch>,
}

impl Zygote {
    fn send(&self, reply: &Reply, fds: &[i32]) {
        // A failed send means the host is gone; the next receive sees the hang-up.
        let _ = sys::send_with_fds(self.control.as_fd(), &reply.encode(), fds);
    }

    fn writable_paths(&self) -> Vec<String> {
        let mut paths = vec!["/tmp".to_string(), "/dev/shm".to_string(), "/dev/mqueue".to_string()];
        for b in &self.binds {
            if b.spec.writable {
                paths.push(b.path().to_string_lossy().into_owned());
            }
        }
        paths
    }

    fn build_landlock(&mut self) -> StepResult<()> {
        self.landlock = None;
        if self.config.landlock == 0 {
            return Ok(());
        }
        let Some(abi) = self.landlock_abi else {
            if self.config.landlock == 2 {
                return Err((
                    "enforce Landlock (not supported by this kernel)".into(),
                    io::Error::from_raw_os_error(libc::EOPNOTSUPP),
                ));
            }
            return Ok(());
        };
        let paths = self.writable_paths();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        match landlock::build(abi, &refs) {
            Ok(r) => self.landlock = Some(r),
            Err(e) if self.config.landlock == 2 => return Err(("build the Landlock ruleset".into(), e)),
            Err(_) => {}
        }
        Ok(())
    }

    fn setup(&mut self, trees: Vec<OwnedFd>) -> StepResult<ZygoteReport> {
        step("take the sandbox's uid", sys::become_user(SANDBOX_UID, SANDBOX_UID))?;
        // Join the cgroups first, before anything is charged or forked (the host's file
        // system is still in view: the root is not pivoted yet).
        for tasks in &self.config.cgroup_tasks {
            let path = Path::new(std::ffi::OsStr::from_bytes(tasks));
            step(format!("join the cgroup {}", path.display()), fs::write(path, "0"))?;
        }
        self.binds = build_root(&self.config, trees)?;
        step("set the hostname", sys::set_host_and_domain_name("sandpool", "sandpool"))?;
        if !self.config.share_network {
            step("bring up loopback", sys::loopback_up())?;
            step("route nothing but loopback (IPv4)", sys::add_unreachable_default_route(libc::AF_INET))?;
            match sys::add_unreachable_default_route(libc::AF_INET6) {
                Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {} // no IPv6 here
                other => step("route nothing but loopback (IPv6)", other)?,
            }
            if self.config.socket_buffer_max > 0 {
                for name in ["tcp_rmem", "tcp_wmem"] {
                    step(format!("cap net.ipv4.{name}"), cap_socket_buffers(name, self.config.socket_buffer_max))?;
                }
            }
            self.network = Some(step("watch the network namespace", NetworkWatch::open())?);
        }
        step("enter /tmp", std::env::set_current_dir("/tmp"))?;
        apply_limits(&self.config)?;
        let cap = self.config.landlock_max_abi;
        self.landlock_abi = sys::landlock_abi().map(|abi| abi.min(cap)).filter(|&abi| abi > 0);
        self.build_landlock()?;
        if self.config.seccomp != 0 {
            match seccomp::build() {
                Ok(f) if sys::seccomp_available() => self.filters = Some(f),
                Ok(_) if self.config.seccomp == 2 => {
                    return Err((
                        "install seccomp (not supported by this kernel)".into(),
                        io::Error::from_raw_os_error(libc::EOPNOTSUPP),
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(("compile the seccomp filter".into(), io::Error::other(e.to_string()))),
            }
        }
        step("drop the capability bounding set", sys::drop_bounding_set_and_lock(self.config.last_cap))?;
        step("make the init non-dumpable", sys::set_not_dumpable())?;
        // Last: the zygote itself runs under the sandbox's filter from here on (what it still
        // does, making sessions, that filter leaves to it; each spawner closes it).
        if let Some(f) = &self.filters {
            for prog in &f.sandbox {
                step("install seccomp", seccompiler::apply_filter(prog).map_err(|e| io::Error::other(e.to_string())))?;
            }
        }
        Ok(ZygoteReport {
            landlock_abi: self.landlock_abi.unwrap_or(0),
            landlock_enforced: self.landlock.is_some(),
            landlock_scoped: self.landlock.as_ref().is_some_and(|l| l.scoped),
            seccomp_enforced: self.filters.is_some(),
            seccomp_denied: seccomp::denied_count(),
            loopback_only: !self.config.share_network,
        })
    }

    /// Starts a session: forks the spawner into a pid and an IPC namespace of their own, below
    /// the zygote's, where it is pid 1 and every command is its child: commands never see the
    /// zygote, and the spawner ends them all when it goes. The spawner makes the session's
    /// mount namespace, confines itself and says, on its new socket, whether it is ready;
    /// returns the host's end of that socket.
    fn start_spawner(&mut self) -> StepResult<OwnedFd> {
        let (host_end, spawner_end) = step("create the runner socket", sys::seqpacket_pair())?;
        // The zygote's next child starts new namespaces; first make its own pid namespace
        // the one they are made below again (`unshare` only once moves where children go).
        let own = match self.own_pid_ns.take() {
            Some(fd) => fd,
            None => step("open the zygote's pid namespace", sys::open(c"/proc/self/ns/pid", libc::O_RDONLY))?,
        };
        let own = self.own_pid_ns.insert(own);
        step("return to the zygote's pid namespace", sys::set_pid_ns_for_children(own.as_fd()))?;
        step("make the session's namespaces", sys::unshare(libc::CLONE_NEWPID | libc::CLONE_NEWIPC))?;
        match step("fork the spawner", sys::fork_zygote())? {
            Some(_) => {
                drop(spawner_end);
                let mut buf = vec![0u8; MAX_MESSAGE];
                let mut fds = Vec::new();
                let n = step("hear from the spawner", sys::recv_with_fds(host_end.as_fd(), &mut buf, &mut fds))?;
                match Reply::decode(&buf[..n]) {
                    Ok(Reply::ResetDone) if fds.is_empty() => Ok(host_end),
                    Ok(Reply::SetupFailed { step, errno }) => Err((step, io::Error::from_raw_os_error(errno))),
                    // A hang-up (0 bytes) or anything else: the spawner died before it was ready.
                    _ => Err(("start the spawner".into(), io::Error::from_raw_os_error(libc::ECHILD))),
                }
            }
            None => {
                drop(host_end);
                let code = Spawner::start(spawner_end, self);
                sys::exit_now(code)
            }
        }
    }

    /// Kills every other process of the sandbox (the spawner too) and reaps them, looping
    /// until none is left: a process forking while the kill went round survives one pass.
    fn kill_everything(&mut self) {
        loop {
            sys::kill_all_others();
            while let Ok(Some(_)) = sys::reap_any(true) {}
            if !sys::any_other_process() {
                break;
            }
        }
        sys::drain_signalfd(self.signals.as_fd());
    }

    fn serve(&mut self) -> i32 {
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let (message, child_ended) = wait_for(&self.control, &self.signals);
            if child_ended {
                // The spawner ended (killed from inside, or crashed): the host notices by its
                // socket. Reap it.
                while let Ok(Some(_)) = sys::reap_any(false) {}
            }
            if !message {
                continue;
            }
            let mut received = Vec::new();
            match sys::recv_with_fds(self.control.as_fd(), &mut buf, &mut received) {
                Ok(0) | Err(_) => {
                    // The host closed the channel (or died): take everything down with us.
                    self.kill_everything();
                    return 0;
                }
                Ok(n) => match Request::decode(&buf[..n]) {
                    Ok(Request::Reset) if received.is_empty() => match self.renew_session() {
                        Ok(runner) => self.send(&Reply::Ready(self.report.clone()), &[runner.as_raw_fd()]),
                        Err((step, e)) => {
                            self.send(&Reply::ResetFailed { step, errno: e.raw_os_error().unwrap_or(libc::EIO) }, &[])
                        }
                    },
                    _ => self.send(&Reply::SetupFailed { step: "decode the request".into(), errno: libc::EPROTO }, &[]),
                },
            }
        }
    }

    /// Ends the session (the spawner and every process of its namespace die) and starts a new
    /// one, unless the network namespace, which outlives sessions, is no longer as it was
    /// made: then the sandbox must be replaced.
    fn renew_session(&mut self) -> StepResult<OwnedFd> {
        self.kill_everything();
        if let Some(network) = &self.network {
            // A socket left behind (a TIME_WAIT, an orphan, a fragment queue) outlives every
            // process, and no call resets the namespace's counters: only a new network
            // namespace would.
            if let Err(what) = network.as_fresh() {
                return Err((
                    format!("leave the network namespace as it was ({what}); the sandbox must be replaced"),
                    io::Error::from_raw_os_error(libc::EBUSY),
                ));
            }
        }
        self.start_spawner()
    }
}

/// A session's spawner: a child of the zygote, pid 1 of the session's pid namespace, that
/// confines itself once (Landlock, seccomp, `no_new_privs`, one capability) so that each
/// command inherits all of it for free, starts commands, reports their end and whether they
/// left the session untouched, and kills everything on request. As its namespace's init it
/// inherits every process its commands leave behind; when it dies, they all do.
struct Spawner {
    runner: OwnedFd,
    signals: OwnedFd,
    no_fork: Option<sys::SeccompProgram>,
    stack: CommandStack,
    running: Option<i32>,
    /// How the session directories look when the session is as a reset leaves it (`None`
    /// if they could not be read, or hold plain directories for nested binds: then no
    /// session counts as untouched).
    pristine: Option<[SessionDir; 3]>,
    /// The sandbox's own network namespace, whose sockets and counters are session state;
    /// `None` with the host's network.
    network: Option<NetworkWatch>,
    /// The session directories, held open for their inode flags (one `ioctl` each).
    session_fds: Vec<OwnedFd>,
    /// The session's `ns_last_pid`, held open for writing.
    pid_counter: OwnedFd,
    /// The session's `kernel.{shm,msg,sem}_next_id`, set to 0 when it starts: the next System
    /// V object of each kind takes that id, as in a fresh IPC namespace, and sets it back to
    /// -1, which shows that the session made one even if it removed it since. `None` where
    /// the kernel lacks them (no `CONFIG_CHECKPOINT_RESTORE`).
    ipc_next_ids: Option<Vec<OwnedFd>>,
    /// The spawner's own settings as it started, which commands inherit (`None` if they could
    /// not be read: then no session counts as untouched).
    settings: Option<sys::OwnSettings>,
}

/// Opens `kernel.shm_next_id`, `msg_next_id` and `sem_next_id` of the session's IPC namespace
/// and sets each to 0 (see [`Spawner::no_ipc_object_made`]); `None` if this kernel has none.
fn first_ipc_ids() -> io::Result<Option<Vec<OwnedFd>>> {
    let mut files = Vec::new();
    for path in [c"/proc/sys/kernel/shm_next_id", c"/proc/sys/kernel/msg_next_id", c"/proc/sys/kernel/sem_next_id"] {
        match sys::open(path, libc::O_RDWR) {
            Ok(f) => files.push(f),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    for f in &files {
        sys::pwrite(f.as_fd(), b"0", 0)?;
    }
    Ok(Some(files))
}

/// The one capability the spawner keeps: `CAP_CHECKPOINT_RESTORE` (Linux 5.9+, number 40), or
/// `CAP_SYS_ADMIN` before it, for `ns_last_pid` and the `*_next_id` files. It never reaches a
/// command: the command's `execve` as a non-root uid, with no inheritable or ambient
/// capability and an empty bounding set, drops it.
fn pid_counter_capability(last_cap: u32) -> u32 {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_CHECKPOINT_RESTORE: u32 = 40;
    if last_cap >= CAP_CHECKPOINT_RESTORE { CAP_CHECKPOINT_RESTORE } else { CAP_SYS_ADMIN }
}

/// The directories a session can write to outside its binds, in the order `pristine` keeps.
const SESSION_DIRS: [&CStr; 3] = [c"/tmp", c"/dev/shm", c"/dev/mqueue"];

/// What [`Spawner::untouched`] compares of one session directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SessionDir {
    /// Mount, size (20 bytes per entry on tmpfs and mqueue), mode, owner and times (the
    /// time of a lease's last change is the lease's).
    stat: sys::PathStat,
    /// Its extended attribute names (a command may set `user.*` ones, or an ACL).
    xattrs: Vec<CString>,
    /// Its inode flags (the owner may set `nodump`, `noatime`, ... with `chattr`).
    flags: u32,
}

impl SessionDir {
    fn read(dir: &CStr, fd: &OwnedFd) -> Option<SessionDir> {
        let st = sys::path_stat(dir).ok()?;
        let xattrs = sys::xattr_names(dir).ok()?;
        let flags = sys::inode_flags_of(fd.as_fd()).ok()?;
        Some(SessionDir { stat: st, xattrs, flags })
    }
}

/// The session directories' state, for [`Spawner::untouched`].
fn session_dirs(fds: &[OwnedFd]) -> Option<[SessionDir; 3]> {
    let [a, b, c] = [0, 1, 2].map(|i| SessionDir::read(SESSION_DIRS[i], fds.get(i)?));
    Some([a?, b?, c?])
}

/// The pristine state of the session directories, or `None` if one holds a plain
/// directory of its own mount (the parent of a nested bind's mount point): what a command
/// adds in there does not show on the session directory, so every session gets a reset.
fn pristine_session_dirs(fds: &[OwnedFd]) -> Option<[SessionDir; 3]> {
    let dirs = session_dirs(fds)?;
    for (dir, state) in SESSION_DIRS.iter().zip(&dirs) {
        if state.stat.size <= EMPTY_DIR_SIZE {
            continue;
        }
        // Only binds' mount points may be there (a reset removed everything else).
        let path = Path::new(std::ffi::OsStr::from_bytes(dir.to_bytes()));
        for entry in fs::read_dir(path).ok()? {
            let c_path = cp(&entry.ok()?.path()).ok()?;
            if sys::mount_id(&c_path).ok()? == state.stat.mount_id {
                return None;
            }
        }
    }
    Some(dirs)
}

impl Spawner {
    /// Runs in the freshly forked child of the zygote, pid 1 of a new pid namespace; returns
    /// the exit code. Its first message on `runner` says whether it is ready
    /// ([`Reply::ResetDone`]) or where it failed ([`Reply::SetupFailed`]).
    fn start(runner: OwnedFd, zygote: &Zygote) -> i32 {
        sys::set_process_name(c"sandpool-spawn");
        let fail = |runner: BorrowedFd<'_>, (step, e): (String, io::Error)| {
            let reply = Reply::SetupFailed { step, errno: e.raw_os_error().unwrap_or(libc::EIO) };
            let _ = sys::send_with_fds(runner, &reply.encode(), &[]);
            1
        };
        if let Err(e) = Spawner::confine(zygote) {
            return fail(runner.as_fd(), e);
        }
        // Drop every descriptor of the zygote's (control socket, ruleset, trees) but stdio.
        let Ok(runner) = sys::keep_only_as_fd3(runner) else { return 1 };
        match Spawner::new(runner, zygote) {
            Ok(mut spawner) => {
                spawner.send(&Reply::ResetDone);
                spawner.serve()
            }
            Err((runner, e)) => fail(runner.as_fd(), e),
        }
    }

    /// Makes the session and confines the spawner for good, in this order: the highest
    /// `oom_score_adj` (which commands inherit), a mount namespace of its own with a `/proc`
    /// of the new pid namespace (`hidepid=invisible`: a process a command may not trace, the
    /// spawner first, is not even listed) and fresh session directories, then Landlock (which
    /// forbids mounting), the session's seccomp filter (on top of the sandbox's, inherited),
    /// `no_new_privs`, and no capability but the one that rewinds the pid counter and sets
    /// the next IPC ids.
    fn confine(zygote: &Zygote) -> StepResult<()> {
        // Commands inherit this; confine_spawner makes the spawner non-dumpable again
        // before any command exists.
        step("raise oom_score_adj", sys::raise_oom_score_adj())?;
        step("make the session's mount namespace", sys::unshare(libc::CLONE_NEWNS))?;
        step(
            "mount the session's /proc",
            sys::mount(
                Some(c"proc"),
                c"/proc",
                Some(c"proc"),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                Some(c"hidepid=2"),
            ),
        )?;
        fresh_session_dirs(&zygote.config, &zygote.binds)?;
        // Its working directory was the zygote's /tmp, now covered: no command child (which
        // copies it until its own chdir) should start from there.
        step("enter the session's /tmp", std::env::set_current_dir("/tmp"))?;
        // Landlock's rules name inodes: the session's own (its fresh directories and /proc),
        // in a ruleset of its own that goes with the session.
        let ruleset = match (&zygote.landlock, zygote.landlock_abi) {
            (Some(_), Some(abi)) => {
                let paths = zygote.writable_paths();
                let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
                Some(step("build the session's Landlock ruleset", landlock::build(abi, &refs))?)
            }
            _ => None,
        };
        let landlock = ruleset.as_ref().map(|l| l.fd.as_fd());
        sys::confine_spawner(landlock, Some(pid_counter_capability(zygote.config.last_cap)))
            .map_err(|(what, e)| (what.to_string(), e))?;
        // The sandbox's filter came with the fork; the session's closes what made the session.
        if let Some(f) = &zygote.filters {
            step(
                "install the session's seccomp filter",
                seccompiler::apply_filter(&f.session).map_err(|e| io::Error::other(e.to_string())),
            )?;
        }
        Ok(())
    }

    /// The spawner's state, once confined; on failure, the runner back (to report on).
    fn new(runner: OwnedFd, zygote: &Zygote) -> Result<Spawner, (OwnedFd, (String, io::Error))> {
        let parts = (|| {
            // Dispositions and the full mask come from the zygote.
            let signals = step("watch for children's ends", sys::child_signals())?;
            let network = match zygote.config.share_network {
                true => None,
                false => Some(step("watch the network namespace", NetworkWatch::open_interfaces())?),
            };
            let session_fds = step(
                "open the session directories",
                SESSION_DIRS.iter().map(|d| sys::open(d, libc::O_RDONLY | libc::O_DIRECTORY)).collect(),
            )?;
            let pid_counter = step("open ns_last_pid", sys::open(c"/proc/sys/kernel/ns_last_pid", libc::O_WRONLY))?;
            let ipc_next_ids = step("set the next System V IPC ids", first_ipc_ids())?;
            Ok((signals, network, session_fds, pid_counter, ipc_next_ids))
        })();
        let (signals, network, session_fds, pid_counter, ipc_next_ids) = match parts {
            Ok(p) => p,
            Err(e) => return Err((runner, e)),
        };
        let mut spawner = Spawner {
            runner,
            signals,
            no_fork: zygote.filters.as_ref().map(|f| f.no_fork.clone()),
            stack: CommandStack::new(),
            running: None,
            pristine: None,
            network,
            session_fds,
            pid_counter,
            ipc_next_ids,
            settings: None,
        };
        if let Err(e) = step("rewind the pid counter", spawner.rewind_pid_counter()) {
            return Err((spawner.runner, e));
        }
        spawner.pristine = pristine_session_dirs(&spawner.session_fds);
        spawner.settings = sys::OwnSettings::read().ok();
        Ok(spawner)
    }

    /// Makes the next process of the session pid 2 again, as in a fresh sandbox, so that no
    /// lease learns from its pids how many processes the one before made. Only while the
    /// spawner is alone in its namespace (`ns_last_pid` of the session's `/proc`, which needs
    /// `CAP_CHECKPOINT_RESTORE`).
    fn rewind_pid_counter(&self) -> io::Result<()> {
        sys::pwrite(self.pid_counter.as_fd(), b"1", 0).map(drop)
    }

    fn send(&self, reply: &Reply) {
        let _ = sys::send_with_fds(self.runner.as_fd(), &reply.encode(), &[]);
    }

    /// Whether the session is as it started: no process but this one, no entry added to
    /// `/tmp`, `/dev/shm` or `/dev/mqueue` (tmpfs and mqueue count 20 bytes of directory size
    /// per entry, and a session cannot remove the mount points of binds), their modes, owners,
    /// times, extended attributes and inode flags unchanged, no System V IPC object ever made,
    /// no packet through the sandbox's own network namespace (so no socket left in any state),
    /// and the spawner's own settings as they were. Processes come first: once none is left,
    /// nothing can change the rest. When all of it holds, the pid counter is rewound, so the
    /// next command is pid 2 as in a fresh sandbox.
    fn untouched(&self) -> bool {
        let Some(pristine) = &self.pristine else { return false };
        sys::surely_no_other_process()
            && session_dirs(&self.session_fds).as_ref() == Some(pristine)
            && self.no_ipc_object_made()
            && self.network.as_ref().is_none_or(NetworkWatch::quiet)
            && self.own_settings_intact()
            && self.rewind_pid_counter().is_ok()
    }

    /// Whether the session never made a System V IPC object (so none is left, and the next
    /// ids are still those of a fresh namespace); without the `*_next_id` files, whether none
    /// is left.
    fn no_ipc_object_made(&self) -> bool {
        match &self.ipc_next_ids {
            Some(files) => files.iter().all(|f| {
                let mut buf = [0u8; 8];
                matches!(sys::pread(f.as_fd(), &mut buf, 0), Ok(2) if &buf[..2] == b"0\n")
            }),
            None => matches!(sys::sysv_ipc_in_use(), Ok([0, 0, 0])),
        }
    }

    /// Whether the spawner's own settings (limits, scheduling, affinity, I/O priority, pending
    /// signals), which every later command inherits, are still as it started. The seccomp
    /// filter keeps commands from naming the spawner (pid 1); this is the wall behind it.
    fn own_settings_intact(&self) -> bool {
        self.settings.is_some() && sys::OwnSettings::read().ok() == self.settings
    }

    /// Records a reaped child; reports it if it was the running command.
    fn reaped(&mut self, pid: i32, status: i32, usage: sys::ChildUsage) {
        if Some(pid) == self.running {
            self.running = None;
            self.send(&Reply::Exited {
                status,
                usage: Usage { user_us: usage.user_us, system_us: usage.system_us, max_rss_kib: usage.max_rss_kib },
                untouched: self.untouched(),
            });
        }
    }

    /// Kills every process of the sandbox but the zygote and itself, and reaps them all (as a
    /// subreaper it is their parent), so the next command starts with nothing left running.
    fn kill_everything(&mut self) {
        loop {
            sys::kill_all_others();
            while let Ok(Some((pid, status, usage))) = sys::reap_any(true) {
                self.reaped(pid, status, usage);
            }
            if !sys::any_other_process() {
                break;
            }
        }
        sys::drain_signalfd(self.signals.as_fd());
    }

    /// Starts a command; on failure, the reply that says why.
    fn start_command(&mut self, req: RunRequest, mut fds: Vec<OwnedFd>) -> Result<(), Reply> {
        let expected = if req.has_stdin { 3 } else { 2 };
        if fds.len() != expected || self.running.is_some() {
            return Err(Reply::SpawnFailed { step: "receive the command".into(), errno: libc::EINVAL });
        }
        let stderr = fds.pop().expect("checked length");
        let stdout = fds.pop().expect("checked length");
        let stdin = fds.pop();
        let prepared = match PreparedCommand::new(&req) {
            Ok(v) => v,
            Err(errno) => return Err(Reply::SpawnFailed { step: "decode the command".into(), errno }),
        };
        let filters: Vec<&sys::SeccompProgram> = match (&self.no_fork, req.no_fork) {
            (Some(p), true) => vec![p],
            _ => Vec::new(),
        };
        let devnull = sys::borrow_stdin();
        let spec = CommandSpec {
            stdio: [stdin.as_ref().map_or(devnull, |f| f.as_fd()), stdout.as_fd(), stderr.as_fd()],
            cwd: &prepared.cwd,
            candidates: &prepared.candidates,
            argv: &prepared.argv,
            envp: &prepared.envp,
            filters: &filters,
            cpu_seconds: (req.cpu_seconds > 0).then_some(req.cpu_seconds),
        };
        match sys::spawn_command(&spec, &mut self.stack) {
            Ok(pid) => {
                self.running = Some(pid);
                Ok(())
            }
            Err(f) => Err(Reply::SpawnFailed {
                step: sys::COMMAND_STEPS.get(f.step).copied().unwrap_or("clone").to_string(),
                errno: f.error.raw_os_error().unwrap_or(libc::EIO),
            }),
        }
    }

    fn serve(&mut self) -> i32 {
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let (message, child_ended) = wait_for(&self.runner, &self.signals);
            if child_ended {
                while let Ok(Some((pid, status, usage))) = sys::reap_any(false) {
                    self.reaped(pid, status, usage);
                }
            }
            if !message {
                continue;
            }
            let mut received = Vec::new();
            let n = match sys::recv_with_fds(self.runner.as_fd(), &mut buf, &mut received) {
                Ok(0) | Err(_) => {
                    self.kill_everything();
                    return 0;
                }
                Ok(n) => n,
            };
            match Request::decode(&buf[..n]) {
                Ok(Request::Run(req)) => {
                    if let Err(reply) = self.start_command(req, received) {
                        self.send(&reply);
                    }
                }
                Ok(Request::Kill) => {
                    self.kill_everything();
                    self.send(&Reply::Killed);
                }
                _ => self.send(&Reply::SpawnFailed { step: "decode the request".into(), errno: libc::EPROTO }),
            }
        }
    }
}

/// The zygote's `main`: build the sandbox as configured, start the spawner, report, then wait
/// until the host hangs up.
pub(crate) fn main() -> i32 {
    sys::set_process_name(c"sandpool-zygote");
    let control = sys::take_control_socket();
    // Its own session: the host's terminal signals stay with the host. (Cannot fail: a fresh
    // process is never a group leader.)
    let _ = sys::new_session();
    let signals = match sys::take_over_signals() {
        Ok(fd) => fd,
        Err(e) => {
            let reply =
                Reply::SetupFailed { step: "take over signals".into(), errno: e.raw_os_error().unwrap_or(libc::EIO) };
            let _ = sys::send_with_fds(control.as_fd(), &reply.encode(), &[]);
            return 1;
        }
    };
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut trees = Vec::new();
    let config = match sys::recv_with_fds(control.as_fd(), &mut buf, &mut trees) {
        Ok(n) if n > 0 => match Request::decode(&buf[..n]) {
            Ok(Request::Configure(c)) => c,
            _ => return 2,
        },
        _ => return 2,
    };
    drop(buf);
    let mut zygote = Zygote {
        control,
        signals,
        config,
        binds: Vec::new(),
        filters: None,
        landlock_abi: None,
        landlock: None,
        report: ZygoteReport::default(),
        own_pid_ns: None,
        network: None,
    };
    let started = zygote.setup(trees).and_then(|report| {
        zygote.report = report;
        zygote.start_spawner()
    });
    match started {
        Ok(runner) => zygote.send(&Reply::Ready(zygote.report.clone()), &[runner.as_raw_fd()]),
        Err((step, e)) => {
            zygote.send(&Reply::SetupFailed { step, errno: e.raw_os_error().unwrap_or(libc::EIO) }, &[]);
            return 1;
        }
    }
    zygote.serve()
}
