//! The sandbox's file system, as the zygote builds it (a minimal root, `/proc`, `/dev`, the
//! policy's binds, the session directories) and as each session covers it with fresh session
//! directories.

use std::ffi::CStr;
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use rustix::fs::CWD;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags,
    UnmountFlags, fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount, open_tree,
};

use super::super::protocol::{BindSpec, ZygoteConfig};
use super::super::sys::mount_setattr;
use super::{SANDBOX_UID, StepResult, c, cp, step};

/// Host directories shown read-only (symlinks, as on merged-/usr systems, are recreated).
use super::super::policy::VISIBLE_SYSTEM_DIRS as SYSTEM_DIRS;

/// Host files and directories under `/etc` that ordinary programs read and that say nothing
/// of the host but its distribution, shown read-only when they exist: the loader's cache and
/// configuration, `alternatives`' links, the time zone, certificates, the network databases
/// (`services` for `getservbyname` and `getaddrinfo(host, "http")`, `protocols`, `rpc`,
/// `ethertypes`), the resolver's `gai.conf` and `host.conf`, what the distribution is
/// (`os-release`, `debian_version`, `lsb-release`), locale aliases, MIME types, libmagic's
/// database, readline's `inputrc` and fontconfig's configuration. Never what identifies the
/// host or a user (`machine-id`, `hostname`, the host's users, groups and `resolv.conf`:
/// the sandbox has its own) nor configuration that may hold credentials (`pip.conf`,
/// `npmrc`, `gitconfig`, `wgetrc`); see also [`ETC_PREFIXES`]. Small files are copied into
/// the root, links into the system directories kept as links, directories bound.
const ETC_ENTRIES: [&str; 23] = [
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/services",
    "/etc/protocols",
    "/etc/rpc",
    "/etc/ethertypes",
    "/etc/gai.conf",
    "/etc/host.conf",
    "/etc/os-release",
    "/etc/debian_version",
    "/etc/lsb-release",
    "/etc/locale.alias",
    "/etc/mime.types",
    "/etc/magic",
    "/etc/magic.mime",
    "/etc/inputrc",
    "/etc/fonts",
];

/// Whether the symlink at `link` with `target` points into a directory every sandbox shows
/// (judged by the path alone, `..` folded).
fn points_into_system_dirs(link: &Path, target: &Path) -> bool {
    use std::path::Component;
    let joined = link.parent().unwrap_or(Path::new("/")).join(target);
    let mut folded = PathBuf::from("/");
    for part in joined.components() {
        match part {
            Component::ParentDir => {
                folded.pop();
            }
            Component::Normal(name) => folded.push(name),
            _ => {}
        }
    }
    SYSTEM_DIRS.iter().any(|d| folded.starts_with(d))
}

/// Largest `/etc` file copied into the root rather than bound (the loader's cache, the
/// largest usually, is some tens of KiB; the root is a 4 MiB tmpfs).
const ETC_COPY_MAX: u64 = 512 << 10;

/// Directories of `/etc` shown read-only by the start of their name: the language runtimes'
/// own configuration (`python3`, `python3.11`: Debian's `sitecustomize`; `java-17-openjdk`:
/// the JDK's security and logging configuration, which its `conf` links to).
const ETC_PREFIXES: [&str; 2] = ["python3", "java-"];

/// The `/etc` entries shown: [`ETC_ENTRIES`], then the directories [`ETC_PREFIXES`] name,
/// as they are under `etc` (the host's `/etc`, seen from wherever it is mounted now).
fn etc_entries(etc: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = ETC_ENTRIES.iter().map(PathBuf::from).collect();
    let mut named: Vec<PathBuf> = fs::read_dir(etc)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name())
        .filter(|n| ETC_PREFIXES.iter().any(|p| n.as_bytes().starts_with(p.as_bytes())))
        .map(|n| Path::new("/etc").join(n))
        .collect();
    named.sort();
    entries.extend(named);
    entries
}

/// Device nodes bound from the host.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Where the host's root sits while the new root is built.
const OLD_ROOT: &str = "/.oldroot";

fn mount_tmpfs(target: &str, options: &str) -> io::Result<()> {
    mount_tmpfs_with(target, options, MountFlags::empty())
}

fn mount_tmpfs_with(target: &str, options: &str, flags: MountFlags) -> io::Result<()> {
    let flags = MountFlags::NOSUID | MountFlags::NODEV | flags;
    Ok(rustix::mount::mount(c"tmpfs", c(target).as_c_str(), c"tmpfs", flags, c(options).as_c_str())?)
}

/// Mounts a `proc` of the caller's pid namespace on `/proc` (`nosuid`, `nodev`, `noexec`),
/// with `options` (`hidepid=...`) if any.
pub(super) fn mount_proc(options: Option<&CStr>) -> io::Result<()> {
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    Ok(rustix::mount::mount(c"proc", c"/proc", c"proc", flags, options)?)
}

/// `open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)`: a detached copy of the mount tree at `path`.
fn clone_tree(path: &Path) -> io::Result<OwnedFd> {
    let flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_RECURSIVE;
    Ok(open_tree(CWD, path, flags)?)
}

/// `move_mount(MOVE_MOUNT_F_EMPTY_PATH)`: attaches the detached tree `tree` at `target`.
fn attach_tree(tree: &OwnedFd, target: &Path) -> io::Result<()> {
    Ok(move_mount(tree, c"", CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)?)
}

/// Binds `source` at `target` (recursively) and sets `attrs` on the whole new subtree.
fn bind(source: &Path, target: &Path, attrs: MountAttrFlags) -> io::Result<()> {
    rustix::mount::mount_bind_recursive(source, target)?;
    mount_setattr(&cp(target)?, attrs, true)
}

/// Creates a mount point for `source` at `target`: a directory, or an empty file.
fn make_mount_point(source: &Path, target: &Path) -> io::Result<()> {
    make_mount_point_of(fs::metadata(source)?.is_dir(), target)
}

/// Creates a mount point at `target` for the detached tree `tree`: a directory, or an empty
/// file (told by `fstat` of the tree, which needs no `/proc` of the caller's).
fn make_mount_point_for(tree: &OwnedFd, target: &Path) -> io::Result<()> {
    make_mount_point_of(rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(tree)?.st_mode).is_dir(), target)
}

/// Creates `target` (and its parents), a directory or an empty file, unless it exists.
fn make_mount_point_of(is_dir: bool, target: &Path) -> io::Result<()> {
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    let made = if is_dir {
        fs::create_dir(target)
    } else {
        fs::OpenOptions::new().write(true).create(true).truncate(false).open(target).map(drop)
    };
    match made {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

fn under_old_root(path: &Path) -> PathBuf {
    Path::new(OLD_ROOT).join(path.strip_prefix("/").unwrap_or(path))
}

const RO: MountAttrFlags =
    MountAttrFlags::MOUNT_ATTR_RDONLY.union(MountAttrFlags::MOUNT_ATTR_NOSUID).union(MountAttrFlags::MOUNT_ATTR_NODEV);
const RW: MountAttrFlags = MountAttrFlags::MOUNT_ATTR_NOSUID.union(MountAttrFlags::MOUNT_ATTR_NODEV);

/// A user bind: where it goes, and its mount tree until it is attached.
pub(super) struct UserBind {
    pub(super) spec: BindSpec,
    tree: Option<OwnedFd>,
}

impl UserBind {
    pub(super) fn path(&self) -> &Path {
        Path::new(std::ffi::OsStr::from_bytes(&self.spec.path))
    }

    /// Attaches the bind's detached tree at its path, with its access mode.
    fn mount(&mut self) -> io::Result<()> {
        let tree = self.tree.take().ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        let target = self.path().to_owned();
        make_mount_point_for(&tree, &target)?;
        attach_tree(&tree, &target)?;
        mount_setattr(&cp(&target)?, if self.spec.writable { RW } else { RO }, true)
    }
}

pub(super) fn build_root(config: &ZygoteConfig, mut trees: Vec<OwnedFd>) -> StepResult<Vec<UserBind>> {
    let private = MountPropagationFlags::REC | MountPropagationFlags::PRIVATE;
    step("make mounts private", rustix::mount::mount_change(c"/", private).map_err(io::Error::from))?;
    step("mount the new root", mount_tmpfs("/tmp", "size=4m,mode=0755"))?;
    step("create the old-root mount point", fs::create_dir("/tmp/.oldroot"))?;
    step("pivot_root", rustix::process::pivot_root(c"/tmp", c"/tmp/.oldroot").map_err(io::Error::from))?;
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
    for entry in etc_entries(&under_old_root(Path::new("/etc"))) {
        let host = under_old_root(&entry);
        // A link into the system directories (`localtime` into the zone database,
        // `os-release` into `/usr/lib`) stays a link: programs read where it points.
        if let Some(target) = fs::read_link(&host).ok().filter(|t| points_into_system_dirs(&entry, t)) {
            step(format!("link {}", entry.display()), symlink(target, &entry))?;
            continue;
        }
        match fs::metadata(&host) {
            // A small file is copied into the root (read-only once it is built): a mount
            // would cost the sandbox more to make, and each session more to copy and to
            // take down.
            Ok(meta) if meta.is_file() && meta.len() <= ETC_COPY_MAX => {
                step(format!("copy {}", entry.display()), fs::copy(&host, &entry).map(drop))?;
            }
            Ok(_) => {
                step(format!("mount point {}", entry.display()), make_mount_point(&host, &entry))?;
                step(format!("bind {}", entry.display()), bind(&host, &entry, RO))?;
            }
            Err(_) => {}
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
    step("mount /proc", mount_proc(None))?;

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
        step(format!("bind /dev/{node}"), rustix::mount::mount_bind(&host, &target).map_err(io::Error::from))?;
        step(
            format!("restrict /dev/{node}"),
            cp(&target).and_then(|t| mount_setattr(&t, MountAttrFlags::MOUNT_ATTR_NOSUID, false)),
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
    // Each session mounts a devpts instance of its own here.
    step("create /dev/pts", fs::create_dir("/dev/pts"))?;
    step("link /dev/ptmx", symlink("pts/ptmx", "/dev/ptmx"))?;
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
            step(format!("open bind source {}", path.display()), clone_tree(&under_old_root(&path)))?
        };
        specs.push(UserBind { spec: spec.clone(), tree: Some(tree) });
    }
    // Parents before children, so a bind inside another lands on top of it.
    specs.sort_by_key(|b| b.spec.path.iter().filter(|&&ch| ch == b'/').count());
    for b in &mut specs {
        step(format!("bind {}", b.path().display()), b.mount())?;
    }
    let binds = specs;

    let detached = rustix::mount::unmount(OLD_ROOT, UnmountFlags::DETACH).map_err(io::Error::from);
    step("detach the host's root", detached)?;
    step("remove the old-root mount point", fs::remove_dir(OLD_ROOT))?;
    step("make / read-only", mount_setattr(c"/", RO, false))?;
    let dev = MountAttrFlags::MOUNT_ATTR_RDONLY | MountAttrFlags::MOUNT_ATTR_NOSUID;
    step("make /dev read-only", mount_setattr(c"/dev", dev, false))?;
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

/// Mounts a devpts instance of the session's own on `/dev/pts`: its terminals and their
/// numbers are nobody else's, and it goes with the session. It holds at most 16 terminals at
/// once: the kernel's own limit (`kernel.pty.max`, 4096 less a reserve for the host's) is
/// host-wide, so a session must not take much of what other sandboxes' terminals need.
fn mount_devpts() -> io::Result<()> {
    let flags = MountFlags::NOSUID | MountFlags::NOEXEC;
    let options = c"newinstance,ptmxmode=0666,mode=0620,max=16";
    Ok(rustix::mount::mount(c"devpts", c"/dev/pts", c"devpts", flags, Some(options))?)
}

fn mount_mqueue() -> io::Result<()> {
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::NOATIME;
    Ok(rustix::mount::mount(c"mqueue", c"/dev/mqueue", c"mqueue", flags, None)?)
}

/// Mounts the size-capped `/tmp` and `/dev/shm`, and `/dev/mqueue`, all `noatime`: reading a
/// session directory leaves its times as they were, so only a command's changes move them.
/// Each session covers them with fresh ones ([`fresh_session_dirs`]); these are the mount
/// points the binds below them are first attached to, and the directories Landlock's rules
/// name.
fn mount_session_dirs(config: &ZygoteConfig) -> StepResult<()> {
    let opts = session_tmpfs_options(config);
    step("mount /tmp", mount_tmpfs_with("/tmp", &opts, MountFlags::NOATIME))?;
    step("mount /dev/shm", mount_tmpfs_with("/dev/shm", &opts, MountFlags::NOATIME))?;
    step("mount /dev/mqueue", mount_mqueue())
}

/// Covers the session directories, in the session's own mount namespace, with fresh file
/// systems: a new tmpfs on `/tmp` and `/dev/shm` (the policy's binds below them attached
/// again, as clones of the mounts they cover), a new mqueue (of the session's new IPC
/// namespace) on `/dev/mqueue`, a new devpts instance on `/dev/pts`. So nothing an earlier
/// session did shows, not even what no call can undo: inode numbers, times (change times
/// included), IPC ids. The session's Landlock ruleset is built on these afterwards: a rule on
/// a directory that a file system covers would not hold (the kernel's walk from a file to the
/// root skips mount points).
pub(super) fn fresh_session_dirs(config: &ZygoteConfig, binds: &[UserBind]) -> StepResult<()> {
    cover_session_dirs(config, keep_binds(binds)?, None)
}

/// The policy's binds below `/tmp` and `/dev/shm`, as detached clones of their mounts (a bind
/// inside another comes with it: the clones are recursive), for each of the two in bind
/// order, parents first.
pub(super) struct KeptBinds([Vec<(PathBuf, OwnedFd)>; 2]);

/// Clones the policy's binds below the session directories where they are mounted now. Only
/// where no command reaches the paths on the way: a new session's mount namespace before its
/// first command, or the zygote's own, whose session directories no command sees. (In a
/// session that served, a command could have moved a directory on the way to a bind and left
/// a symlink in its place; the clone would follow it.)
pub(super) fn keep_binds(binds: &[UserBind]) -> StepResult<KeptBinds> {
    let mut kept: [Vec<(PathBuf, OwnedFd)>; 2] = Default::default();
    for (dir, kept) in ["/tmp/", "/dev/shm/"].into_iter().zip(kept.iter_mut()) {
        for b in binds.iter().filter(|b| b.spec.path.starts_with(dir.as_bytes())) {
            let path = b.path();
            if kept.iter().any(|(outer, _)| path.starts_with(outer)) {
                continue;
            }
            let tree = step(format!("keep the bind {}", path.display()), clone_tree(path))?;
            kept.push((path.to_owned(), tree));
        }
    }
    Ok(KeptBinds(kept))
}

/// A new `/tmp` and `/dev/shm` for a reset in place, made with the session (before its
/// spawner confines itself, so that its Landlock ruleset can name their roots) and mounted
/// nowhere yet: detached tmpfs mounts, as the session's own are mounted (`fsopen`,
/// `fsconfig`, `fsmount`).
pub(super) struct SpareDirs {
    tmp: OwnedFd,
    shm: OwnedFd,
}

impl SpareDirs {
    /// Makes one pair.
    pub(super) fn new(config: &ZygoteConfig) -> io::Result<SpareDirs> {
        Ok(SpareDirs { tmp: detached_session_tmpfs(config)?, shm: detached_session_tmpfs(config)? })
    }

    /// The roots of its two file systems.
    pub(super) fn roots(&self) -> [BorrowedFd<'_>; 2] {
        [self.tmp.as_fd(), self.shm.as_fd()]
    }
}

/// A tmpfs with the session directories' options, mounted nowhere.
fn detached_session_tmpfs(config: &ZygoteConfig) -> io::Result<OwnedFd> {
    let fs = fsopen(c"tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)?;
    let size = config.tmp_size.max(4096).to_string();
    let inodes = SESSION_INODES.to_string();
    let uid = SANDBOX_UID.to_string();
    for (key, value) in
        [("size", size.as_str()), ("nr_inodes", &inodes), ("mode", "1777"), ("uid", &uid), ("gid", &uid)]
    {
        fsconfig_set_string(&fs, key, value)?;
    }
    fsconfig_create(&fs)?;
    let attrs =
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV | MountAttrFlags::MOUNT_ATTR_NOATIME;
    Ok(fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)?)
}

/// A reset in place, run by the zygote in the session's mount namespace once the session's
/// commands changed nothing but files in `/tmp` and `/dev/shm`: takes the session's own
/// session directories off (detached: the spawner's working directory still holds the old
/// `/tmp` until it moves) and puts `dirs` in their place with the binds `kept` (taken in the
/// zygote's own namespace), then the rest as a new session does, in the same order. The
/// session's mqueue, which the zygote (in another IPC namespace) cannot mount anew, is
/// unmounted and attached again as a clone of its mount.
pub(super) fn renew_session_dirs(config: &ZygoteConfig, kept: KeptBinds, dirs: SpareDirs) -> StepResult<()> {
    cover_session_dirs(config, kept, Some(dirs))
}

/// Covers the session directories: with new file systems (`spare` `None`: a new session), or
/// with `spare` where the session's own are taken off first (a reset in place); the binds
/// below them attached again from `kept`.
fn cover_session_dirs(config: &ZygoteConfig, kept: KeptBinds, spare: Option<SpareDirs>) -> StepResult<()> {
    let take_off = |dir: &str| {
        let off = rustix::mount::unmount(c(dir).as_c_str(), UnmountFlags::DETACH).map_err(io::Error::from);
        step(format!("unmount the session's {dir}"), off)
    };
    let opts = session_tmpfs_options(config);
    let replace = spare.is_some();
    let mut spare = spare.map(|d| [d.tmp, d.shm].into_iter());
    for (dir, kept) in ["/tmp", "/dev/shm"].into_iter().zip(kept.0) {
        match spare.as_mut().and_then(Iterator::next) {
            Some(fresh) => {
                take_off(dir)?;
                // Attached as a clone of its mount made now: a mount's id is the time it was
                // made, and `/proc/self/mountinfo` lists mounts by id, so the made-ahead
                // one's would tell the next lease that its session was reset in place.
                step(format!("attach a fresh {dir}"), attach_tree(&fresh, Path::new(dir)))?;
                let flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
                let clone = open_tree(CWD, c(dir).as_c_str(), flags).map_err(io::Error::from);
                let clone = step(format!("clone the fresh {dir}"), clone)?;
                take_off(dir)?;
                step(format!("attach the fresh {dir} again"), attach_tree(&clone, Path::new(dir)))?;
            }
            None => step(format!("mount a fresh {dir}"), mount_tmpfs_with(dir, &opts, MountFlags::NOATIME))?,
        }
        // In bind order: parents before children.
        for (path, tree) in kept {
            let attach = make_mount_point_for(&tree, &path).and_then(|()| attach_tree(&tree, &path));
            step(format!("bind {} again", path.display()), attach)?;
        }
    }
    if replace {
        let flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
        let mqueue = open_tree(CWD, c"/dev/mqueue", flags).map_err(io::Error::from);
        let mqueue = step("keep the session's /dev/mqueue", mqueue)?;
        take_off("/dev/mqueue")?;
        step("attach the session's /dev/mqueue again", attach_tree(&mqueue, Path::new("/dev/mqueue")))?;
        take_off("/dev/pts")?;
    } else {
        step("mount a fresh /dev/mqueue", mount_mqueue())?;
    }
    step("mount the session's /dev/pts", mount_devpts())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etc_links_are_kept_only_into_the_system_directories() {
        let etc = |name: &str| Path::new("/etc").join(name);
        assert!(points_into_system_dirs(&etc("os-release"), Path::new("../usr/lib/os-release")));
        assert!(points_into_system_dirs(&etc("localtime"), Path::new("/usr/share/zoneinfo/Etc/UTC")));
        assert!(!points_into_system_dirs(&etc("x"), Path::new("/var/lib/x")), "not shown inside");
        assert!(!points_into_system_dirs(&etc("x"), Path::new("../../../usr/../home/u/x")), "folded first");
        assert!(!points_into_system_dirs(&etc("x"), Path::new("x.d/file")), "a sibling in /etc");
    }
}
