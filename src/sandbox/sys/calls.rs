//! Typed wrappers, in rustix's style, for the calls rustix 1.x does not have. Each names its
//! system call; none takes or returns a raw descriptor it does not own or borrow.

use std::ffi::{CStr, c_int, c_long, c_void};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;

use rustix::mount::MountAttrFlags;
use rustix::process::{Resource, getrlimit};

use super::raw::block_all_signals;

/// Turns a libc return value into an `io::Result`, reading `errno` on failure.
fn cvt(ret: c_int) -> io::Result<c_int> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

fn cvt_long(ret: c_long) -> io::Result<c_long> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// Wraps a freshly returned, owned file descriptor.
fn owned(fd: c_int) -> io::Result<OwnedFd> {
    let fd = cvt(fd)?;
    // SAFETY: `fd` was just returned by the kernel as a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

// --- mount_setattr(2)

/// `struct mount_attr` of `<linux/mount.h>`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn mount_setattr_raw(dirfd: c_int, path: &CStr, flags: c_int, attr: &MountAttr) -> io::Result<()> {
    // SAFETY: `path` is a valid C string and `attr` a valid `struct mount_attr` of the size
    // passed; `dirfd` is AT_FDCWD or a descriptor the caller borrows for the call.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags as c_long,
            attr as *const MountAttr,
            size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// [`mount_setattr(2)`](https://man7.org/linux/man-pages/man2/mount_setattr.2.html) on the
/// mount at `path`, recursively or not: sets `set`, clearing nothing (in particular not the
/// atime flags a user namespace may not change).
pub(crate) fn mount_setattr(path: &CStr, set: MountAttrFlags, recursive: bool) -> io::Result<()> {
    let attr = MountAttr { attr_set: u64::from(set.bits()), attr_clr: 0, propagation: 0, userns_fd: 0 };
    mount_setattr_raw(libc::AT_FDCWD, path, if recursive { libc::AT_RECURSIVE } else { 0 }, &attr)
}

/// [`mount_setattr(2)`](https://man7.org/linux/man-pages/man2/mount_setattr.2.html) with
/// `MOUNT_ATTR_IDMAP` on a detached tree (from `open_tree(OPEN_TREE_CLONE)`): its files'
/// owners are seen through the id maps of the user namespace `userns`.
pub(crate) fn idmap_tree(tree: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: u64::from(MountAttrFlags::MOUNT_ATTR_IDMAP.bits()),
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    mount_setattr_raw(tree.as_raw_fd(), c"", libc::AT_EMPTY_PATH | libc::AT_RECURSIVE, &attr)
}

// --- Signals: dispositions, the raw mask, signalfd(2).

/// Resets every signal to its default disposition and blocks all 64 of them (32 and 33
/// included, which glibc's mask calls keep open), then returns a
/// [`signalfd(2)`](https://man7.org/linux/man-pages/man2/signalfd.2.html) that reports
/// `SIGCHLD`.
pub(crate) fn take_over_signals() -> io::Result<OwnedFd> {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is always a valid disposition.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    block_all_signals();
    child_signals()
}

/// A [`signalfd(2)`](https://man7.org/linux/man-pages/man2/signalfd.2.html) that reports
/// `SIGCHLD` and `SIGPIPE` (non-blocking), for a process that blocks it already (one that called
/// [`take_over_signals`], or a fork of it: dispositions and mask are inherited).
pub(crate) fn child_signals() -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data filled by sigemptyset/sigaddset; the calls only write it,
    // and signalfd reads it.
    unsafe {
        let mut chld: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut chld);
        libc::sigaddset(&mut chld, libc::SIGCHLD);
        // A spawner writing to a command's status pipe that the host closed gets SIGPIPE,
        // blocked: read here, so it does not stay pending (the verdict compares those).
        libc::sigaddset(&mut chld, libc::SIGPIPE);
        owned(libc::signalfd(-1, &chld, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK))
    }
}

// --- wait4(2) and kill(-1, ..).

/// Resource use of a reaped child.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ChildUsage {
    pub user_us: u64,
    pub system_us: u64,
    pub max_rss_kib: u64,
}

/// [`wait4(-1, __WALL)`](https://man7.org/linux/man-pages/man2/wait4.2.html), blocking or
/// not (`WNOHANG`): one exited child, if any, as `(pid, wait status, usage)`.
pub(crate) fn reap_any(block: bool) -> io::Result<Option<(i32, c_int, ChildUsage)>> {
    let mut status: c_int = 0;
    // SAFETY: rusage is plain data that wait4 fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if block { libc::__WALL } else { libc::WNOHANG | libc::__WALL };
    // SAFETY: both out-pointers name live locals.
    let pid = unsafe { libc::wait4(-1, &mut status, flags, &mut usage) };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        return Ok(None);
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Ok(Some((
        pid,
        status,
        ChildUsage { user_us: us(usage.ru_utime), system_us: us(usage.ru_stime), max_rss_kib: usage.ru_maxrss as u64 },
    )))
}

/// [`kill(-1, SIGKILL)`](https://man7.org/linux/man-pages/man2/kill.2.html) from a pid
/// namespace's init: every process of the namespace but the caller.
pub(crate) fn kill_all_others() {
    // SAFETY: integer arguments only; ESRCH (nothing to kill) is fine.
    unsafe { libc::kill(-1, libc::SIGKILL) };
}

/// `kill(-1, 0)` from a pid namespace's init: is any other process left that it may signal?
pub(crate) fn any_other_process() -> bool {
    // SAFETY: signal 0 only checks; integer arguments only.
    unsafe { libc::kill(-1, 0) == 0 }
}

/// Whether `kill(-1, 0)` finds no process at all besides the caller (`ESRCH`). Unlike
/// `!any_other_process()`, a process it may not signal (`EPERM`) counts.
pub(crate) fn surely_no_other_process() -> bool {
    // SAFETY: signal 0 only checks; integer arguments only.
    let r = unsafe { libc::kill(-1, 0) };
    r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

// --- fork(2) and _exit(2).

/// [`fork(2)`](https://man7.org/linux/man-pages/man2/fork.2.html) of a zygote: `Ok(None)` in
/// the child, which may go on running ordinary code, allocator included, because a zygote is
/// single-threaded for its whole life. Anywhere else (a process that may have threads, whose
/// locks a fork could copy held) it refuses with `EPERM`.
pub(crate) fn fork_single_threaded() -> io::Result<Option<i32>> {
    if !super::entry::in_zygote() {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    // SAFETY: the zygote is a fresh image that starts no thread (checked above): the child
    // gets a consistent copy of every lock and of the allocator.
    let pid = cvt(unsafe { libc::fork() })?;
    Ok((pid > 0).then_some(pid))
}

/// [`_exit(2)`](https://man7.org/linux/man-pages/man2/_exit.2.html): ends the process
/// without unwinding or running exit handlers (a zygote, or a forked child of one).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: ends the process; nothing after it runs.
    unsafe { libc::_exit(code) }
}

// --- System V IPC.

/// `struct shm_info`, what `shmctl(SHM_INFO)` fills (not in the `libc` crate).
#[repr(C)]
struct ShmInfo {
    used_ids: c_int,
    shm_tot: libc::c_ulong,
    shm_rss: libc::c_ulong,
    shm_swp: libc::c_ulong,
    swap_attempts: libc::c_ulong,
    swap_successes: libc::c_ulong,
}

/// `SHM_INFO` from `<linux/shm.h>`.
const SHM_INFO: c_int = 14;

/// How many System V shared memory segments, semaphore sets and message queues exist in
/// this IPC namespace: [`shmctl(SHM_INFO)`](https://man7.org/linux/man-pages/man2/shmctl.2.html),
/// `semctl(SEM_INFO)`, `msgctl(MSG_INFO)`; three system calls, against reading three
/// `/proc/sysvipc` tables.
pub(crate) fn sysv_ipc_in_use() -> io::Result<[usize; 3]> {
    // SAFETY: each struct is plain data the kernel fills for the *_INFO command (the libc
    // prototypes name another struct type; the kernel writes the *_info layout).
    unsafe {
        let mut shm: ShmInfo = std::mem::zeroed();
        cvt(libc::shmctl(0, SHM_INFO, (&raw mut shm).cast::<libc::shmid_ds>()))?;
        let mut sem: libc::seminfo = std::mem::zeroed();
        cvt(libc::semctl(0, 0, libc::SEM_INFO, &raw mut sem))?;
        let mut msg: libc::msginfo = std::mem::zeroed();
        cvt(libc::msgctl(0, libc::MSG_INFO, (&raw mut msg).cast::<libc::msqid_ds>()))?;
        Ok([shm.used_ids, sem.semusz, msg.msgpool].map(|n| n.max(0) as usize))
    }
}

// --- What another process of the same uid may change about the caller.

/// The resource limits, in `RLIMIT_*` order.
const RESOURCES: [Resource; 16] = [
    Resource::Cpu,
    Resource::Fsize,
    Resource::Data,
    Resource::Stack,
    Resource::Core,
    Resource::Rss,
    Resource::Nproc,
    Resource::Nofile,
    Resource::Memlock,
    Resource::As,
    Resource::Locks,
    Resource::Sigpending,
    Resource::Msgqueue,
    Resource::Nice,
    Resource::Rtprio,
    Resource::Rttime,
];

/// `struct sched_attr` as `sched_getattr(2)` fills it (with the utilization clamps of 5.3+).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

/// What another process of the same uid may change about the calling process, and what its
/// children inherit: every resource limit, the scheduling attributes (policy, nice value,
/// priority, utilization clamps), the CPU affinity, the I/O priority, and the signals that
/// wait, blocked, for it. Read with `prlimit64(0, ..)`,
/// [`sched_getattr(2)`](https://man7.org/linux/man-pages/man2/sched_getattr.2.html),
/// `sched_getaffinity(2)`, [`ioprio_get(2)`](https://man7.org/linux/man-pages/man2/ioprio_get.2.html)
/// and [`rt_sigpending(2)`](https://man7.org/linux/man-pages/man2/sigpending.2.html).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OwnSettings {
    limits: [(Option<u64>, Option<u64>); 16],
    sched: SchedAttr,
    affinity: [u64; 16],
    ioprio: c_long,
    pending: u64,
}

impl OwnSettings {
    /// Reads the calling process's settings.
    pub(crate) fn read() -> io::Result<OwnSettings> {
        let limits = RESOURCES.map(|r| {
            let l = getrlimit(r);
            (l.current, l.maximum)
        });
        let mut sched = SchedAttr::default();
        // SAFETY: `sched` is writable for the size passed; pid 0 is the caller.
        cvt_long(unsafe {
            libc::syscall(libc::SYS_sched_getattr, 0, &mut sched as *mut SchedAttr, size_of::<SchedAttr>() as u32, 0u32)
        })?;
        let mut affinity = [0u64; 16];
        // SAFETY: the mask buffer is writable for the size passed; pid 0 is the caller.
        cvt_long(unsafe {
            libc::syscall(libc::SYS_sched_getaffinity, 0, size_of::<[u64; 16]>(), affinity.as_mut_ptr())
        })?;
        // SAFETY: integer arguments only (IOPRIO_WHO_PROCESS, the caller).
        let ioprio = cvt_long(unsafe { libc::syscall(libc::SYS_ioprio_get, 1, 0) })?;
        let mut pending = 0u64;
        // SAFETY: `pending` is a writable 8-byte signal set, the kernel's sigset size.
        cvt_long(unsafe { libc::syscall(libc::SYS_rt_sigpending, &mut pending as *mut u64, 8usize) })?;
        // SIGCHLD comes and goes with the spawner's own children (read from its signalfd).
        pending &= !(1u64 << (libc::SIGCHLD - 1));
        Ok(OwnSettings { limits, sched, affinity, ioprio, pending })
    }
}

// --- Landlock's version query.

/// The Landlock ABI version the kernel offers
/// ([`landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`](https://man7.org/linux/man-pages/man2/landlock_create_ruleset.2.html)),
/// or `None` when Landlock is off or missing.
pub(crate) fn landlock_abi() -> Option<u32> {
    // SAFETY: the version query takes a NULL attribute and size 0.
    let r = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, ptr::null::<c_void>(), 0usize, 1u32) };
    (r > 0).then_some(r as u32)
}

// --- unshare(2) of namespaces only.

/// [`unshare(2)`](https://man7.org/linux/man-pages/man2/unshare.2.html) of namespaces only
/// (`CLONE_NEW*`); anything else (`CLONE_FILES`, `CLONE_FS`, ...) is refused with `EINVAL`.
pub(crate) fn unshare_namespaces(flags: rustix::thread::UnshareFlags) -> io::Result<()> {
    use rustix::thread::UnshareFlags as F;
    let namespaces = F::NEWNS | F::NEWPID | F::NEWIPC | F::NEWUTS | F::NEWNET | F::NEWUSER | F::NEWCGROUP | F::NEWTIME;
    if !namespaces.contains(flags) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: new namespaces leave the descriptor table and every file descriptor as they
    // are (only `CLONE_FILES` would unshare the table, refused above), so no `OwnedFd` or
    // `BorrowedFd` of this process is invalidated.
    Ok(unsafe { rustix::thread::unshare_unsafe(flags) }?)
}

// --- fcntl(2) F_OFD_SETLK

/// [`fcntl(F_OFD_SETLK)`](https://man7.org/linux/man-pages/man2/fcntl.2.html): takes an
/// exclusive lock on the one byte at `offset` of `file`, owned by its open file description
/// (so released when the last descriptor of it closes, or the process dies). `Ok(false)`
/// when another description holds it.
pub(crate) fn lock_byte(file: BorrowedFd<'_>, offset: u64) -> io::Result<bool> {
    // SAFETY: `flock` is plain data; all-zero is a valid value, completed below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as _;
    lock.l_whence = libc::SEEK_SET as _;
    lock.l_start = offset as libc::off_t;
    lock.l_len = 1;
    // SAFETY: `file` is a live descriptor and `lock` a valid `struct flock` for the call's
    // duration; F_OFD_SETLK reads it and, on failure, changes nothing.
    match cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock as *const libc::flock) }) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}
