//! A short-lived child that holds a user namespace while its id maps are written.

use std::ffi::{c_int, c_void};
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{Signal, WaitId, WaitIdOptions, pidfd_send_signal, waitid};

use super::raw::{ChildStack, block_all_signals, clone_args_zeroed, clone3_with_stack, raw_syscall, set_signal_mask};

/// Arguments of the holder child: it closes `close_fd`, then waits on `wait_fd`.
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
    super::raw::unreachable_loop()
}

/// A user namespace with the given `uid_map`/`gid_map` lines, as a descriptor (for idmapped
/// mounts). A short-lived child (`clone3(CLONE_VM | CLONE_NEWUSER)`, on its own stack, raw
/// system calls only) holds the namespace while we write its maps and open it.
pub(crate) fn userns_with_maps(uid_map: &str, gid_map: &str) -> io::Result<OwnedFd> {
    let (wait_r, wait_w) = pipe_with(PipeFlags::CLOEXEC)?;
    let mut holder = HolderArgs { wait_fd: wait_r.as_raw_fd(), close_fd: wait_w.as_raw_fd() };
    let mut stack = Box::new(MaybeUninit::<ChildStack>::uninit());
    let mut pidfd: c_int = -1;
    let mut args = clone_args_zeroed();
    args.flags = libc::CLONE_VM as u64 | libc::CLONE_PIDFD as u64 | libc::CLONE_NEWUSER as u64;
    args.pidfd = &mut pidfd as *mut c_int as u64;
    args.stack = stack.as_mut_ptr() as u64;
    args.stack_size = size_of::<ChildStack>() as u64;
    let old_mask = block_all_signals();
    // SAFETY: the stack and `holder` outlive the child: we wait for its exit below before
    // either is dropped; the child makes raw system calls only.
    let ret = unsafe { clone3_with_stack(&mut args, holder_child, &mut holder as *mut HolderArgs as *mut c_void) };
    set_signal_mask(old_mask);
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret as i32));
    }
    // SAFETY: CLONE_PIDFD stored a new descriptor that we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let pid = ret;
    let result = (|| {
        std::fs::write(format!("/proc/{pid}/uid_map"), uid_map)?;
        std::fs::write(format!("/proc/{pid}/gid_map"), gid_map)?;
        Ok(rustix::fs::open(format!("/proc/{pid}/ns/user"), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?)
    })();
    drop(wait_w); // the child's read returns: it exits
    let _ = pidfd_send_signal(pidfd.as_fd(), Signal::KILL);
    let all_children = WaitIdOptions::from_bits_retain(libc::__WALL as u32);
    let waited = loop {
        match waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED | all_children) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other,
        }
    };
    drop(wait_r);
    // Only now is the child gone and its stack free.
    drop(stack);
    waited?;
    result
}
