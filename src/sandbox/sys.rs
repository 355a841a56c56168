//! The raw Linux layer: the only module of the crate with `unsafe` code.
//!
//! Everything here is a thin, typed wrapper over one system call (named in each doc comment),
//! plus the two code paths that run between `clone3` and `execve`:
//!
//! - [`spawn_zygote`] runs in the *host*: the child shares the host's memory (`CLONE_VM |
//!   CLONE_VFORK`, so no page table is copied whatever the host's size) and, until it execs the
//!   zygote image, it only makes raw system calls: no allocation, no lock, no `errno`, no panic.
//! - [`spawn_command`] runs in the *zygote* (a fresh, single-threaded image) to start one
//!   command; its child also only makes system calls before `execve`.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_long, c_void};
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("sandpool's sandbox supports x86_64 and aarch64 Linux");

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

fn cstr(path: &str) -> io::Result<CString> {
    CString::new(path).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in path"))
}

// ---------------------------------------------------------------------------------------------
// Raw system calls that never touch errno (safe to use in a CLONE_VM child, whose thread-local
// errno is the parent thread's).

/// One raw system call; returns the kernel's result (`-errno` on failure).
///
/// # Safety
/// The arguments must be valid for system call `nr`.
#[inline(always)]
unsafe fn raw_syscall(nr: c_long, a0: usize, a1: usize, a2: usize, a3: usize, a4: usize) -> isize {
    let ret: isize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller guarantees the arguments suit the system call; `syscall` clobbers only
    // rcx and r11, declared here.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a0, in("rsi") a1, in("rdx") a2, in("r10") a3, in("r8") a4,
            lateout("rcx") _, lateout("r11") _,
            options(nostack, preserves_flags)
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the caller guarantees the arguments suit the system call; `svc 0` returns in x0.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a0 as isize => ret,
            in("x1") a1, in("x2") a2, in("x3") a3, in("x4") a4,
            options(nostack)
        );
    }
    ret
}

/// `clone3(2)` (or `clone(2)`) with a child that starts on its own stack and calls
/// `child(arg)`, which must never return. `a0`, `a1` are the system call's first arguments:
/// `(&clone_args, size)` for `clone3`, `(flags, stack top)` for `clone`.
///
/// # Safety
/// The stack named in the arguments must be a writable, 16-byte aligned region that stays
/// valid until the child execs or exits (with `CLONE_VFORK` the caller is suspended until
/// then). `child` must never return and, with `CLONE_VM`, must only make raw system calls.
unsafe fn clone_on_new_stack(
    nr: c_long,
    a0: usize,
    a1: usize,
    child: extern "C" fn(*mut c_void) -> !,
    arg: *mut c_void,
) -> isize {
    let ret: isize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: in the parent this is one `syscall` (clobbering rcx, r11; rdx, r10, r8 are the
    // zero parent-tid, child-tid and tls arguments of `clone`, unused by `clone3`). In the
    // child (rax = 0) the kernel has set rsp to the new stack's top; we call `child(arg)`
    // there and never come back into compiled code, so no invariant of this frame is needed.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") nr as isize => ret,
            in("rdi") a0,
            in("rsi") a1,
            in("rdx") 0usize,
            in("r10") 0usize,
            in("r8") 0usize,
            in("r12") arg,
            in("r13") child,
            lateout("rcx") _, lateout("r11") _,
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above: x2-x4 are zero; in the child (x0 = 0) sp is the new stack's top; we
    // branch to `child(arg)` and never return into compiled code.
    unsafe {
        std::arch::asm!(
            "svc 0",
            "cbnz x0, 2f",
            "mov x0, x20",
            "blr x21",
            "brk #0",
            "2:",
            in("x8") nr,
            inlateout("x0") a0 => ret,
            in("x1") a1,
            in("x2") 0usize,
            in("x3") 0usize,
            in("x4") 0usize,
            in("x20") arg,
            in("x21") child,
        );
    }
    ret
}

/// [`clone_on_new_stack`] with `clone3`.
///
/// # Safety
/// As for [`clone_on_new_stack`]; `args` names the stack.
unsafe fn clone3_with_stack(
    args: &mut libc::clone_args,
    child: extern "C" fn(*mut c_void) -> !,
    arg: *mut c_void,
) -> isize {
    // SAFETY: forwarded to the caller.
    unsafe {
        clone_on_new_stack(
            libc::SYS_clone3,
            args as *mut libc::clone_args as usize,
            size_of::<libc::clone_args>(),
            child,
            arg,
        )
    }
}

/// A child stack: 16-byte aligned, owned by whoever spawns.
#[repr(C, align(16))]
struct ChildStack([u8; 32 * 1024]);

// ---------------------------------------------------------------------------------------------
// Host side: spawning the zygote.

/// Namespace and clone flags of a zygote.
pub(crate) const CLONE_NEWUSER: u64 = libc::CLONE_NEWUSER as u64;
pub(crate) const CLONE_NEWNS: u64 = libc::CLONE_NEWNS as u64;
pub(crate) const CLONE_NEWPID: u64 = libc::CLONE_NEWPID as u64;
pub(crate) const CLONE_NEWNET: u64 = libc::CLONE_NEWNET as u64;
pub(crate) const CLONE_NEWIPC: u64 = libc::CLONE_NEWIPC as u64;
pub(crate) const CLONE_NEWUTS: u64 = libc::CLONE_NEWUTS as u64;
pub(crate) const CLONE_NEWCGROUP: u64 = libc::CLONE_NEWCGROUP as u64;

/// Everything the host's clone child needs, prepared before `clone3` so the child allocates
/// nothing. The child writes `failed_step`/`errno` before it exits if it cannot exec.
#[repr(C)]
struct ZygoteChildArgs {
    exe_fd: c_int,
    control_fd: c_int,
    devnull_fd: c_int,
    last_cap: c_int,
    argv: *const *const c_char,
    envp: *const *const c_char,
    failed_step: c_int,
    errno: c_int,
}

/// Steps of the zygote's clone child, reported when it cannot reach `execve`.
pub(crate) const ZYGOTE_STEPS: [&str; 5] =
    ["(none)", "raise capabilities", "arrange descriptors", "close descriptors", "exec the zygote"];

/// The host's clone child: keeps its capabilities across exec (ambient set), puts the control
/// socket on fd 3, closes every other host descriptor and execs the zygote image.
extern "C" fn zygote_child(arg: *mut c_void) -> ! {
    // SAFETY: `arg` points to the `ZygoteChildArgs` of `spawn_zygote`, whose frame is alive
    // while this child runs (CLONE_VFORK suspends it until we exec or exit).
    let a = unsafe { &mut *(arg as *mut ZygoteChildArgs) };
    let fail = |a: &mut ZygoteChildArgs, step: c_int, ret: isize| -> ! {
        a.failed_step = step;
        a.errno = -ret as c_int;
        // SAFETY: exit ends only this child; it touches no shared memory.
        unsafe { raw_syscall(libc::SYS_exit, 127, 0, 0, 0, 0) };
        unreachable_loop()
    };
    // SAFETY (all raw system calls below): their pointer arguments point into this child's own
    // stack or into prepared, immutable buffers owned by the suspended parent frame.
    unsafe {
        // A new user namespace's creator holds every capability, but execve drops them unless
        // they are ambient: raise inheritable, then ambient, so the zygote keeps them.
        let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
        let mut data = [CapData::default(); 2];
        let r = raw_syscall(libc::SYS_capget, &mut header as *mut _ as usize, data.as_mut_ptr() as usize, 0, 0, 0);
        if r < 0 {
            fail(a, 1, r);
        }
        data[0].inheritable = data[0].permitted;
        data[1].inheritable = data[1].permitted;
        let r = raw_syscall(libc::SYS_capset, &mut header as *mut _ as usize, data.as_ptr() as usize, 0, 0, 0);
        if r < 0 {
            fail(a, 1, r);
        }
        for cap in 0..=a.last_cap {
            let r = raw_syscall(
                libc::SYS_prctl,
                libc::PR_CAP_AMBIENT as usize,
                libc::PR_CAP_AMBIENT_RAISE as usize,
                cap as usize,
                0,
                0,
            );
            if r < 0 {
                fail(a, 1, r);
            }
        }
        // Move our descriptors above the ones we are about to fill, then lay them out:
        // 0-2 /dev/null, 3 control socket, 4 the image (close-on-exec).
        let exe = raw_syscall(libc::SYS_fcntl, a.exe_fd as usize, libc::F_DUPFD_CLOEXEC as usize, 10, 0, 0);
        let ctl = raw_syscall(libc::SYS_fcntl, a.control_fd as usize, libc::F_DUPFD_CLOEXEC as usize, 10, 0, 0);
        let null = raw_syscall(libc::SYS_fcntl, a.devnull_fd as usize, libc::F_DUPFD_CLOEXEC as usize, 10, 0, 0);
        for r in [exe, ctl, null] {
            if r < 0 {
                fail(a, 2, r);
            }
        }
        for (from, to, flags) in
            [(null, 0, 0), (null, 1, 0), (null, 2, 0), (ctl, 3, 0), (exe, 4, libc::O_CLOEXEC as usize)]
        {
            let r = raw_syscall(libc::SYS_dup3, from as usize, to, flags, 0, 0);
            if r < 0 {
                fail(a, 2, r);
            }
        }
        let r = raw_syscall(libc::SYS_close_range, 5, u32::MAX as usize, 0, 0, 0);
        if r < 0 {
            fail(a, 3, r);
        }
        let r = raw_syscall(
            libc::SYS_execveat,
            4,
            c"".as_ptr() as usize,
            a.argv as usize,
            a.envp as usize,
            libc::AT_EMPTY_PATH as usize,
        );
        fail(a, 4, r)
    }
}

fn unreachable_loop() -> ! {
    loop {
        std::hint::spin_loop();
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// A zygote process started by [`spawn_zygote`].
pub(crate) struct SpawnedZygote {
    /// Its pid in the host's pid namespace.
    pub pid: i32,
    /// Its pidfd (`CLONE_PIDFD`).
    pub pidfd: OwnedFd,
}

/// Starts a zygote: `clone3(CLONE_VM | CLONE_VFORK | CLONE_PIDFD | namespaces)`, then in the
/// child `execveat(exe_fd)` with the given argv/envp and `control` on fd 3.
///
/// The child inherits no host descriptor but `control`, and all signals stay blocked in it
/// until the zygote sets up its own handling.
pub(crate) fn spawn_zygote(
    namespaces: u64,
    exe: BorrowedFd<'_>,
    control: BorrowedFd<'_>,
    devnull: BorrowedFd<'_>,
    argv: &[&CStr],
    envp: &[&CStr],
    last_cap: u32,
) -> Result<SpawnedZygote, (&'static str, io::Error)> {
    let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    argv_ptrs.push(ptr::null());
    let mut envp_ptrs: Vec<*const c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    envp_ptrs.push(ptr::null());
    let mut child_args = ZygoteChildArgs {
        exe_fd: exe.as_raw_fd(),
        control_fd: control.as_raw_fd(),
        devnull_fd: devnull.as_raw_fd(),
        last_cap: last_cap as c_int,
        argv: argv_ptrs.as_ptr(),
        envp: envp_ptrs.as_ptr(),
        failed_step: 0,
        errno: 0,
    };
    let mut stack = Box::new(MaybeUninit::<ChildStack>::uninit());
    let mut pidfd: c_int = -1;
    let mut args = clone_args_zeroed();
    args.flags = libc::CLONE_VM as u64 | libc::CLONE_VFORK as u64 | libc::CLONE_PIDFD as u64 | namespaces;
    args.pidfd = &mut pidfd as *mut c_int as u64;
    args.exit_signal = 0;
    args.stack = stack.as_mut_ptr() as u64;
    args.stack_size = size_of::<ChildStack>() as u64;

    let old_mask = block_all_signals();
    // SAFETY: the stack is a live, aligned heap block; `child_args` and the argv/envp arrays
    // live in this frame, which CLONE_VFORK suspends until the child execs or exits; the child
    // function makes raw system calls only.
    let ret =
        unsafe { clone3_with_stack(&mut args, zygote_child, &mut child_args as *mut ZygoteChildArgs as *mut c_void) };
    restore_signals(&old_mask);
    drop(stack);
    if ret < 0 {
        return Err(("clone3", io::Error::from_raw_os_error(-ret as i32)));
    }
    // SAFETY: CLONE_PIDFD stored a new descriptor that we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    // The child wrote these before exiting, if it failed; CLONE_VFORK orders that write before
    // our return from clone3.
    // SAFETY: plain reads of a local the child may have written through a raw pointer.
    let (step, errno) = unsafe { (ptr::read_volatile(&child_args.failed_step), ptr::read_volatile(&child_args.errno)) };
    if step != 0 {
        let _ = wait_pidfd(pidfd.as_fd(), true);
        let name = ZYGOTE_STEPS.get(step as usize).copied().unwrap_or("exec the zygote");
        return Err((name, io::Error::from_raw_os_error(errno)));
    }
    Ok(SpawnedZygote { pid: ret as i32, pidfd })
}

fn clone_args_zeroed() -> libc::clone_args {
    // SAFETY: clone_args is a plain C struct of integers; all-zero is its documented default.
    unsafe { std::mem::zeroed() }
}

/// Every signal, 1 to 64: glibc's `sigfillset` leaves out the two it reserves (32 and 33),
/// and `pthread_sigmask` refuses to block them, so the raw call is used.
const FULL_SIGNAL_MASK: u64 = u64::MAX;

/// `rt_sigprocmask(SIG_SETMASK)` of the calling thread, raw (glibc would keep signals 32 and
/// 33 open); returns the old mask.
fn set_signal_mask(mask: u64) -> u64 {
    let mut old = 0u64;
    // SAFETY: both pointers name live u64s, and 8 is the kernel's sigset size.
    unsafe {
        raw_syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK as usize,
            &mask as *const u64 as usize,
            &mut old as *mut u64 as usize,
            8,
            0,
        )
    };
    old
}

/// Blocks every signal in the calling thread, returning the old mask.
fn block_all_signals() -> u64 {
    set_signal_mask(FULL_SIGNAL_MASK)
}

fn restore_signals(mask: &u64) {
    set_signal_mask(*mask);
}

/// `waitid(P_PIDFD, WEXITED | __WALL)`: reaps the process, blocking or not. Returns the wait
/// status as `(code, si_code)` or `None` if it has not exited (non-blocking only).
pub(crate) fn wait_pidfd(pidfd: BorrowedFd<'_>, block: bool) -> io::Result<Option<(i32, i32)>> {
    let mut flags = libc::WEXITED | libc::__WALL;
    if !block {
        flags |= libc::WNOHANG;
    }
    loop {
        // SAFETY: siginfo_t is plain data that waitid fills.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer; the pidfd is borrowed for the call.
        let r = unsafe { libc::waitid(libc::P_PIDFD, pidfd.as_raw_fd() as libc::id_t, &mut info, flags) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: after a successful waitid, si_pid/si_status are initialised (0 if no child
        // had exited, with WNOHANG).
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        return Ok(Some((status, info.si_code)));
    }
}

/// `pidfd_send_signal(2)`.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: c_int) -> io::Result<()> {
    // SAFETY: no pointers but NULL (no siginfo).
    cvt_long(unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal, ptr::null::<c_void>(), 0) })
        .map(drop)
}

/// `open(2)` with `O_CLOEXEC` added.
pub(crate) fn open(path: &CStr, flags: c_int) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a valid C string.
    owned(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, 0o600) })
}

/// `socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)`.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    // SAFETY: both descriptors are new and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `pipe2(O_CLOEXEC)`: returns (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both descriptors are new and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `fcntl(F_SETFL, O_NONBLOCK)`.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain integer arguments on a borrowed descriptor.
    unsafe {
        let flags = cvt(libc::fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
        cvt(libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    }
    Ok(())
}

/// `memfd_create(MFD_CLOEXEC)` filled with `data` and rewound.
pub(crate) fn memfd_with(name: &CStr, data: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid C string.
    let fd = owned(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) })?;
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, data)?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
    Ok(OwnedFd::from(file))
}

/// Most descriptors one control message carries.
pub(crate) const MAX_FDS: usize = 32;

/// Room for one `SCM_RIGHTS` header plus `MAX_FDS` descriptors (u64s keep it aligned).
type CmsgBuffer = [u64; 2 + MAX_FDS / 2 + 2];

/// `sendmsg(2)` of one datagram with descriptors attached (`SCM_RIGHTS`).
pub(crate) fn send_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    assert!(fds.len() <= MAX_FDS);
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut c_void, iov_len: data.len() };
    let mut cmsg_buf: CmsgBuffer = Default::default();
    // SAFETY: msghdr is plain data; we point it at live locals below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let payload = std::mem::size_of_val(fds);
        // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic.
        let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
        msg.msg_control = cmsg_buf.as_mut_ptr() as *mut c_void;
        msg.msg_controllen = space;
        // SAFETY: the control buffer holds one header plus MAX_FDS ints; CMSG_FIRSTHDR
        // returns its start, and we write exactly `payload` bytes of data after the header.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload as u32) as usize;
            ptr::copy_nonoverlapping(fds.as_ptr() as *const u8, libc::CMSG_DATA(cmsg), payload);
        }
    }
    loop {
        // SAFETY: `msg` points at live buffers for the duration of the call.
        let r = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(());
    }
}

/// `recvmsg(2)` of one datagram, taking ownership of attached descriptors
/// (`MSG_CMSG_CLOEXEC`). Returns the length; 0 means the peer closed. A datagram or descriptor
/// list that did not fit is an error (`EMSGSIZE`).
pub(crate) fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut c_void, iov_len: buf.len() };
    let mut cmsg_buf: CmsgBuffer = Default::default();
    // SAFETY: msghdr is plain data; we point it at live locals below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg_buf.as_mut_ptr() as *mut c_void;
    msg.msg_controllen = size_of::<CmsgBuffer>();
    let n = loop {
        // SAFETY: `msg` points at live buffers for the duration of the call.
        let r = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        break r as usize;
    };
    // SAFETY: walking the control messages the kernel wrote into our buffer with the CMSG
    // macros, which stay within `msg_controllen`; each SCM_RIGHTS payload holds ints that are
    // new descriptors owned by us.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let len = (*cmsg).cmsg_len - (data as usize - cmsg as usize);
                for i in 0..len / size_of::<c_int>() {
                    let fd = ptr::read_unaligned((data as *const c_int).add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
    }
    Ok(n)
}

/// `ppoll(2)` on the given descriptors for `events`; fills `revents`. `timeout` of `None`
/// waits forever. Returns the number of ready descriptors (0 on timeout).
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout: Option<std::time::Duration>) -> io::Result<usize> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts.as_ref().map_or(ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `fds` is a valid array of pollfd; `ts_ptr` is NULL or points at a local.
    let r = unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ts_ptr, ptr::null()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(r as usize)
}

/// `read(2)` into `buf`.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid writable region of `buf.len()` bytes.
    let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr() as *mut c_void, buf.len()) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r as usize) }
}

/// `geteuid(2)` and `getegid(2)`.
pub(crate) fn effective_ids() -> (u32, u32) {
    // SAFETY: these calls cannot fail and take no arguments.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// `getpid(2)`.
pub(crate) fn getpid() -> i32 {
    // SAFETY: cannot fail.
    unsafe { libc::getpid() }
}

// ---------------------------------------------------------------------------------------------
// The zygote's entry point: a constructor in every image that links this crate, so the zygote
// is this very binary re-executed (no helper binary to install, no hook in `main`).

/// `argv[0]` that marks a zygote.
pub(crate) const ZYGOTE_ARGV0: &CStr = c"sandpool-zygote";
/// The only environment entry a zygote gets; carries the protocol version.
pub(crate) const ZYGOTE_ENV: &CStr = c"SANDPOOL_ZYGOTE=1";

/// Runs before `main` in every process of an image that links sandpool; turns the process into
/// a zygote when it was started as one, otherwise returns at once.
extern "C" fn zygote_entry(argc: c_int, argv: *const *const c_char, envp: *const *const c_char) {
    if argc != 1 || argv.is_null() || envp.is_null() {
        return;
    }
    // SAFETY: the loader passes argc/argv/envp of the process: argv has argc valid C strings
    // and envp is a NULL-terminated array of valid C strings.
    let is_zygote = unsafe {
        let arg0 = *argv;
        let env0 = *envp;
        !arg0.is_null()
            && !env0.is_null()
            && (*envp.add(1)).is_null()
            && CStr::from_ptr(arg0) == ZYGOTE_ARGV0
            && CStr::from_ptr(env0) == ZYGOTE_ENV
    };
    if is_zygote {
        let code = std::panic::catch_unwind(super::zygote::main).unwrap_or(101);
        // SAFETY: ends the zygote without running the host program's atexit handlers.
        unsafe { libc::_exit(code) };
    }
}

/// The `.init_array` entry that makes every linking image able to become a zygote.
#[used]
#[unsafe(link_section = ".init_array")]
pub(crate) static ZYGOTE_ENTRY: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = zygote_entry;

// ---------------------------------------------------------------------------------------------
// Zygote side: building the sandbox from inside (fresh, single-threaded image).

/// `mount(2)`.
pub(crate) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let p = |s: Option<&CStr>| s.map_or(ptr::null(), CStr::as_ptr);
    // SAFETY: all pointers are NULL or valid C strings.
    cvt(unsafe { libc::mount(p(source), target.as_ptr(), p(fstype), flags, p(data) as *const c_void) }).map(drop)
}

/// `umount2(2)`.
pub(crate) fn umount2(target: &CStr, flags: c_int) -> io::Result<()> {
    // SAFETY: `target` is a valid C string.
    cvt(unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
}

/// `pivot_root(2)`.
pub(crate) fn pivot_root(new_root: &CStr, put_old: &CStr) -> io::Result<()> {
    // SAFETY: both are valid C strings.
    cvt_long(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) }).map(drop)
}

/// `mount_setattr(2)` attribute: read-only.
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// `mount_setattr(2)` attribute: ignore set-user-ID bits.
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
/// `mount_setattr(2)` attribute: no device access.
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `mount_setattr(2)` on `path`, recursively or not: sets `set` without touching the atime
/// flags a user namespace may not change.
pub(crate) fn mount_setattr(path: &CStr, set: u64, recursive: bool) -> io::Result<()> {
    let attr = MountAttr { attr_set: set, attr_clr: 0, propagation: 0, userns_fd: 0 };
    let flags = if recursive { libc::AT_RECURSIVE as c_long } else { 0 };
    // SAFETY: `path` is a valid C string and `attr` a valid struct of the given size.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// `sethostname(2)` and `setdomainname(2)`.
pub(crate) fn set_host_and_domain_name(host: &str, domain: &str) -> io::Result<()> {
    // SAFETY: pointers and lengths describe the given strings.
    unsafe {
        cvt(libc::sethostname(host.as_ptr() as *const c_char, host.len()))?;
        cvt(libc::setdomainname(domain.as_ptr() as *const c_char, domain.len()))?;
    }
    Ok(())
}

/// Brings the loopback interface up (`ioctl(SIOCGIFFLAGS/SIOCSIFFLAGS)`).
pub(crate) fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket call.
    let sock = owned(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: ifreq is plain data; the name "lo" fits in IFNAMSIZ; both ioctls take a pointer
    // to it.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as c_char;
        req.ifr_name[1] = b'o' as c_char;
        cvt(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        cvt(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req))?;
    }
    Ok(())
}

/// `struct rtmsg` of `<linux/rtnetlink.h>`.
#[repr(C)]
struct RouteMessage {
    family: u8,
    dst_len: u8,
    src_len: u8,
    tos: u8,
    table: u8,
    protocol: u8,
    scope: u8,
    kind: u8,
    flags: u32,
}

#[repr(C)]
struct NewRouteRequest {
    header: libc::nlmsghdr,
    route: RouteMessage,
}

/// Adds an `unreachable` default route for `family` (`AF_INET` or `AF_INET6`), as `ip route
/// add unreachable default` does: an `RTM_NEWROUTE` request on an `rtnetlink(7)` socket,
/// then the kernel's acknowledgement. A send to an address no route covers then fails with
/// `EHOSTUNREACH` and leaves nothing behind, where without a route it fails with
/// `ENETUNREACH` and counts itself in the namespace's `OutNoRoutes`.
pub(crate) fn add_unreachable_default_route(family: c_int) -> io::Result<()> {
    const RT_TABLE_MAIN: u8 = 254;
    const RTPROT_BOOT: u8 = 3;
    const RT_SCOPE_UNIVERSE: u8 = 0;
    // SAFETY: integer arguments only; the new descriptor is owned by `sock` at once.
    let sock =
        owned(unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) })?;
    let request = NewRouteRequest {
        header: libc::nlmsghdr {
            nlmsg_len: size_of::<NewRouteRequest>() as u32,
            nlmsg_type: libc::RTM_NEWROUTE,
            nlmsg_flags: (libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
            nlmsg_seq: 1,
            nlmsg_pid: 0,
        },
        route: RouteMessage {
            family: family as u8,
            dst_len: 0,
            src_len: 0,
            tos: 0,
            table: RT_TABLE_MAIN,
            protocol: RTPROT_BOOT,
            scope: RT_SCOPE_UNIVERSE,
            kind: libc::RTN_UNREACHABLE,
            flags: 0,
        },
    };
    // SAFETY: `request` is a plain-data message of the length passed.
    let sent = unsafe {
        libc::send(
            sock.as_raw_fd(),
            &request as *const NewRouteRequest as *const c_void,
            size_of::<NewRouteRequest>(),
            0,
        )
    };
    cvt_long(sent as c_long)?;
    // The answer is an NLMSG_ERROR message: its header, then the error (0: done) as an int.
    let mut answer = [0u8; 512];
    let n = read(sock.as_fd(), &mut answer)?;
    let header = size_of::<libc::nlmsghdr>();
    if n < header + 4 || u16::from_ne_bytes([answer[4], answer[5]]) != libc::NLMSG_ERROR as u16 {
        return Err(io::Error::from_raw_os_error(libc::EPROTO));
    }
    let error = i32::from_ne_bytes(answer[header..header + 4].try_into().expect("four bytes"));
    if error != 0 { Err(io::Error::from_raw_os_error(-error)) } else { Ok(()) }
}

/// `setrlimit(2)` with soft = hard = `value`.
pub(crate) fn set_rlimit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let lim = libc::rlimit { rlim_cur: value, rlim_max: value };
    // SAFETY: `lim` is a valid struct.
    cvt(unsafe { libc::setrlimit(resource, &lim) }).map(drop)
}

/// `prctl(PR_CAPBSET_DROP)` for every capability up to `last_cap`, then locks the secure bits
/// so that no later exec can regain capabilities (`PR_SET_SECUREBITS`).
pub(crate) fn drop_bounding_set_and_lock(last_cap: u32) -> io::Result<()> {
    for cap in 0..=last_cap {
        // SAFETY: integer arguments only.
        cvt(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) })?;
    }
    let bits = libc::SECBIT_NOROOT
        | libc::SECBIT_NOROOT_LOCKED
        | libc::SECBIT_NO_SETUID_FIXUP
        | libc::SECBIT_NO_SETUID_FIXUP_LOCKED
        | libc::SECBIT_KEEP_CAPS_LOCKED
        | libc::SECBIT_NO_CAP_AMBIENT_RAISE
        | libc::SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits as libc::c_ulong, 0, 0, 0) }).map(drop)
}

/// `prctl(PR_SET_DUMPABLE, 0)`: keeps commands (same uid) out of the zygote's `/proc` entries.
pub(crate) fn set_not_dumpable() -> io::Result<()> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }).map(drop)
}

/// Resets every signal to its default disposition and blocks all 64 of them (32 and 33
/// included), then returns a `signalfd(2)` that reports `SIGCHLD`.
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

/// A `signalfd(2)` that reports `SIGCHLD`, for a process that blocks it already (a fork of
/// one that called [`take_over_signals`]: dispositions and mask are inherited).
pub(crate) fn child_signals() -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data filled by sigemptyset/sigaddset; the calls only write it.
    unsafe {
        let mut chld: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut chld);
        libc::sigaddset(&mut chld, libc::SIGCHLD);
        owned(libc::signalfd(-1, &chld, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK))
    }
}

/// Drains a non-blocking signalfd (or eventfd).
pub(crate) fn drain_signalfd(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; size_of::<libc::signalfd_siginfo>() * 8];
    while matches!(read(fd, &mut buf), Ok(n) if n > 0) {}
}

/// Resource use of a reaped child.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ChildUsage {
    pub user_us: u64,
    pub system_us: u64,
    pub max_rss_kib: u64,
}

/// `wait4(-1, WNOHANG)`: one exited child, if any: `(pid, wait status, usage)`.
pub(crate) fn reap_any(block: bool) -> io::Result<Option<(i32, c_int, ChildUsage)>> {
    let mut status: c_int = 0;
    // SAFETY: rusage is plain data that wait4 fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if block { libc::__WALL } else { libc::WNOHANG | libc::__WALL };
    // SAFETY: valid out-pointers.
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

/// `kill(-1, SIGKILL)` from the namespace's init: every process of the sandbox but the
/// zygote itself.
pub(crate) fn kill_all_others() {
    // SAFETY: integer arguments only; ESRCH (nothing to kill) is fine.
    unsafe { libc::kill(-1, libc::SIGKILL) };
}

// --- Landlock (landlock_create_ruleset(2), landlock_add_rule(2), landlock_restrict_self(2)).

#[repr(C)]
struct LandlockRulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct LandlockPathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// The Landlock ABI version the kernel offers, or `None` when Landlock is off or missing.
pub(crate) fn landlock_abi() -> Option<u32> {
    // SAFETY: the version query takes a NULL attribute and size 0.
    let r = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, ptr::null::<c_void>(), 0usize, 1u32) };
    (r > 0).then_some(r as u32)
}

/// Creates a ruleset handling the given accesses; `scoped` needs ABI 6.
pub(crate) fn landlock_create_ruleset(fs: u64, scoped: u64) -> io::Result<OwnedFd> {
    let attr = LandlockRulesetAttr { handled_access_fs: fs, handled_access_net: 0, scoped };
    let size = if scoped != 0 { size_of::<LandlockRulesetAttr>() } else { size_of::<u64>() };
    // SAFETY: `attr` is valid for `size` bytes (a prefix of the struct for older ABIs).
    let r =
        unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, &attr as *const LandlockRulesetAttr, size, 0u32) };
    owned(cvt_long(r)? as c_int)
}

/// Allows `access` beneath the directory or file open as `parent` (`O_PATH`).
pub(crate) fn landlock_allow_beneath(ruleset: BorrowedFd<'_>, parent: BorrowedFd<'_>, access: u64) -> io::Result<()> {
    let attr = LandlockPathBeneathAttr { allowed_access: access, parent_fd: parent.as_raw_fd() };
    // SAFETY: `attr` is a valid path-beneath rule (type 1).
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            1u32,
            &attr as *const LandlockPathBeneathAttr,
            0u32,
        )
    })
    .map(drop)
}

// --- The command child.

/// A compiled seccomp program ready to install (`struct sock_fprog`'s contents).
pub(crate) type SeccompProgram = Vec<seccompiler::sock_filter>;

/// What a command child needs, all prepared before the clone.
pub(crate) struct CommandSpec<'a> {
    /// Descriptors for the command's stdin, stdout, stderr.
    pub stdio: [BorrowedFd<'a>; 3],
    /// Working directory.
    pub cwd: &'a CStr,
    /// Paths to try with `execve`, in order (one unless PATH was searched).
    pub candidates: &'a [CString],
    /// argv and envp.
    pub argv: &'a [CString],
    /// Environment.
    pub envp: &'a [CString],
    /// Seccomp programs this command adds to the ones it inherits.
    pub filters: &'a [&'a SeccompProgram],
    /// RLIMIT_CPU in seconds, if any.
    pub cpu_seconds: Option<u64>,
}

#[repr(C)]
struct CommandChildArgs {
    stdio: [c_int; 3],
    cwd: *const c_char,
    candidates: *const *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    filters: *const libc::sock_fprog,
    filter_count: usize,
    cpu_seconds: u64,
    failed_step: c_int,
    errno: c_int,
}

/// Steps of the command child, reported when it cannot reach `execve`.
pub(crate) const COMMAND_STEPS: [&str; 7] = [
    "(none)",
    "start a session",
    "set up stdio",
    "enter the working directory",
    "limit CPU time",
    "install seccomp",
    "exec",
];
/// The index of the "exec" step in [`COMMAND_STEPS`].
pub(crate) const COMMAND_STEP_EXEC: usize = 6;

/// The command child: its own session, stdio, working directory and CPU limit, the extra
/// filters, then `execve`. Everything else (no_new_privs, Landlock, seccomp, no capabilities)
/// it inherits from the spawner.
extern "C" fn command_child(arg: *mut c_void) -> ! {
    // SAFETY: `arg` points to the `CommandChildArgs` of `spawn_command`, alive while this child
    // runs (the parent is suspended by CLONE_VFORK).
    let a = unsafe { &mut *(arg as *mut CommandChildArgs) };
    let fail = |a: &mut CommandChildArgs, step: c_int, ret: isize| -> ! {
        a.failed_step = step;
        a.errno = -ret as c_int;
        // SAFETY: exit_group ends this child only (it shares no thread group with the parent).
        unsafe { raw_syscall(libc::SYS_exit_group, 127, 0, 0, 0, 0) };
        unreachable_loop()
    };
    // SAFETY (all raw system calls below): pointer arguments point into prepared, immutable
    // buffers owned by the suspended parent frame, or into this child's stack.
    unsafe {
        let r = raw_syscall(libc::SYS_setsid, 0, 0, 0, 0, 0);
        if r < 0 {
            fail(a, 1, r);
        }
        for (i, fd) in a.stdio.iter().enumerate() {
            let r = if *fd == i as c_int {
                raw_syscall(libc::SYS_fcntl, i, libc::F_SETFD as usize, 0, 0, 0)
            } else {
                raw_syscall(libc::SYS_dup3, *fd as usize, i, 0, 0, 0)
            };
            if r < 0 {
                fail(a, 2, r);
            }
        }
        let r = raw_syscall(libc::SYS_close_range, 3, u32::MAX as usize, 0, 0, 0);
        if r < 0 {
            fail(a, 2, r);
        }
        let r = raw_syscall(libc::SYS_chdir, a.cwd as usize, 0, 0, 0, 0);
        if r < 0 {
            fail(a, 3, r);
        }
        if a.cpu_seconds > 0 {
            let lim = libc::rlimit { rlim_cur: a.cpu_seconds, rlim_max: a.cpu_seconds + 1 };
            let r = raw_syscall(libc::SYS_setrlimit, libc::RLIMIT_CPU as usize, &lim as *const _ as usize, 0, 0, 0);
            if r < 0 {
                fail(a, 4, r);
            }
        }
        // The spawner keeps every signal blocked (it reads SIGCHLD from a signalfd); the
        // command starts with none blocked.
        let empty = [0u64; 1];
        let r = raw_syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK as usize, empty.as_ptr() as usize, 0, 8, 0);
        if r < 0 {
            fail(a, 2, r);
        }
        for i in 0..a.filter_count {
            let r = raw_syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER as usize,
                0,
                a.filters.add(i) as usize,
                0,
                0,
            );
            if r < 0 {
                fail(a, 5, r);
            }
        }
        let mut best_error: isize = -(libc::ENOENT as isize);
        let mut candidate = a.candidates;
        while !(*candidate).is_null() {
            let r = raw_syscall(libc::SYS_execve, *candidate as usize, a.argv as usize, a.envp as usize, 0, 0);
            // Like execvp: a later ENOENT does not hide an earlier, more telling error.
            if r != -(libc::ENOENT as isize) {
                best_error = r;
            }
            candidate = candidate.add(1);
        }
        fail(a, COMMAND_STEP_EXEC as c_int, best_error)
    }
}

/// A command whose child failed before `execve`: which step and why.
#[derive(Debug)]
pub(crate) struct CommandSpawnFailure {
    pub step: usize,
    pub error: io::Error,
}

/// Starts a command from the spawner: `clone(CLONE_VM | CLONE_VFORK)` on a reusable stack (the
/// spawner's own filter answers `clone3` with `ENOSYS`), the child setting itself up and
/// calling `execve`. Returns its pid, or where it failed.
pub(crate) fn spawn_command(spec: &CommandSpec<'_>, stack: &mut CommandStack) -> Result<i32, CommandSpawnFailure> {
    let to_ptrs = |v: &[CString]| -> Vec<*const c_char> {
        v.iter().map(|s| s.as_ptr()).chain(std::iter::once(ptr::null())).collect()
    };
    let candidates = to_ptrs(spec.candidates);
    let argv = to_ptrs(spec.argv);
    let envp = to_ptrs(spec.envp);
    let progs: Vec<libc::sock_fprog> = spec
        .filters
        .iter()
        .map(|p| libc::sock_fprog { len: p.len() as u16, filter: p.as_ptr() as *mut libc::sock_filter })
        .collect();
    let mut child_args = CommandChildArgs {
        stdio: spec.stdio.map(|fd| fd.as_raw_fd()),
        cwd: spec.cwd.as_ptr(),
        candidates: candidates.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        filters: progs.as_ptr(),
        filter_count: progs.len(),
        cpu_seconds: spec.cpu_seconds.unwrap_or(0),
        failed_step: 0,
        errno: 0,
    };
    let flags = libc::CLONE_VM as usize | libc::CLONE_VFORK as usize | libc::SIGCHLD as usize;
    let stack_top = stack.0.as_mut_ptr() as usize + size_of::<ChildStack>();
    // SAFETY: the stack is ours, aligned, and `stack_top` is its end; `child_args` and every
    // array it points to live in this frame, suspended by CLONE_VFORK until the child execs or
    // exits; the child makes raw system calls only.
    let ret = unsafe {
        clone_on_new_stack(
            libc::SYS_clone,
            flags,
            stack_top,
            command_child,
            &mut child_args as *mut CommandChildArgs as *mut c_void,
        )
    };
    if ret < 0 {
        return Err(CommandSpawnFailure { step: 0, error: io::Error::from_raw_os_error(-ret as i32) });
    }
    // SAFETY: plain reads of locals the child may have written before it exited.
    let (step, errno) = unsafe { (ptr::read_volatile(&child_args.failed_step), ptr::read_volatile(&child_args.errno)) };
    if step != 0 {
        // Reap it now so the spawner's SIGCHLD handling never sees it as the command.
        let mut status = 0;
        // SAFETY: valid out-pointer; `ret` is our own child.
        unsafe { libc::waitpid(ret as i32, &mut status, libc::__WALL) };
        return Err(CommandSpawnFailure { step: step as usize, error: io::Error::from_raw_os_error(errno) });
    }
    Ok(ret as i32)
}

/// The reusable stack of the spawner's command children.
pub(crate) struct CommandStack(Box<MaybeUninit<ChildStack>>);

impl CommandStack {
    /// Allocates one.
    pub(crate) fn new() -> Self {
        CommandStack(Box::new(MaybeUninit::uninit()))
    }
}

/// Opens `path` with `O_PATH` (for Landlock rules).
pub(crate) fn open_path(path: &str) -> io::Result<OwnedFd> {
    open(&cstr(path)?, libc::O_PATH)
}

/// `faccessat(AT_EACCESS, W_OK)`: may this process (by its effective ids) write `path`?
pub(crate) fn can_write(path: &CStr) -> bool {
    // SAFETY: `path` is a valid C string.
    unsafe { libc::faccessat(libc::AT_FDCWD, path.as_ptr(), libc::W_OK, libc::AT_EACCESS) == 0 }
}

/// `prctl(PR_GET_SECCOMP)`: whether this kernel has seccomp.
pub(crate) fn seccomp_available() -> bool {
    // SAFETY: integer arguments only.
    unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 }
}

/// `kill(-1, 0)` from the namespace's init: is any other process left?
pub(crate) fn any_other_process() -> bool {
    // SAFETY: signal 0 only checks; integer arguments only.
    unsafe { libc::kill(-1, 0) == 0 }
}

/// Whether `kill(-1, 0)` finds no process at all besides the caller and the namespace's init
/// (`ESRCH`). Unlike `!any_other_process()`, a process it may not signal (`EPERM`) counts.
pub(crate) fn surely_no_other_process() -> bool {
    // SAFETY: signal 0 only checks; integer arguments only.
    let r = unsafe { libc::kill(-1, 0) };
    r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// The zygote's control socket, which its clone child placed on fd 3.
pub(crate) fn take_control_socket() -> OwnedFd {
    // SAFETY: the zygote's clone child put the control socket on fd 3 (see `zygote_child`)
    // and nothing else in this fresh image owns it.
    unsafe { OwnedFd::from_raw_fd(3) }
}

/// The zygote's fd 0, which its clone child pointed at `/dev/null`.
pub(crate) fn borrow_stdin() -> BorrowedFd<'static> {
    // SAFETY: fd 0 of the zygote is /dev/null for the zygote's whole life (see `zygote_child`)
    // and is never closed.
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// Takes on the sandbox's uid and gid (`setgroups`, `setresgid`, `setresuid`), keeping the
/// capabilities of the zygote (`SECBIT_NO_SETUID_FIXUP`).
pub(crate) fn become_user(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: integer arguments, and a NULL group list of length 0.
    unsafe {
        cvt(libc::prctl(libc::PR_SET_SECUREBITS, libc::SECBIT_NO_SETUID_FIXUP as libc::c_ulong, 0, 0, 0))?;
        // With setgroups denied (unprivileged hosts) the host user's groups stay; elsewhere
        // drop every supplementary group.
        if libc::setgroups(0, ptr::null()) < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EPERM) {
                return Err(e);
            }
        }
        cvt(libc::setresgid(gid, gid, gid))?;
        cvt(libc::setresuid(uid, uid, uid))?;
    }
    Ok(())
}

/// Whether the process behind `pidfd` has exited (`poll` on the pidfd).
pub(crate) fn pidfd_exited(pidfd: BorrowedFd<'_>) -> bool {
    let mut fds = [libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
    matches!(poll(&mut fds, Some(std::time::Duration::ZERO)), Ok(n) if n > 0)
}

/// `pidfd_open(getpid())`: whether this kernel has pidfds.
pub(crate) fn pidfd_supported() -> bool {
    // SAFETY: integer arguments only; a returned descriptor is closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd >= 0 {
        // SAFETY: `fd` is a new descriptor we own.
        drop(unsafe { OwnedFd::from_raw_fd(fd as c_int) });
        true
    } else {
        false
    }
}

// --- Mount trees (open_tree(2), move_mount(2), idmapped mounts).

const OPEN_TREE_CLONE: u32 = 1;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)`: a detached copy of the mount tree at `path`,
/// or (with `path` empty) of the detached tree `from`.
pub(crate) fn clone_tree(from: Option<BorrowedFd<'_>>, path: &CStr) -> io::Result<OwnedFd> {
    let dirfd = from.map_or(libc::AT_FDCWD, |f| f.as_raw_fd());
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | libc::AT_RECURSIVE as u32;
    if from.is_some() {
        flags |= libc::AT_EMPTY_PATH as u32;
    }
    // SAFETY: `path` is a valid C string; integer flags.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) };
    owned(cvt_long(r)? as c_int)
}

/// `mount_setattr(MOUNT_ATTR_IDMAP)` on a detached tree: its files' owners are seen through the
/// id maps of the user namespace `userns`.
pub(crate) fn idmap_tree(tree: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> io::Result<()> {
    let attr =
        MountAttr { attr_set: MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: userns.as_raw_fd() as u64 };
    // SAFETY: an empty path with AT_EMPTY_PATH names `tree`; `attr` is valid for its size.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as c_long,
            &attr as *const MountAttr,
            size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// `move_mount(MOVE_MOUNT_F_EMPTY_PATH)`: attaches the detached tree `tree` at `target`.
pub(crate) fn attach_tree(tree: BorrowedFd<'_>, target: &CStr) -> io::Result<()> {
    // SAFETY: valid C strings; the empty source path names `tree`.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// Arguments of the id-map holder child: it closes `close_fd`, then waits on `wait_fd`.
#[repr(C)]
struct HolderArgs {
    wait_fd: c_int,
    close_fd: c_int,
}

extern "C" fn holder_child(arg: *mut c_void) -> ! {
    // SAFETY: `arg` points to the `HolderArgs` of `userns_with_maps`, which waits for this
    // child to exit before its frame ends; only raw system calls follow.
    unsafe {
        let a = &*(arg as *const HolderArgs);
        raw_syscall(libc::SYS_close, a.close_fd as usize, 0, 0, 0, 0);
        let mut byte = 0u8;
        raw_syscall(libc::SYS_read, a.wait_fd as usize, &mut byte as *mut u8 as usize, 1, 0, 0);
        raw_syscall(libc::SYS_exit, 0, 0, 0, 0, 0);
    }
    unreachable_loop()
}

/// A user namespace with the given `uid_map`/`gid_map` lines, as a descriptor (for idmapped
/// mounts). A short-lived child (sharing our memory, on its own stack, raw system calls only)
/// holds the namespace while we write its maps and open it.
pub(crate) fn userns_with_maps(uid_map: &str, gid_map: &str) -> io::Result<OwnedFd> {
    let (wait_r, wait_w) = pipe()?;
    let mut holder = HolderArgs { wait_fd: wait_r.as_raw_fd(), close_fd: wait_w.as_raw_fd() };
    let mut stack = Box::new(MaybeUninit::<ChildStack>::uninit());
    let mut pidfd: c_int = -1;
    let mut args = clone_args_zeroed();
    args.flags = libc::CLONE_VM as u64 | libc::CLONE_PIDFD as u64 | CLONE_NEWUSER;
    args.pidfd = &mut pidfd as *mut c_int as u64;
    args.stack = stack.as_mut_ptr() as u64;
    args.stack_size = size_of::<ChildStack>() as u64;
    let old_mask = block_all_signals();
    // SAFETY: the stack and `holder` outlive the child: we wait for its exit below before
    // either is dropped; the child makes raw system calls only.
    let ret = unsafe { clone3_with_stack(&mut args, holder_child, &mut holder as *mut HolderArgs as *mut c_void) };
    restore_signals(&old_mask);
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret as i32));
    }
    // SAFETY: CLONE_PIDFD stored a new descriptor that we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let pid = ret;
    let result = (|| {
        std::fs::write(format!("/proc/{pid}/uid_map"), uid_map)?;
        std::fs::write(format!("/proc/{pid}/gid_map"), gid_map)?;
        open(&cstr(&format!("/proc/{pid}/ns/user"))?, libc::O_RDONLY)
    })();
    drop(wait_w); // the child's read returns: it exits
    let _ = pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
    let waited = wait_pidfd(pidfd.as_fd(), true);
    drop(wait_r);
    // Only now is the child gone and its stack free.
    drop(stack);
    waited?;
    result
}

// --- The spawner.

/// `setsid(2)`: leaves the host's session and process group, so the host's terminal signals
/// (Ctrl-C to the foreground group) do not reach the sandbox.
pub(crate) fn new_session() -> io::Result<()> {
    // SAFETY: no arguments.
    cvt(unsafe { libc::setsid() }).map(drop)
}

/// `fork(2)` of the single-threaded zygote: `Ok(None)` in the child.
pub(crate) fn fork_zygote() -> io::Result<Option<i32>> {
    // SAFETY: the zygote is single-threaded (a fresh image that starts no thread), so the
    // child may go on running ordinary code, allocator included.
    let pid = cvt(unsafe { libc::fork() })?;
    Ok((pid > 0).then_some(pid))
}

/// Moves `fd` to descriptor 3 and closes every descriptor above it (`dup3`, `close_range`).
pub(crate) fn keep_only_as_fd3(fd: OwnedFd) -> io::Result<OwnedFd> {
    let raw = fd.as_raw_fd();
    if raw != 3 {
        // SAFETY: integer arguments; fd 3 is replaced, as intended.
        cvt(unsafe { libc::dup3(raw, 3, libc::O_CLOEXEC) })?;
    }
    std::mem::forget(fd);
    // SAFETY: integer arguments; closes descriptors nothing below refers to any more (the
    // callers hold no OwnedFd above 3 past this point: they were forgotten or are closed here
    // on purpose).
    cvt(unsafe { libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) as c_int })?;
    // SAFETY: fd 3 now holds the socket and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(3) })
}

/// Confines the calling process for good: child subreaper (every orphan of its commands comes
/// back to it), not dumpable, `no_new_privs`, the Landlock ruleset, and of all capabilities
/// only `keep` (effective and permitted; none inheritable or ambient, so an `execve` by the
/// sandbox's non-root uid, with the bounding set empty, ends with none).
pub(crate) fn confine_spawner(
    landlock: Option<BorrowedFd<'_>>,
    keep: Option<u32>,
) -> Result<(), (&'static str, io::Error)> {
    // SAFETY: integer arguments only.
    unsafe {
        cvt(libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)).map_err(|e| ("become a subreaper", e))?;
        cvt(libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0)).map_err(|e| ("make the spawner non-dumpable", e))?;
        cvt(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)).map_err(|e| ("set no_new_privs", e))?;
    }
    if let Some(fd) = landlock {
        // SAFETY: integer arguments only.
        cvt_long(unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd.as_raw_fd(), 0u32) })
            .map_err(|e| ("enforce Landlock", e))?;
    }
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) })
        .map_err(|e| ("clear ambient capabilities", e))?;
    let header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    if let Some(cap) = keep {
        let bit = 1u32 << (cap % 32);
        data[(cap / 32) as usize % 2].effective = bit;
        data[(cap / 32) as usize % 2].permitted = bit;
    }
    // SAFETY: valid header and two data structs, as capset v3 wants.
    cvt_long(unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) })
        .map_err(|e| ("drop capabilities", e))?;
    Ok(())
}

// --- The session: the spawner's own pid namespace.

/// `unshare(2)`.
pub(crate) fn unshare(flags: c_int) -> io::Result<()> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::unshare(flags) }).map(drop)
}

/// `setns(fd, CLONE_NEWPID)`: the caller's next children start in the pid namespace `ns`
/// (the caller's own, or one below it).
pub(crate) fn set_pid_ns_for_children(ns: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWPID) }).map(drop)
}

/// `pwrite(2)` of `buf` at `offset`.
pub(crate) fn pwrite(fd: BorrowedFd<'_>, buf: &[u8], offset: i64) -> io::Result<usize> {
    // SAFETY: `buf` is a valid readable region of `buf.len()` bytes.
    let r = unsafe { libc::pwrite(fd.as_raw_fd(), buf.as_ptr() as *const c_void, buf.len(), offset) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r as usize) }
}

/// The number of resource limits (`RLIM_NLIMITS`).
const RESOURCE_LIMITS: usize = 16;

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
/// wait, blocked, for it. Read with `prlimit64(0, ..)`, `sched_getattr(2)`,
/// `sched_getaffinity(2)`, `ioprio_get(2)` and `rt_sigpending(2)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OwnSettings {
    limits: [(u64, u64); RESOURCE_LIMITS],
    sched: SchedAttr,
    affinity: [u64; 16],
    ioprio: c_long,
    pending: u64,
}

impl OwnSettings {
    /// Reads the calling process's settings.
    pub(crate) fn read() -> io::Result<OwnSettings> {
        let mut limits = [(0u64, 0u64); RESOURCE_LIMITS];
        for (resource, slot) in limits.iter_mut().enumerate() {
            let mut old = libc::rlimit64 { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: pid 0 is the caller; a NULL new limit only reads into `old`.
            cvt(unsafe { libc::prlimit64(0, resource as libc::__rlimit_resource_t, ptr::null(), &mut old) })?;
            *slot = (old.rlim_cur, old.rlim_max);
        }
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

/// `exit_group` without unwinding or running exit handlers (a forked child of the zygote).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: ends the process; nothing after it runs.
    unsafe { libc::_exit(code) }
}

/// The id of the mount `path` lives on (`statx(STATX_MNT_ID)`, not following a last symlink).
pub(crate) fn mount_id(path: &CStr) -> io::Result<u64> {
    path_stat(path).map(|st| st.mount_id)
}

/// What `statx(2)` says of a path (a final symlink not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PathStat {
    /// The mount it lives on (`STATX_MNT_ID`).
    pub(crate) mount_id: u64,
    /// Its size: for a tmpfs or mqueue directory, 20 bytes per entry, `.` and `..` included.
    pub(crate) size: u64,
    /// Its permission bits (with set-id and sticky bits).
    pub(crate) mode: u32,
    /// Its owner.
    pub(crate) uid: u32,
    /// Its group.
    pub(crate) gid: u32,
    /// Its access and modification times (seconds, nanoseconds).
    pub(crate) times: [(i64, u32); 2],
}

/// `statx(2)` of `path` for its mount id, size, mode, owner and times.
pub(crate) fn path_stat(path: &CStr) -> io::Result<PathStat> {
    // SAFETY: statx is plain data the call fills.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let mask = libc::STATX_MNT_ID
        | libc::STATX_SIZE
        | libc::STATX_MODE
        | libc::STATX_UID
        | libc::STATX_GID
        | libc::STATX_ATIME
        | libc::STATX_MTIME;
    // SAFETY: valid C string and out-pointer.
    cvt(unsafe { libc::statx(libc::AT_FDCWD, path.as_ptr(), libc::AT_SYMLINK_NOFOLLOW, mask, &mut stx) })?;
    let time = |t: libc::statx_timestamp| (t.tv_sec, t.tv_nsec);
    Ok(PathStat {
        mount_id: stx.stx_mnt_id,
        size: stx.stx_size,
        mode: u32::from(stx.stx_mode) & 0o7777,
        uid: stx.stx_uid,
        gid: stx.stx_gid,
        times: [time(stx.stx_atime), time(stx.stx_mtime)],
    })
}

/// `listxattr(2)`: the extended attribute names of `path` (a final symlink followed; the
/// session directories are not symlinks). A file system without extended attributes has none.
pub(crate) fn xattr_names(path: &CStr) -> io::Result<Vec<CString>> {
    loop {
        // SAFETY: a NULL buffer of size 0 asks for the size the names need.
        let need = unsafe { libc::listxattr(path.as_ptr(), ptr::null_mut(), 0) };
        if need < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENOTSUP) { Ok(Vec::new()) } else { Err(e) };
        }
        if need == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; need as usize];
        // SAFETY: `buf` is writable for its whole length.
        let got = unsafe { libc::listxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ERANGE) {
                continue; // grew meanwhile: ask again
            }
            return Err(e);
        }
        buf.truncate(got as usize);
        return Ok(buf.split(|&b| b == 0).filter(|n| !n.is_empty()).filter_map(|n| CString::new(n).ok()).collect());
    }
}

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
/// this IPC namespace (`shmctl(SHM_INFO)`, `semctl(SEM_INFO)`, `msgctl(MSG_INFO)`): three
/// system calls, against reading three `/proc/sysvipc` tables.
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

/// `prctl(PR_SET_NAME)`: the name `ps` shows for this process (at most 15 bytes).
pub(crate) fn set_process_name(name: &CStr) {
    // SAFETY: `name` is a valid C string; the kernel copies at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
}

// --- epoll(7), for the pool's reset collector.

/// `epoll_create1(EPOLL_CLOEXEC)`.
pub(crate) fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: integer argument only.
    owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
}

/// `epoll_ctl`: watches `fd` for input, once (`EPOLLONESHOT`), tagged with `token`; `rearm`
/// modifies an existing registration instead of adding one.
pub(crate) fn epoll_watch_once(epoll: BorrowedFd<'_>, fd: BorrowedFd<'_>, token: u64, rearm: bool) -> io::Result<()> {
    let mut event = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLONESHOT) as u32, u64: token };
    let op = if rearm { libc::EPOLL_CTL_MOD } else { libc::EPOLL_CTL_ADD };
    // SAFETY: `event` is a valid struct for the call.
    cvt(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd.as_raw_fd(), &mut event) }).map(drop)
}

/// `epoll_ctl(EPOLL_CTL_ADD)`: watches `fd` for input for good (level-triggered).
pub(crate) fn epoll_watch(epoll: BorrowedFd<'_>, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
    let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
    // SAFETY: `event` is a valid struct for the call.
    cvt(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut event) }).map(drop)
}

/// `epoll_wait`: the tokens of ready descriptors, waiting up to `timeout`.
pub(crate) fn epoll_wait(epoll: BorrowedFd<'_>, tokens: &mut Vec<u64>, timeout: std::time::Duration) -> io::Result<()> {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    let ms = timeout.as_millis().min(i32::MAX as u128) as c_int;
    // SAFETY: `events` is a valid array of 64 entries.
    let n = unsafe { libc::epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), events.len() as c_int, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
    }
    tokens.extend(events[..n as usize].iter().map(|e| e.u64));
    Ok(())
}

/// `eventfd(EFD_CLOEXEC | EFD_NONBLOCK)`.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    owned(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })
}

/// Adds one to an eventfd (wakes its reader).
pub(crate) fn eventfd_signal(fd: BorrowedFd<'_>) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a local buffer; a full counter (EAGAIN) already wakes.
    unsafe { libc::write(fd.as_raw_fd(), one.as_ptr() as *const c_void, one.len()) };
}

/// Gives the calling process (and so every child it makes from now on) the highest
/// `oom_score_adj`, so that out of memory its commands go first, not the sandbox's init.
/// Raising one's score needs no privilege, but a non-dumpable process's `/proc/self` files
/// belong to root: the process is made dumpable for the write, and left dumpable (the caller
/// makes it non-dumpable again before anything untrusted runs).
pub(crate) fn raise_oom_score_adj() -> io::Result<()> {
    // SAFETY: integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) })?;
    std::fs::write("/proc/self/oom_score_adj", "1000")
}

/// `ioctl(FS_IOC_GETFLAGS)`: the inode flags of the file open as `fd` (`chattr`'s
/// attributes); a file system without them (mqueue) has none.
pub(crate) fn inode_flags_of(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut flags: c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the pointer.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_GETFLAGS, &mut flags) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if matches!(e.raw_os_error(), Some(libc::ENOTTY) | Some(libc::EOPNOTSUPP)) { Ok(0) } else { Err(e) };
    }
    Ok(flags as u32)
}

/// `pread(2)` into `buf` at `offset`.
pub(crate) fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: i64) -> io::Result<usize> {
    // SAFETY: `buf` is a valid writable region of `buf.len()` bytes.
    let r = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr() as *mut c_void, buf.len(), offset) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r as usize) }
}

/// `FS_IOC_GETFLAGS` from `<linux/fs.h>` (`_IOR('f', 1, long)`).
const FS_IOC_GETFLAGS: libc::Ioctl = 0x8008_6601u32 as libc::Ioctl;
