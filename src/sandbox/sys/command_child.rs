//! The spawner's clone child, which becomes a command.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use rustix::process::{Pid, WaitOptions, waitpid};

use super::super::protocol::SpawnStep;
use super::raw::{
    CLONE_INTO_CGROUP, ChildStack, clone_args_zeroed, clone_on_new_stack, clone3_with_stack, raw_syscall,
};

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
    /// A terminal (the far end of a pseudo-terminal) to make the command's controlling one.
    pub terminal: Option<BorrowedFd<'a>>,
    /// The commands' own cgroup, if the sandbox has one.
    pub cgroup: Option<CommandCgroup<'a>>,
}

/// How a command gets into the commands' own cgroup.
#[derive(Clone, Copy)]
pub(crate) enum CommandCgroup<'a> {
    /// cgroup v1: the child joins it, first, by writing `0` to its `tasks` file (this
    /// descriptor, opened by the host: the kernel checks the opener's credentials).
    JoinTasks(BorrowedFd<'a>),
    /// cgroup v2: the child is born in it, this directory
    /// (`clone3(CLONE_INTO_CGROUP)`); moving itself would take the threadgroup lock, whose
    /// RCU grace period costs milliseconds when moves are sparse.
    BornIn(BorrowedFd<'a>),
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
    /// The controlling terminal to take, or -1.
    terminal: c_int,
    /// The cgroup `tasks` file to join, or -1.
    cgroup: c_int,
    /// A [`SpawnStep`] code, 0 while none failed.
    failed_step: u8,
    errno: c_int,
}

/// The command child: its own cgroup (where the sandbox has one for commands), its own
/// session (and controlling terminal, if it has one), stdio, working directory and CPU limit,
/// the extra filters, then `execve`. Everything else (no_new_privs, Landlock, seccomp, no
/// capabilities) it inherits from the spawner.
extern "C" fn command_child(arg: *mut c_void) -> ! {
    // SAFETY: `arg` points to the `CommandChildArgs` of `spawn_command`, alive while this child
    // runs (the parent is suspended by CLONE_VFORK).
    let a = unsafe { &mut *(arg as *mut CommandChildArgs) };
    let fail = |a: &mut CommandChildArgs, step: SpawnStep, ret: isize| -> ! {
        a.failed_step = step as u8;
        a.errno = -ret as c_int;
        // SAFETY: exit_group ends this child only (it shares no thread group with the parent).
        unsafe { raw_syscall(libc::SYS_exit_group, 127, 0, 0, 0, 0) };
        super::raw::unreachable_loop()
    };
    // SAFETY (all raw system calls below): pointer arguments point into prepared, immutable
    // buffers owned by the suspended parent frame, or into this child's stack.
    unsafe {
        // First, so that all the command uses is charged there.
        if a.cgroup >= 0 {
            let own = b"0";
            let r = raw_syscall(libc::SYS_write, a.cgroup as usize, own.as_ptr() as usize, own.len(), 0, 0);
            if r < 0 {
                fail(a, SpawnStep::Cgroup, r);
            }
        }
        let r = raw_syscall(libc::SYS_setsid, 0, 0, 0, 0, 0);
        if r < 0 {
            fail(a, SpawnStep::NewSession, r);
        }
        // A session leader without a controlling terminal takes this one (its foreground
        // process group is then the command's, which Ctrl-C reaches).
        if a.terminal >= 0 {
            let r = raw_syscall(libc::SYS_ioctl, a.terminal as usize, libc::TIOCSCTTY as usize, 0, 0, 0);
            if r < 0 {
                fail(a, SpawnStep::Terminal, r);
            }
        }
        for (i, fd) in a.stdio.iter().enumerate() {
            let r = if *fd == i as c_int {
                raw_syscall(libc::SYS_fcntl, i, libc::F_SETFD as usize, 0, 0, 0)
            } else {
                raw_syscall(libc::SYS_dup3, *fd as usize, i, 0, 0, 0)
            };
            if r < 0 {
                fail(a, SpawnStep::Stdio, r);
            }
        }
        let r = raw_syscall(libc::SYS_close_range, 3, u32::MAX as usize, 0, 0, 0);
        if r < 0 {
            fail(a, SpawnStep::Stdio, r);
        }
        let r = raw_syscall(libc::SYS_chdir, a.cwd as usize, 0, 0, 0, 0);
        if r < 0 {
            fail(a, SpawnStep::WorkingDirectory, r);
        }
        if a.cpu_seconds > 0 {
            let lim = libc::rlimit { rlim_cur: a.cpu_seconds, rlim_max: a.cpu_seconds + 1 };
            let r = raw_syscall(libc::SYS_setrlimit, libc::RLIMIT_CPU as usize, &lim as *const _ as usize, 0, 0, 0);
            if r < 0 {
                fail(a, SpawnStep::CpuLimit, r);
            }
        }
        // The spawner keeps every signal blocked (it reads SIGCHLD from a signalfd); the
        // command starts with none blocked.
        let empty = [0u64; 1];
        let r = raw_syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK as usize, empty.as_ptr() as usize, 0, 8, 0);
        if r < 0 {
            fail(a, SpawnStep::Stdio, r);
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
                fail(a, SpawnStep::Seccomp, r);
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
        fail(a, SpawnStep::Exec, best_error)
    }
}

/// A command whose child failed before `execve`: which step and why.
#[derive(Debug)]
pub(crate) struct CommandSpawnFailure {
    pub step: SpawnStep,
    pub error: io::Error,
}

/// How often the zygote looks at the command child its spawner is waiting for; one seen
/// waiting at two looks in a row (so for 2.5 to 5 s) is killed. A child takes microseconds
/// from its clone to its `execve`; only one stopped before it got there (another command of
/// the session sending `SIGSTOP` to every process it may, or to the pid it guesses comes
/// next) takes longer, and it must not hold the spawner in its `CLONE_VFORK` wait, which only
/// a fatal signal to the child ends.
pub(crate) const HELD_CHILD_LOOK: Duration = Duration::from_millis(2500);

/// A page shared by a zygote and each of its spawners (an anonymous `MAP_SHARED` mapping the
/// zygote makes before it forks them, which fork keeps shared): the command child a spawner
/// is waiting for, so that the zygote, outside the commands' reach, can kill one held before
/// its `execve` (see [`HELD_CHILD_LOOK`]). Not `CLONE_VM` without `CLONE_VFORK` and a
/// bounded wait of the spawner's own: the kernel would then mark the spawner's memory as
/// shared between processes, and every later write of its `oom_score_adj` would walk every
/// process of the host. Nor a watchdog thread in the spawner: a thread is a pid commands
/// could aim at.
#[derive(Debug)]
pub(crate) struct VforkWatch {
    words: ptr::NonNull<WatchWords>,
}

#[repr(C)]
struct WatchWords {
    /// The tid (in the spawner's pid namespace) of the command child the spawner is waiting
    /// for, stored by the kernel at the clone (`CLONE_PARENT_SETTID`), 0 otherwise.
    child: AtomicI32,
    /// Counts the spawner's clones, so that a wait seen twice is one wait, not two.
    clones: AtomicU64,
}

// SAFETY: the page holds only atomics, valid for the mapping's whole life, which ends only
// when the watch is dropped.
unsafe impl Send for VforkWatch {}
// SAFETY: as above: every access goes through the atomics.
unsafe impl Sync for VforkWatch {}

impl VforkWatch {
    /// [`mmap(2)`](https://man7.org/linux/man-pages/man2/mmap.2.html) of one shared,
    /// anonymous, zeroed page.
    pub(crate) fn new() -> io::Result<VforkWatch> {
        // SAFETY: a new anonymous mapping, at an address the kernel picks, aliases nothing.
        let page = unsafe {
            libc::mmap(
                ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if page == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let words =
            ptr::NonNull::new(page as *mut WatchWords).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        Ok(VforkWatch { words })
    }

    fn words(&self) -> &WatchWords {
        // SAFETY: the page is mapped, aligned, zero-filled (a valid `WatchWords`: atomics of
        // 0) and lives as long as `self`.
        unsafe { self.words.as_ref() }
    }

    /// Forgets a child a spawner that is gone left there (before the next spawner starts).
    pub(crate) fn clear(&self) {
        self.words().child.store(0, Ordering::SeqCst);
    }

    /// The child being waited for and the clone it came from, if the spawner is waiting.
    pub(crate) fn waiting_for(&self) -> Option<(i32, u64)> {
        let w = self.words();
        let clones = w.clones.load(Ordering::SeqCst);
        let child = w.child.load(Ordering::SeqCst);
        (child > 0).then_some((child, clones))
    }
}

impl Drop for VforkWatch {
    fn drop(&mut self) {
        // SAFETY: the page was mapped by `new` and nothing refers to it past `self`.
        unsafe { libc::munmap(self.words.as_ptr() as *mut c_void, 4096) };
    }
}

/// Starts a command from the spawner:
/// [`clone(2)`](https://man7.org/linux/man-pages/man2/clone.2.html) with
/// `CLONE_VM | CLONE_VFORK` on a reusable stack (the sandbox's filter answers `clone3` with
/// `ENOSYS`), or [`clone3(2)`](https://man7.org/linux/man-pages/man2/clone3.2.html) with the
/// same and `CLONE_INTO_CGROUP` where the command is born in its cgroup
/// ([`CommandCgroup::BornIn`], where the filter leaves `clone3` to the spawner); the child
/// setting itself up and calling `execve`, its tid left in `watch` while the spawner waits
/// for it (see [`VforkWatch`]). Returns its pid, or where it failed.
pub(crate) fn spawn_command(
    spec: &CommandSpec<'_>,
    stack: &mut CommandStack,
    watch: &VforkWatch,
) -> Result<i32, CommandSpawnFailure> {
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
        terminal: spec.terminal.map_or(-1, |fd| fd.as_raw_fd()),
        cgroup: match spec.cgroup {
            Some(CommandCgroup::JoinTasks(tasks)) => tasks.as_raw_fd(),
            _ => -1,
        },
        failed_step: 0,
        errno: 0,
    };
    let flags = libc::CLONE_VM as usize
        | libc::CLONE_VFORK as usize
        | libc::CLONE_PARENT_SETTID as usize
        | libc::SIGCHLD as usize;
    let stack_top = stack.0.as_mut_ptr() as usize + size_of::<ChildStack>();
    let words = watch.words();
    words.clones.fetch_add(1, Ordering::SeqCst);
    let ret = match spec.cgroup {
        Some(CommandCgroup::BornIn(dir)) => {
            let mut args = clone_args_zeroed();
            args.flags = (flags & !(libc::SIGCHLD as usize)) as u64 | CLONE_INTO_CGROUP;
            args.exit_signal = libc::SIGCHLD as u64;
            args.stack = stack.0.as_mut_ptr() as u64;
            args.stack_size = size_of::<ChildStack>() as u64;
            args.parent_tid = words.child.as_ptr() as u64;
            args.cgroup = dir.as_raw_fd() as u64;
            // SAFETY: the stack (base and size) is ours and aligned; `child_args` and every
            // array it points to live in this frame, suspended by CLONE_VFORK until the child
            // execs or exits; the child makes raw system calls only. The kernel stores the
            // child's tid through `args.parent_tid`, an `AtomicI32` of a page that outlives
            // the call (CLONE_PARENT_SETTID); `args.cgroup` is a directory held open by the
            // caller.
            unsafe {
                clone3_with_stack(&mut args, command_child, &mut child_args as *mut CommandChildArgs as *mut c_void)
            }
        }
        // SAFETY: the stack is ours, aligned, and `stack_top` is its end; `child_args` and
        // every array it points to live in this frame, suspended by CLONE_VFORK until the
        // child execs or exits; the child makes raw system calls only. The kernel stores the
        // child's tid in `words.child`, an `AtomicI32` of a page that outlives the call
        // (CLONE_PARENT_SETTID).
        _ => unsafe {
            clone_on_new_stack(
                libc::SYS_clone,
                flags,
                stack_top,
                words.child.as_ptr() as usize,
                command_child,
                &mut child_args as *mut CommandChildArgs as *mut c_void,
            )
        },
    };
    words.child.store(0, Ordering::SeqCst);
    if ret < 0 {
        return Err(CommandSpawnFailure { step: SpawnStep::Clone, error: io::Error::from_raw_os_error(-ret as i32) });
    }
    // SAFETY: plain reads of locals the child may have written before it exited.
    let (step, errno) = unsafe { (ptr::read_volatile(&child_args.failed_step), ptr::read_volatile(&child_args.errno)) };
    if step != 0 {
        // Reap it now so the spawner's SIGCHLD handling never sees it as the command.
        let _ =
            Pid::from_raw(ret as i32).map(|pid| waitpid(Some(pid), WaitOptions::from_bits_retain(libc::__WALL as u32)));
        let step = SpawnStep::from_code(step).unwrap_or(SpawnStep::Exec);
        return Err(CommandSpawnFailure { step, error: io::Error::from_raw_os_error(errno) });
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
