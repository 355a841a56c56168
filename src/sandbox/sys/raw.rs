//! One raw system call that never touches `errno` (a `CLONE_VM` child shares its parent
//! thread's), the trampoline that starts a clone child on a stack of its own, and the raw
//! signal mask (glibc's would keep signals 32 and 33 open).

use std::ffi::{c_long, c_void};
use std::mem::size_of;

/// One raw system call; returns the kernel's result (`-errno` on failure).
///
/// # Safety
/// The arguments must be valid for system call `nr`.
#[inline(always)]
pub(super) unsafe fn raw_syscall(nr: c_long, a0: usize, a1: usize, a2: usize, a3: usize, a4: usize) -> isize {
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
/// `child(arg)`, which must never return. `a0`, `a1`, `a2` are the system call's first
/// arguments: `(&clone_args, size, 0)` for `clone3`, `(flags, stack top, parent_tid)` for
/// `clone` (where `CLONE_PIDFD` stores the pidfd, as an `int`).
///
/// # Safety
/// The stack named in the arguments must be a writable, 16-byte aligned region that stays
/// valid until the child execs or exits (with `CLONE_VFORK` the caller is suspended until
/// then). `child` must never return and, with `CLONE_VM`, must only make raw system calls.
/// A non-zero `a2` for `clone` must point to writable memory for what the flags store there.
pub(super) unsafe fn clone_on_new_stack(
    nr: c_long,
    a0: usize,
    a1: usize,
    a2: usize,
    child: extern "C" fn(*mut c_void) -> !,
    arg: *mut c_void,
) -> isize {
    let ret: isize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: in the parent this is one `syscall` (clobbering rcx, r11; rdx is `a2`, r10 and
    // r8 the zero child-tid and tls arguments of `clone`, unused by `clone3`). In the child
    // (rax = 0) the kernel has set rsp to the new stack's top; we call `child(arg)` there and
    // never come back into compiled code, so no invariant of this frame is needed.
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
            in("rdx") a2,
            in("r10") 0usize,
            in("r8") 0usize,
            in("r12") arg,
            in("r13") child,
            lateout("rcx") _, lateout("r11") _,
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above: x2 is `a2` (parent_tid: `clone`'s third argument here too), x3 and
    // x4 are zero; in the child (x0 = 0) sp is the new stack's top; we branch to `child(arg)`
    // and never return into compiled code.
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
            in("x2") a2,
            in("x3") 0usize,
            in("x4") 0usize,
            in("x20") arg,
            in("x21") child,
        );
    }
    ret
}

/// [`clone_on_new_stack`] with `clone3`; where `clone3` answers `ENOSYS` (a container's
/// seccomp profile, as Docker's, refuses it so that callers fall back), with `clone`: the
/// same flags and exit signal, the pidfd (`CLONE_PIDFD`, Linux 5.2+) stored through
/// `parent_tid`, the stack by its top. `clone` has no `CLONE_INTO_CGROUP`: asked for it,
/// `ENOSYS` is returned as it is, and the caller starts the child elsewhere and moves it.
///
/// # Safety
/// As for [`clone_on_new_stack`]; `args` names the stack, and `args.pidfd`, with
/// `CLONE_PIDFD`, a writable `c_int`.
pub(super) unsafe fn clone3_with_stack(
    args: &mut libc::clone_args,
    child: extern "C" fn(*mut c_void) -> !,
    arg: *mut c_void,
) -> isize {
    let clone3_args = args as *mut libc::clone_args as usize;
    // SAFETY: forwarded to the caller.
    let ret =
        unsafe { clone_on_new_stack(libc::SYS_clone3, clone3_args, size_of::<libc::clone_args>(), 0, child, arg) };
    // What `clone` cannot say: clone3's own flags (CLONE_INTO_CGROUP and above, past its 32
    // bits; CLONE_NEWTIME, in its exit signal's byte), an exit signal past that byte.
    let clone3_only = args.flags > u64::from(u32::MAX) || args.flags & 0xff != 0 || args.exit_signal > 0xff;
    if ret != -(libc::ENOSYS as isize) || clone3_only {
        return ret;
    }
    let flags = (args.flags | args.exit_signal) as usize;
    let stack_top = (args.stack + args.stack_size) as usize;
    // SAFETY: forwarded to the caller: the same stack (by its top), flags and child; with
    // CLONE_PIDFD, `args.pidfd` is the caller's writable int, which `clone` fills through
    // its parent_tid argument.
    unsafe { clone_on_new_stack(libc::SYS_clone, flags, stack_top, args.pidfd as usize, child, arg) }
}

/// `clone3`'s flag to start the child in the cgroup `clone_args.cgroup` names (Linux 5.7).
pub(super) const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// A child stack: 16-byte aligned, owned by whoever spawns.
#[repr(C, align(16))]
pub(super) struct ChildStack(pub(super) [u8; 32 * 1024]);

/// A zeroed `struct clone_args`, to fill in.
pub(super) fn clone_args_zeroed() -> libc::clone_args {
    // SAFETY: clone_args is a plain C struct of integers; all-zero is its documented default.
    unsafe { std::mem::zeroed() }
}

/// Every signal, 1 to 64: glibc's `sigfillset` leaves out the two it reserves (32 and 33),
/// and `pthread_sigmask` refuses to block them, so the raw call is used.
const FULL_SIGNAL_MASK: u64 = u64::MAX;

/// `rt_sigprocmask(SIG_SETMASK)` of the calling thread, raw; returns the old mask.
pub(super) fn set_signal_mask(mask: u64) -> u64 {
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
pub(super) fn block_all_signals() -> u64 {
    set_signal_mask(FULL_SIGNAL_MASK)
}

/// Where a clone child that must never return goes if `exit` ever did.
pub(super) fn unreachable_loop() -> ! {
    loop {
        std::hint::spin_loop();
    }
}
