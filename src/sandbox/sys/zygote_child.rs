//! The host's clone child, which becomes a sandbox's zygote.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;

use rustix::process::{WaitId, WaitIdOptions, waitid};

use super::raw::{
    CLONE_INTO_CGROUP, ChildStack, block_all_signals, clone_args_zeroed, clone3_with_stack, raw_syscall,
    set_signal_mask,
};

/// Where starting a zygote failed: the clone, or its child before `execve`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub(crate) enum ZygoteChildStep {
    /// `clone3` itself (in the host).
    Clone = 0,
    /// Making its capabilities ambient, so that they survive the exec.
    RaiseCapabilities = 1,
    /// Laying out descriptors 0-4.
    ArrangeDescriptors = 2,
    /// Closing every other descriptor.
    CloseDescriptors = 3,
    /// `execveat` of the image.
    Exec = 4,
}

impl ZygoteChildStep {
    fn from_code(code: c_int) -> ZygoteChildStep {
        match code {
            1 => ZygoteChildStep::RaiseCapabilities,
            2 => ZygoteChildStep::ArrangeDescriptors,
            3 => ZygoteChildStep::CloseDescriptors,
            _ => ZygoteChildStep::Exec,
        }
    }

    /// What the step does, for error messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ZygoteChildStep::Clone => "clone3",
            ZygoteChildStep::RaiseCapabilities => "raise capabilities",
            ZygoteChildStep::ArrangeDescriptors => "arrange descriptors",
            ZygoteChildStep::CloseDescriptors => "close descriptors",
            ZygoteChildStep::Exec => "exec the zygote",
        }
    }
}

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

/// The host's clone child: keeps its capabilities across exec (ambient set), puts the control
/// socket on fd 3, closes every other host descriptor and execs the zygote image.
extern "C" fn zygote_child(arg: *mut c_void) -> ! {
    // SAFETY: `arg` points to the `ZygoteChildArgs` of `spawn_zygote`, whose frame is alive
    // while this child runs (CLONE_VFORK suspends it until we exec or exit).
    let a = unsafe { &mut *(arg as *mut ZygoteChildArgs) };
    let fail = |a: &mut ZygoteChildArgs, step: ZygoteChildStep, ret: isize| -> ! {
        a.failed_step = step as c_int;
        a.errno = -ret as c_int;
        // SAFETY: exit ends only this child; it touches no shared memory.
        unsafe { raw_syscall(libc::SYS_exit, 127, 0, 0, 0, 0) };
        super::raw::unreachable_loop()
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
            fail(a, ZygoteChildStep::RaiseCapabilities, r);
        }
        data[0].inheritable = data[0].permitted;
        data[1].inheritable = data[1].permitted;
        let r = raw_syscall(libc::SYS_capset, &mut header as *mut _ as usize, data.as_ptr() as usize, 0, 0, 0);
        if r < 0 {
            fail(a, ZygoteChildStep::RaiseCapabilities, r);
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
                fail(a, ZygoteChildStep::RaiseCapabilities, r);
            }
        }
        // Move our descriptors above the ones we are about to fill, then lay them out:
        // 0-2 /dev/null, 3 control socket, 4 the image (close-on-exec).
        let exe = raw_syscall(libc::SYS_fcntl, a.exe_fd as usize, libc::F_DUPFD_CLOEXEC as usize, 10, 0, 0);
        let ctl = raw_syscall(libc::SYS_fcntl, a.control_fd as usize, libc::F_DUPFD_CLOEXEC as usize, 10, 0, 0);
        let null = raw_syscall(libc::SYS_fcntl, a.devnull_fd as usize, libc::F_DUPFD_CLOEXEC as usize, 10, 0, 0);
        for r in [exe, ctl, null] {
            if r < 0 {
                fail(a, ZygoteChildStep::ArrangeDescriptors, r);
            }
        }
        for (from, to, flags) in
            [(null, 0, 0), (null, 1, 0), (null, 2, 0), (ctl, 3, 0), (exe, 4, libc::O_CLOEXEC as usize)]
        {
            let r = raw_syscall(libc::SYS_dup3, from as usize, to, flags, 0, 0);
            if r < 0 {
                fail(a, ZygoteChildStep::ArrangeDescriptors, r);
            }
        }
        let r = raw_syscall(libc::SYS_close_range, 5, u32::MAX as usize, 0, 0, 0);
        if r < 0 {
            fail(a, ZygoteChildStep::CloseDescriptors, r);
        }
        let r = raw_syscall(
            libc::SYS_execveat,
            4,
            c"".as_ptr() as usize,
            a.argv as usize,
            a.envp as usize,
            libc::AT_EMPTY_PATH as usize,
        );
        fail(a, ZygoteChildStep::Exec, r)
    }
}

/// What [`spawn_zygote`] starts: the namespaces, the image (`exe`) with its argv and envp,
/// the descriptors it gets, and the cgroup it is born in.
#[derive(Clone, Copy)]
pub(crate) struct ZygoteSpec<'a> {
    /// The namespaces it gets (`CLONE_NEW*`).
    pub namespaces: rustix::thread::UnshareFlags,
    /// This program's image, executed with `execveat`.
    pub exe: BorrowedFd<'a>,
    /// Its control socket, its fd 3.
    pub control: BorrowedFd<'a>,
    /// `/dev/null`, its fds 0 to 2.
    pub devnull: BorrowedFd<'a>,
    /// argv and envp.
    pub argv: &'a [&'a CStr],
    /// Environment.
    pub envp: &'a [&'a CStr],
    /// The highest capability number, whose bounding set it drops.
    pub last_cap: u32,
    /// A cgroup v2 directory to start in (`CLONE_INTO_CGROUP`), if any.
    pub cgroup: Option<BorrowedFd<'a>>,
}

/// A zygote process started by [`spawn_zygote`].
pub(crate) struct SpawnedZygote {
    /// Its pid in the host's pid namespace.
    pub pid: i32,
    /// Its pidfd (`CLONE_PIDFD`).
    pub pidfd: OwnedFd,
}

/// Starts a zygote: [`clone3(2)`](https://man7.org/linux/man-pages/man2/clone3.2.html) with
/// `CLONE_VM | CLONE_VFORK | CLONE_PIDFD` and `namespaces` (and `CLONE_INTO_CGROUP` with
/// `cgroup`, a cgroup v2 directory, if given: Linux 5.7+), then in the child `execveat(exe)`
/// with the given argv/envp, `control` on fd 3 and `devnull` on 0-2.
///
/// The child inherits no host descriptor but these, and all signals stay blocked in it until
/// the zygote sets up its own handling.
pub(crate) fn spawn_zygote(spec: &ZygoteSpec<'_>) -> Result<SpawnedZygote, (ZygoteChildStep, io::Error)> {
    let ZygoteSpec { namespaces, exe, control, devnull, argv, envp, last_cap, cgroup } = *spec;
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
    args.flags =
        libc::CLONE_VM as u64 | libc::CLONE_VFORK as u64 | libc::CLONE_PIDFD as u64 | u64::from(namespaces.bits());
    args.pidfd = &mut pidfd as *mut c_int as u64;
    if let Some(cgroup) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = cgroup.as_raw_fd() as u64;
    }
    args.exit_signal = 0;
    args.stack = stack.as_mut_ptr() as u64;
    args.stack_size = size_of::<ChildStack>() as u64;

    let old_mask = block_all_signals();
    // SAFETY: the stack is a live, aligned heap block; `child_args` and the argv/envp arrays
    // live in this frame, which CLONE_VFORK suspends until the child execs or exits; the child
    // function makes raw system calls only.
    let ret =
        unsafe { clone3_with_stack(&mut args, zygote_child, &mut child_args as *mut ZygoteChildArgs as *mut c_void) };
    set_signal_mask(old_mask);
    drop(stack);
    if ret < 0 {
        return Err((ZygoteChildStep::Clone, io::Error::from_raw_os_error(-ret as i32)));
    }
    // SAFETY: CLONE_PIDFD stored a new descriptor that we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    // The child wrote these before exiting, if it failed; CLONE_VFORK orders that write before
    // our return from clone3.
    // SAFETY: plain reads of a local the child may have written through a raw pointer.
    let (step, errno) = unsafe { (ptr::read_volatile(&child_args.failed_step), ptr::read_volatile(&child_args.errno)) };
    if step != 0 {
        // Reap it (a clone child with no exit signal: `__WALL`).
        let _ = waitid(
            WaitId::PidFd(pidfd.as_fd()),
            WaitIdOptions::EXITED | WaitIdOptions::from_bits_retain(libc::__WALL as u32),
        );
        return Err((ZygoteChildStep::from_code(step), io::Error::from_raw_os_error(errno)));
    }
    Ok(SpawnedZygote { pid: ret as i32, pidfd })
}
