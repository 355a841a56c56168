//! The spawner's clone child, which becomes a command.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::ptr;
use std::time::{Duration, Instant};

use rustix::process::{Pid, WaitOptions, waitpid};

use super::super::protocol::SpawnStep;
use super::raw::{ChildStack, clone_on_new_stack, raw_syscall};

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
    /// A cgroup `tasks` file to join (by writing `0`) before anything else.
    pub cgroup: Option<BorrowedFd<'a>>,
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
    /// The write end of the exec pipe (close-on-exec): kept open to the `execve`, which
    /// closes it; a step that fails writes its code and errno there first.
    exec_pipe: c_int,
}

/// The command child: its own cgroup (where the sandbox has one for commands), its own
/// session (and controlling terminal, if it has one), stdio, working directory and CPU limit,
/// the extra filters, then `execve`. Everything else (no_new_privs, Landlock, seccomp, no capabilities)
/// it inherits from the spawner.
extern "C" fn command_child(arg: *mut c_void) -> ! {
    // SAFETY: `arg` points to the `CommandChildArgs` of `spawn_command`, whose frame stays
    // until this child has exec'd, exited, or been killed and reaped (it waits on the exec
    // pipe, then reaps); nothing writes to it meanwhile.
    let a = unsafe { &*(arg as *const CommandChildArgs) };
    let fail = |a: &CommandChildArgs, step: SpawnStep, ret: isize| -> ! {
        let errno = (-ret as i32).to_ne_bytes();
        let report = [step as u8, errno[0], errno[1], errno[2], errno[3]];
        // SAFETY: a write of this child's stack buffer to its own descriptor, then exit_group,
        // which ends this child only (it shares no thread group with the parent).
        unsafe {
            raw_syscall(libc::SYS_write, a.exec_pipe as usize, report.as_ptr() as usize, report.len(), 0, 0);
            raw_syscall(libc::SYS_exit_group, 127, 0, 0, 0, 0)
        };
        super::raw::unreachable_loop()
    };
    // SAFETY (all raw system calls below): pointer arguments point into prepared, immutable
    // buffers owned by the waiting parent frame, or into this child's stack.
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
        // Everything above stdio goes, but the exec pipe, which `execve` closes.
        let pipe = a.exec_pipe as usize;
        let mut r = 0;
        if pipe > 3 {
            r = raw_syscall(libc::SYS_close_range, 3, pipe - 1, 0, 0, 0);
        }
        if r >= 0 {
            r = raw_syscall(libc::SYS_close_range, pipe + 1, u32::MAX as usize, 0, 0, 0);
        }
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

/// How long a command child may take from its clone to its `execve`. It takes microseconds;
/// only a child stopped before it got there (another command of the session sending
/// `SIGSTOP` to every process it may, or to the pid it guesses comes next) takes longer, and
/// such a child must not hold the spawner: it is killed, and the command fails to start.
const EXEC_BOUND: Duration = Duration::from_secs(5);

/// Starts a command from the spawner:
/// [`clone(2)`](https://man7.org/linux/man-pages/man2/clone.2.html) with `CLONE_VM` on a
/// reusable stack (the sandbox's filter answers `clone3` with `ENOSYS`), the child setting
/// itself up and calling `execve`. Not `CLONE_VFORK`: that would suspend the spawner for as
/// long as the child is stopped, which another command can make for ever. The spawner waits
/// instead on an exec pipe, which the child's `execve` closes (or its failure writes to), for
/// at most [`EXEC_BOUND`]; then it kills the child. Returns its pid, or where it failed.
pub(crate) fn spawn_command(spec: &CommandSpec<'_>, stack: &mut CommandStack) -> Result<i32, CommandSpawnFailure> {
    let failure = |step, errno: i32| CommandSpawnFailure { step, error: io::Error::from_raw_os_error(errno) };
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
    let (exec_read, exec_write) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK)
            .map_err(|e| failure(SpawnStep::Clone, e.raw_os_error()))?;
    let child_args = CommandChildArgs {
        stdio: spec.stdio.map(|fd| fd.as_raw_fd()),
        cwd: spec.cwd.as_ptr(),
        candidates: candidates.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        filters: progs.as_ptr(),
        filter_count: progs.len(),
        cpu_seconds: spec.cpu_seconds.unwrap_or(0),
        terminal: spec.terminal.map_or(-1, |fd| fd.as_raw_fd()),
        cgroup: spec.cgroup.map_or(-1, |fd| fd.as_raw_fd()),
        exec_pipe: exec_write.as_raw_fd(),
    };
    let flags = libc::CLONE_VM as usize | libc::SIGCHLD as usize;
    let stack_top = stack.0.as_mut_ptr() as usize + size_of::<ChildStack>();
    // SAFETY: the stack is ours, aligned, and `stack_top` is its end; nothing else uses it
    // until this function returns, which it does only once the child has exec'd, exited or
    // been killed and reaped; `child_args` and every array it points to live in this frame
    // for as long, unchanged; the child makes raw system calls only.
    let ret = unsafe {
        clone_on_new_stack(
            libc::SYS_clone,
            flags,
            stack_top,
            0,
            command_child,
            &child_args as *const CommandChildArgs as *mut c_void,
        )
    };
    drop(exec_write);
    if ret < 0 {
        return Err(failure(SpawnStep::Clone, -ret as i32));
    }
    let pid = ret as i32;
    let reap = || {
        // Reaped now, so the spawner's SIGCHLD handling never sees it as the command.
        let _ = Pid::from_raw(pid).map(|pid| waitpid(Some(pid), WaitOptions::from_bits_retain(libc::__WALL as u32)));
    };
    let mut report = [0u8; 5];
    match wait_for_exec(exec_read.as_fd(), &mut report) {
        // The pipe closed with nothing in it: the child's `execve` closed it.
        Ok(0) => Ok(pid),
        Ok(n) => {
            reap();
            if n < report.len() {
                return Err(failure(SpawnStep::Exec, libc::EIO));
            }
            let step = SpawnStep::from_code(report[0]).unwrap_or(SpawnStep::Exec);
            Err(failure(step, i32::from_ne_bytes([report[1], report[2], report[3], report[4]])))
        }
        Err(errno) => {
            // Stopped (or stuck) before its `execve`: it dies, and only then is this frame,
            // which it reads, let go.
            // SAFETY: a raw kill of our own child, which is not reaped yet (its pid is ours).
            unsafe { raw_syscall(libc::SYS_kill, pid as usize, libc::SIGKILL as usize, 0, 0, 0) };
            reap();
            Err(failure(SpawnStep::Exec, errno))
        }
    }
}

/// Waits at most [`EXEC_BOUND`] for the exec pipe to close, reading what a failed child wrote
/// into `report`; the bytes read (0: the child exec'd), or `ETIMEDOUT`.
fn wait_for_exec(pipe: BorrowedFd<'_>, report: &mut [u8]) -> Result<usize, i32> {
    use rustix::event::{PollFd, PollFlags};
    let deadline = Instant::now() + EXEC_BOUND;
    let mut read = 0;
    loop {
        match rustix::io::read(pipe, &mut report[read..]) {
            Ok(0) => return Ok(read),
            Ok(n) => {
                read += n;
                if read == report.len() {
                    return Ok(read);
                }
                continue;
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => {}
            Err(e) => return Err(e.raw_os_error()),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(libc::ETIMEDOUT);
        }
        let mut fds = [PollFd::from_borrowed_fd(pipe, PollFlags::IN)];
        let timeout =
            rustix::event::Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) };
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.raw_os_error()),
        }
    }
}

/// The reusable stack of the spawner's command children.
pub(crate) struct CommandStack(Box<MaybeUninit<ChildStack>>);

impl CommandStack {
    /// Allocates one.
    pub(crate) fn new() -> Self {
        CommandStack(Box::new(MaybeUninit::uninit()))
    }
}
