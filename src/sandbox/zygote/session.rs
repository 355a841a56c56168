//! A session's state, and the verdict after each command: is the session still as it
//! started, so that the next lease may have it as it is, or did its commands change only
//! files in its `/tmp` and `/dev/shm`?
//!
//! The reset itself is the zygote's: after files only, it mounts fresh session directories
//! in the session as it is ([`Zygote::renew_dirs_in_place`](super::Zygote)); otherwise the
//! whole session ends with its pid namespace, and the next starts with new namespaces and
//! file systems ([`Zygote::renew_session`](super::Zygote)). The verdict only has to tell,
//! cheaply, which is needed, if any.

use std::ffi::{CStr, CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, CWD, OFlags, StatxFlags, statx};

use super::super::protocol::Leftover;
use super::super::sys::{self, OwnSettings};
use super::net::NetworkWatch;
use super::template::only_the_template_left;
use super::{cp, open};

/// The size tmpfs and mqueue report for a directory holding only `.` and `..`: they count 20
/// bytes per entry (the kernel keeps it; a command cannot change it but by adding entries).
const EMPTY_DIR_SIZE: u64 = 40;

/// The directories a session can write to outside its binds.
const SESSION_DIRS: [&CStr; 3] = [c"/tmp", c"/dev/shm", c"/dev/mqueue"];

/// What `statx(2)` says of a path (a final symlink not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PathStat {
    /// The mount it lives on (`STATX_MNT_ID`).
    mount_id: u64,
    /// Its size: for a tmpfs or mqueue directory, 20 bytes per entry, `.` and `..` included.
    size: u64,
    /// Its permission bits (with set-id and sticky bits).
    mode: u16,
    /// Whether it is a directory.
    is_dir: bool,
    /// Its owner and group.
    owner: (u32, u32),
    /// Its access, modification and change times (seconds, nanoseconds). The change time
    /// matters: `utimensat` can put the first two back after a command changed the
    /// directory, but moves the third, which no call sets.
    times: [(i64, u32); 3],
}

impl PathStat {
    /// [`statx(2)`](https://man7.org/linux/man-pages/man2/statx.2.html) of `path` for its
    /// mount id, size, mode, owner and times.
    fn of(path: &CStr) -> io::Result<PathStat> {
        let mask = StatxFlags::MNT_ID
            | StatxFlags::SIZE
            | StatxFlags::MODE
            | StatxFlags::UID
            | StatxFlags::GID
            | StatxFlags::ATIME
            | StatxFlags::MTIME
            | StatxFlags::CTIME;
        let st = statx(CWD, path, AtFlags::SYMLINK_NOFOLLOW, mask)?;
        Ok(PathStat {
            mount_id: st.stx_mnt_id,
            size: st.stx_size,
            mode: st.stx_mode & 0o7777,
            is_dir: u32::from(st.stx_mode) & libc::S_IFMT == libc::S_IFDIR,
            owner: (st.stx_uid, st.stx_gid),
            times: [
                (st.stx_atime.tv_sec, st.stx_atime.tv_nsec),
                (st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec),
                (st.stx_ctime.tv_sec, st.stx_ctime.tv_nsec),
            ],
        })
    }
}

/// [`listxattr(2)`](https://man7.org/linux/man-pages/man2/listxattr.2.html): the extended
/// attribute names of `path` (a final symlink followed; the session directories are not
/// symlinks). A file system without extended attributes has none.
fn xattr_names(path: &CStr) -> io::Result<Vec<CString>> {
    let mut buf = vec![0u8; 1024];
    loop {
        match rustix::fs::listxattr(path, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf
                    .split(|&b| b == 0)
                    .filter(|n| !n.is_empty())
                    .filter_map(|n| CString::new(n).ok())
                    .collect());
            }
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            // More names than room: ask how much they need, and try again.
            Err(rustix::io::Errno::RANGE) => {
                let need = rustix::fs::listxattr(path, &mut [0u8; 0][..])?;
                buf.resize(need.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What [`SessionState::untouched`] compares of one session directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SessionDir {
    /// Mount, size (20 bytes per entry on tmpfs and mqueue), mode, owner and times (the
    /// time of a lease's last change is the lease's).
    stat: PathStat,
    /// Its extended attribute names (a command may set `user.*` ones, or an ACL).
    xattrs: Vec<CString>,
    /// Its inode flags (the owner may set `nodump`, `noatime`, ... with `chattr`); a file
    /// system without them (mqueue) has none.
    flags: u32,
}

impl SessionDir {
    fn read(dir: &CStr, fd: &OwnedFd) -> Option<SessionDir> {
        let stat = PathStat::of(dir).ok()?;
        let xattrs = xattr_names(dir).ok()?;
        let flags = match rustix::fs::ioctl_getflags(fd) {
            Ok(flags) => flags.bits(),
            Err(rustix::io::Errno::NOTTY | rustix::io::Errno::OPNOTSUPP) => 0,
            Err(_) => return None,
        };
        Some(SessionDir { stat, xattrs, flags })
    }
}

/// The watched directories' state, in the order of `dirs`.
fn read_dirs(dirs: &[(CString, OwnedFd)]) -> Option<Vec<SessionDir>> {
    dirs.iter().map(|(path, fd)| SessionDir::read(path, fd)).collect()
}

/// The directories the verdict watches: the session directories, and every directory of the
/// session's own below them, which can only be one that holds the mount point of a nested
/// bind (`/tmp/x` for a bind at `/tmp/x/inner`: a session starts with nothing else there).
/// What a command adds or changes in one shows on it, not on `/tmp`. `None` if a session
/// directory holds anything else, or cannot be read: then no session counts as untouched.
fn watched_dirs() -> Option<Vec<(CString, OwnedFd)>> {
    let mut dirs = Vec::new();
    let mut pending: Vec<CString> = SESSION_DIRS.iter().map(|d| CString::from(*d)).collect();
    while let Some(dir) = pending.pop() {
        let stat = PathStat::of(&dir).ok()?;
        if stat.size > EMPTY_DIR_SIZE {
            for entry in fs::read_dir(Path::new(OsStr::from_bytes(dir.to_bytes()))).ok()? {
                let entry = cp(&entry.ok()?.path()).ok()?;
                let inner = PathStat::of(&entry).ok()?;
                if inner.mount_id == stat.mount_id {
                    // Of the session's own: only a directory on the way to a nested bind.
                    if !inner.is_dir {
                        return None;
                    }
                    pending.push(entry);
                }
            }
        }
        let fd = open(&dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW).ok()?;
        dirs.push((dir, fd));
    }
    Some(dirs)
}

/// Opens `kernel.shm_next_id`, `msg_next_id` and `sem_next_id` of the session's IPC namespace
/// and sets each to 0 (see [`SessionState::no_ipc_object_made`]); `None` if this kernel has
/// none.
fn first_ipc_ids() -> io::Result<Option<Vec<OwnedFd>>> {
    let mut files = Vec::new();
    for path in [c"/proc/sys/kernel/shm_next_id", c"/proc/sys/kernel/msg_next_id", c"/proc/sys/kernel/sem_next_id"] {
        match open(path, OFlags::RDWR) {
            Ok(f) => files.push(f),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    for f in &files {
        rustix::io::pwrite(f, b"0", 0)?;
    }
    Ok(Some(files))
}

/// What a session's spawner holds to judge, after each command, whether the session is still
/// as it started.
pub(super) struct SessionState {
    /// How the watched directories look when the session starts (`None` if they could not
    /// be read: then no session counts as untouched).
    pristine: Option<Vec<SessionDir>>,
    /// The sandbox's own network namespace, whose sockets and counters are session state;
    /// `None` with the host's network.
    network: Option<NetworkWatch>,
    /// The watched directories (see [`watched_dirs`]), held open for their inode flags (one
    /// `ioctl` each).
    watched: Vec<(CString, OwnedFd)>,
    /// The session's `ns_last_pid`, held open for writing.
    pid_counter: OwnedFd,
    /// The session's `kernel.{shm,msg,sem}_next_id`, set to 0 when it starts: the next System
    /// V object of each kind takes that id, as in a fresh IPC namespace, and sets it back to
    /// -1, which shows that the session made one even if it removed it since. `None` where
    /// the kernel lacks them (no `CONFIG_CHECKPOINT_RESTORE`).
    ipc_next_ids: Option<Vec<OwnedFd>>,
    /// The spawner's own settings as it started, which commands inherit (`None` if they could
    /// not be read: then no session counts as untouched).
    settings: Option<OwnSettings>,
    /// `/dev/pts` and its `ptmx` as the session starts: a terminal written to moves the
    /// times of `ptmx` (`None` if they could not be read: then no session counts as
    /// untouched).
    terminals: Option<[PathStat; 2]>,
    /// What the pid counter is rewound to: 1 (the next process is pid 2), or with a runtime's
    /// template, where the template's start left it.
    first_pid_after: Vec<u8>,
    /// Whether a runtime's template lives beside the spawner: then no process but it may be
    /// left ([`super::template::only_the_template_left`]).
    with_template: bool,
}

/// What `statx` says of the session's devpts: its root and its `ptmx`.
fn terminals() -> Option<[PathStat; 2]> {
    Some([PathStat::of(c"/dev/pts").ok()?, PathStat::of(c"/dev/pts/ptmx").ok()?])
}

impl SessionState {
    /// Records the session as it starts (the spawner confined, nothing run yet), with the
    /// watch of its network namespace (`None` with the host's network), and rewinds the pid
    /// counter; on failure, the step that failed.
    pub(super) fn start(
        network: Option<NetworkWatch>,
        with_template: bool,
    ) -> Result<SessionState, (String, io::Error)> {
        let step = |name: &'static str| move |e: io::Error| (name.to_string(), e);
        let pid_counter = open(c"/proc/sys/kernel/ns_last_pid", OFlags::RDWR).map_err(step("open ns_last_pid"))?;
        let first_pid_after = if with_template {
            let mut buf = [0u8; 16];
            let n =
                rustix::io::pread(&pid_counter, &mut buf, 0).map_err(|e| ("read ns_last_pid".to_string(), e.into()))?;
            buf[..n].trim_ascii().to_vec()
        } else {
            b"1".to_vec()
        };
        let ipc_next_ids = first_ipc_ids().map_err(step("set the next System V IPC ids"))?;
        let mut state = SessionState {
            pristine: None,
            network,
            watched: Vec::new(),
            pid_counter,
            ipc_next_ids,
            settings: None,
            terminals: None,
            first_pid_after,
            with_template,
        };
        state.rewind_pid_counter().map_err(step("rewind the pid counter"))?;
        if let Some(watched) = watched_dirs() {
            state.pristine = read_dirs(&watched);
            state.watched = watched;
        }
        state.settings = OwnSettings::read().ok();
        state.terminals = terminals();
        Ok(state)
    }

    /// Makes the next process of the session pid 2 again, as in a fresh sandbox, so that no
    /// lease learns from its pids how many processes the one before made. Only while the
    /// spawner is alone in its namespace (`ns_last_pid` of the session's `/proc`, which needs
    /// `CAP_CHECKPOINT_RESTORE`).
    fn rewind_pid_counter(&self) -> io::Result<()> {
        rustix::io::pwrite(&self.pid_counter, &self.first_pid_after, 0)?;
        Ok(())
    }

    /// What the session's commands left, judged once none runs: [`Leftover::Nothing`] if the
    /// session is as it started: no process but the spawner, no entry added to `/tmp`,
    /// `/dev/shm` or `/dev/mqueue`, nor to a directory of theirs on the way to a nested bind
    /// (tmpfs and mqueue count 20 bytes of directory size per entry, and a session cannot
    /// remove the mount points of binds; what a command writes into a read-write bind is the
    /// host's directory changing, not the session's), their modes, owners, times, extended
    /// attributes and inode flags unchanged, no System V IPC object ever made, no packet
    /// through the sandbox's own network namespace (so no socket left in any state), the
    /// spawner's own settings as they were, and the session's devpts as it was (a terminal
    /// once written to shows in the times of `ptmx`). [`Leftover::Files`] if all of that holds
    /// but for `/tmp`, `/dev/shm` and the directories below them: fresh file systems there
    /// (which the zygote can mount in place) make the session as it started. Processes come
    /// first: once none is left, nothing can change the rest. Unless something more is left,
    /// the pid counter is rewound, so the next command is pid 2 as in a fresh sandbox.
    pub(super) fn left(&self) -> Leftover {
        let Some(pristine) = &self.pristine else { return Leftover::More };
        let no_process = if self.with_template { only_the_template_left() } else { sys::surely_no_other_process() };
        if !no_process {
            return Leftover::More;
        }
        let Some(now) = read_dirs(&self.watched) else { return Leftover::More };
        let mut left = Leftover::Nothing;
        for ((path, _), (now, then)) in self.watched.iter().zip(now.iter().zip(pristine)) {
            if now != then {
                // A message queue lives in the IPC namespace, not in the mount.
                if path.as_bytes().starts_with(b"/dev/mqueue") {
                    return Leftover::More;
                }
                left = Leftover::Files;
            }
        }
        let rest_intact = self.no_ipc_object_made()
            && self.network.as_ref().is_none_or(NetworkWatch::quiet)
            && self.own_settings_intact()
            && self.terminals.is_some()
            && terminals() == self.terminals;
        if rest_intact && self.rewind_pid_counter().is_ok() { left } else { Leftover::More }
    }

    /// After the zygote gave the session fresh session directories (a reset in place, once
    /// [`SessionState::left`] said files only): watches the new ones, records them as the
    /// session's start, and rewinds the pid counter again. On failure no later verdict
    /// finds the session untouched.
    pub(super) fn dirs_renewed(&mut self) -> io::Result<()> {
        self.pristine = None;
        self.watched = Vec::new();
        let watched = watched_dirs().ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))?;
        self.pristine = read_dirs(&watched);
        self.watched = watched;
        // A new devpts too: its times are new.
        self.terminals = terminals();
        self.rewind_pid_counter()
    }

    /// Whether the session never made a System V IPC object (so none is left, and the next
    /// ids are still those of a fresh namespace); without the `*_next_id` files, whether none
    /// is left.
    fn no_ipc_object_made(&self) -> bool {
        match &self.ipc_next_ids {
            Some(files) => files.iter().all(|f| {
                let mut buf = [0u8; 8];
                matches!(rustix::io::pread(f.as_fd(), &mut buf, 0), Ok(2) if &buf[..2] == b"0\n")
            }),
            None => matches!(sys::sysv_ipc_in_use(), Ok([0, 0, 0])),
        }
    }

    /// Whether the spawner's own settings (limits, scheduling, affinity, I/O priority, pending
    /// signals), which every later command inherits, are still as it started. The seccomp
    /// filter keeps commands from naming the spawner (pid 1); this is the wall behind it.
    fn own_settings_intact(&self) -> bool {
        self.settings.is_some() && OwnSettings::read().ok() == self.settings
    }
}
