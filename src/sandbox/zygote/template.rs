//! A session's runtime template (see [`crate::sandbox::runtime`]): the interpreter its spawner
//! starts first (pid 2 of the session), and asks to serve each command that names it.
//!
//! The spawner sends the command (argv, environment, working directory, CPU limit) with its
//! three stdio descriptors; the template hands it to a child (forked then, or ahead of it where
//! the template is not shared across leases), and the child answers with its pid once it
//! leads a session of its own (or declines, with its pid, and ends). Anything else (an error,
//! no answer in time) and the spawner execs the command as usual; a template that did not
//! answer in time is killed, and the session's later commands are all exec'd. A killed (or
//! vanished) template is retired, not dropped: the spawner keeps its socket until it reaps
//! it, so that every end it sent before it died is reported, and a served child whose end it
//! took with it is reported killed, never waited on for ever.
//!
//! The template is the served child's parent (one fork of an interpreter costs about a
//! millisecond here; a second, to hand the child to the spawner, would cost another): it
//! waits for it and sends its end (`X`: wait status and resource use, as the spawner's own
//! `wait4` has them), which the spawner reports as any command's. A process the child leaves
//! behind is the spawner's (the kernel hands orphans to the namespace's init), as an exec'd
//! command's.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use super::super::channel;
use super::super::command::{DEFAULT_ENV, DEFAULT_PATH};
use super::super::protocol::{RunRequest, RuntimeSpec};
use super::super::runtime::{PYTHON_STUB, PYTHON_TEMPLATE};
use super::super::sys::{self, CommandCgroup, CommandSpec, CommandStack, SeccompProgram, VforkWatch};
use super::creds::OomScore;

/// The template's pid in the session: the spawner's first child.
pub(super) const TEMPLATE_PID: i32 = 2;

/// How long a template may take to import its preload list.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a template may take to answer a request (a fork, a millisecond as a rule; far
/// longer on a loaded or emulated machine): past it, the template is taken for stuck and
/// killed. Only the command's own lease waits on it.
const SERVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often, while waiting for an answer, the spawner looks whether the template is stopped
/// (a command's `kill(-1, SIGSTOP)`): a stopped template is killed at once.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// What became of a command the template was asked to serve.
pub(super) enum Served {
    /// Its child runs, with this pid (its process group's).
    Running(i32),
    /// Its child could not enter the working directory (errno), and ended.
    CannotEnter(i32),
    /// Declined, or the fork failed: exec it.
    Declined,
}

/// What the spawner needs to start a template like a command.
pub(super) struct StartWith<'a> {
    pub devnull: BorrowedFd<'a>,
    pub stack: &'a mut CommandStack,
    pub vfork_watch: &'a VforkWatch,
    pub cgroup: Option<CommandCgroup<'a>>,
    pub oom_score: &'a OomScore,
    /// The seccomp guard that keeps the template out of the commands' reach: the template
    /// and its forks carry it; the spawner loads it on itself once it holds the template's
    /// pidfd (the guard refuses `pidfd_open` and `kill` at pid 2, to the spawner as well).
    pub guard: &'a SeccompProgram,
}

/// What the template said to a request.
enum Answer {
    /// Its child runs, with this pid.
    Started(i32),
    /// Its child ended before it said its pid (killed): `(pid, wait status, usage)`.
    Ended((i32, i32, sys::ChildUsage)),
    /// Its child could not enter the working directory (errno).
    CannotEnter(i32),
    /// Declined (by the child), or no child (the fork failed).
    Declined,
}

/// A running template.
pub(super) struct Template {
    /// The spawner's end of the template's socket (its stdin).
    socket: OwnedFd,
    /// Its pidfd, to kill it by (the guard refuses `kill` at pid 2).
    pidfd: OwnedFd,
    /// Killed, or gone: it serves no more, and is kept until the spawner reaps it.
    retired: bool,
    /// The program names it serves: its `sys.executable` and the name it was started by.
    names: [Vec<u8>; 2],
    /// Commands it served this session.
    served: u64,
    /// Ends of served children heard while waiting for another answer, for the spawner to
    /// report: `(pid, wait status, usage)`.
    ended: Vec<(i32, i32, sys::ChildUsage)>,
    /// Served children whose end has not come.
    running: Vec<i32>,
    /// Children that declined their request (or could not enter its directory), whose ends
    /// are not a command's.
    declined: Vec<i32>,
}

/// Whether the spawner's child `pid` is stopped (`waitid(WSTOPPED | WNOHANG | WNOWAIT)`:
/// the stop stays reportable).
fn stopped(pid: i32) -> bool {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    let Some(pid) = Pid::from_raw(pid) else { return false };
    let options = WaitIdOptions::STOPPED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    matches!(waitid(WaitId::Pid(pid), options), Ok(Some(status)) if status.stopped())
}

/// Whether `pid` is still the spawner's child, alive or not yet reaped (`waitid(WEXITED |
/// WNOHANG | WNOWAIT)`: `ECHILD` otherwise). A served child is once its template has died.
pub(super) fn is_own_child(pid: i32) -> bool {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    let Some(pid) = Pid::from_raw(pid) else { return false };
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    waitid(WaitId::Pid(pid), options).is_ok()
}

impl Template {
    /// Starts the template of `spec` and waits until it has imported its preload list; on
    /// failure, why (the session's commands are then exec'd).
    pub(super) fn start(spec: &RuntimeSpec, with: StartWith<'_>) -> Result<Template, String> {
        let (ours, theirs) = channel::socket_pair().map_err(|e| format!("socket: {e}"))?;
        let c = |b: &[u8]| CString::new(b).map_err(|_| "NUL in the runtime".to_string());
        let program = &spec.interpreter;
        let candidates: Vec<CString> = if program.contains(&b'/') {
            vec![c(program)?]
        } else {
            DEFAULT_PATH.split(':').map(|d| c(&[d.as_bytes(), b"/", program].concat())).collect::<Result<_, _>>()?
        };
        // Children forked ahead only where the session is never handed on (see the template).
        let forking = if spec.share_across_leases { &b"fork-on-request"[..] } else { b"fork-ahead" };
        let mut argv =
            vec![c(program)?, c(b"-c")?, c(PYTHON_STUB.as_bytes())?, c(PYTHON_TEMPLATE.as_bytes())?, c(forking)?];
        for module in &spec.preload {
            argv.push(c(module)?);
        }
        // A command's default environment, so that a command that sets none is served.
        let envp: Vec<CString> =
            DEFAULT_ENV.iter().map(|(k, v)| c(format!("{k}={v}").as_bytes())).collect::<Result<_, _>>()?;
        let command = CommandSpec {
            stdio: [theirs.as_fd(), with.devnull, with.devnull],
            cwd: c"/",
            candidates: &candidates,
            argv: &argv,
            envp: &envp,
            filters: &[with.guard],
            cpu_seconds: None,
            terminal: None,
            cgroup: with.cgroup,
        };
        with.oom_score.for_commands();
        let spawned = sys::spawn_command(&command, with.stack, with.vfork_watch);
        with.oom_score.back_to_own();
        drop(theirs);
        let pid = spawned.map_err(|f| format!("{:?}: {}", f.step, f.error))?;
        // Its pidfd before anything else: a template that fails below is killed by it too.
        let pidfd = match Pid::from_raw(pid).map(|p| pidfd_open(p, PidfdFlags::empty())) {
            Some(Ok(fd)) => fd,
            Some(Err(e)) => {
                let _ = Pid::from_raw(pid).map(|p| rustix::process::kill_process(p, Signal::KILL));
                return Err(format!("pidfd_open: {e}"));
            }
            None => return Err(format!("bad pid {pid}")),
        };
        let kill = || {
            let _ = pidfd_send_signal(pidfd.as_fd(), Signal::KILL);
        };
        if pid != TEMPLATE_PID {
            kill();
            return Err(format!("the template is pid {pid}, not {TEMPLATE_PID}"));
        }
        let reply = match receive(ours.as_fd(), START_TIMEOUT) {
            Ok(reply) => reply,
            Err(e) => {
                kill();
                return Err(format!("no answer from the interpreter: {e}"));
            }
        };
        match reply.split_first() {
            Some((b'Y', names)) => {
                let mut names = names.splitn(2, |&b| b == 0).map(<[u8]>::to_vec);
                let names = [names.next().unwrap_or_default(), names.next().unwrap_or_default()];
                Ok(Template {
                    socket: ours,
                    pidfd,
                    retired: false,
                    names,
                    served: 0,
                    ended: Vec::new(),
                    running: Vec::new(),
                    declined: Vec::new(),
                })
            }
            Some((b'F', why)) => {
                kill();
                Err(String::from_utf8_lossy(why).into_owned())
            }
            _ => {
                kill();
                Err("the interpreter did not start its template".into())
            }
        }
    }

    /// Whether `req` names this template's interpreter (the template decides the rest).
    pub(super) fn may_serve(&self, req: &RunRequest) -> bool {
        !self.retired
            && !req.no_fork
            && req.terminal.is_none()
            && req.argv.first().is_some_and(|p| self.names.contains(p))
    }

    /// Asks the template to serve `req` on `stdio`: the served child's pid, `None` (exec it),
    /// or `Served::CannotEnter` (the working directory; errno). `Err` if the template is gone
    /// or stuck (then it is killed, and must be dropped).
    pub(super) fn serve(&mut self, req: &RunRequest, stdio: [BorrowedFd<'_>; 3]) -> io::Result<Served> {
        let mut msg = Vec::with_capacity(256);
        for field in
            [&b"R"[..], req.cpu_seconds.to_string().as_bytes(), &req.cwd, req.argv.len().to_string().as_bytes()]
        {
            msg.extend_from_slice(field);
            msg.push(0);
        }
        // Each field NUL-terminated, the last one too: argv and the environment are then laid
        // out as `execve` lays them out, and the served child shows them from there.
        for field in req.argv.iter().chain(&req.env) {
            msg.extend_from_slice(field);
            msg.push(0);
        }
        let answer = channel::send(self.socket.as_fd(), &msg, &stdio).and_then(|()| self.answer());
        match answer {
            Ok(Answer::Started(pid)) => {
                self.served += 1;
                self.running.push(pid);
                Ok(Served::Running(pid))
            }
            Ok(Answer::Ended(end)) => {
                // Its end is reported as soon as the spawner has counted it as running.
                self.served += 1;
                self.ended.push(end);
                Ok(Served::Running(end.0))
            }
            Ok(Answer::CannotEnter(errno)) => Ok(Served::CannotEnter(errno)),
            Ok(Answer::Declined) => Ok(Served::Declined),
            Err(e) => Err(self.broken(&e.to_string())),
        }
    }

    /// The template's answer to a request, past the ends of children served before (kept for
    /// [`Template::take_ended`]) and of children that declined (dropped). Waits at most
    /// [`SERVE_TIMEOUT`], and not at all once the template is stopped.
    fn answer(&mut self) -> io::Result<Answer> {
        let deadline = Instant::now() + SERVE_TIMEOUT;
        loop {
            let slice = deadline.saturating_duration_since(Instant::now()).min(STOP_CHECK);
            let reply = match receive(self.socket.as_fd(), slice) {
                Ok(reply) => reply,
                Err(e) if e.kind() == io::ErrorKind::TimedOut && Instant::now() < deadline => {
                    if stopped(TEMPLATE_PID) {
                        return Err(io::Error::other("the template is stopped"));
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad answer from the template");
            let (kind, rest) = reply.split_first().ok_or_else(bad)?;
            let mut fields = std::str::from_utf8(rest).map_err(|_| bad())?.splitn(2, ' ');
            let mut pid = || fields.next().and_then(|p| p.parse::<i32>().ok()).filter(|p| *p > TEMPLATE_PID);
            match kind {
                b'X' => {
                    let end = parse_end(rest).ok_or_else(bad)?;
                    if self.take_declined(end.0) {
                        continue;
                    }
                    if self.take_running(end.0) {
                        self.ended.push(end);
                        continue;
                    }
                    // The end of a child it did not say it had: the one it gave this
                    // request, killed before it said its pid.
                    return Ok(Answer::Ended(end));
                }
                b'P' => return pid().map(Answer::Started).ok_or_else(bad),
                b'W' => {
                    let pid = pid().ok_or_else(bad)?;
                    self.declined.push(pid);
                    let errno = fields.next().and_then(|e| e.parse::<i32>().ok());
                    return Ok(Answer::CannotEnter(errno.unwrap_or(libc::EIO)));
                }
                b'D' => {
                    self.declined.push(pid().ok_or_else(bad)?);
                    return Ok(Answer::Declined);
                }
                b'E' => return Ok(Answer::Declined),
                _ => return Err(bad()),
            }
        }
    }

    /// Takes `pid` off the children that declined: whether it was one (its end is no
    /// command's).
    fn take_declined(&mut self, pid: i32) -> bool {
        take(&mut self.declined, pid)
    }

    /// Takes `pid` off the served children whose end has not come: whether it was one.
    fn take_running(&mut self, pid: i32) -> bool {
        take(&mut self.running, pid)
    }

    /// Whether it holds ends not yet taken (heard while waiting for another answer).
    pub(super) fn has_ended(&self) -> bool {
        !self.ended.is_empty()
    }

    /// Kills a template that answered wrong or not at all and retires it; the error to say so.
    fn broken(&mut self, why: &str) -> io::Error {
        self.retire();
        io::Error::new(io::ErrorKind::InvalidData, why.to_string())
    }

    /// Kills it (`pidfd_send_signal`) and takes no more commands to it. Its socket stays
    /// open, so that what it sent before it died can still be read.
    pub(super) fn retire(&mut self) {
        self.retired = true;
        let _ = pidfd_send_signal(self.pidfd.as_fd(), Signal::KILL);
    }

    /// Whether it still serves (not retired).
    pub(super) fn serves(&self) -> bool {
        !self.retired
    }

    /// Its socket: readable when a served child has ended (or the template is gone).
    pub(super) fn socket(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// The served children's ends it has sent, without waiting. Retires it once it is gone
    /// (the socket hung up) or said something else; the ends it sent before are all there.
    pub(super) fn take_ended(&mut self) -> Vec<(i32, i32, sys::ChildUsage)> {
        loop {
            let end = match receive(self.socket.as_fd(), Duration::ZERO) {
                Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
                Ok(reply) => match reply.split_first() {
                    Some((b'X', end)) => parse_end(end),
                    _ => None,
                },
                Err(_) => None,
            };
            match end {
                Some(end) if self.take_declined(end.0) => {}
                Some(end) => {
                    self.take_running(end.0);
                    self.ended.push(end);
                }
                None => {
                    self.retire();
                    break;
                }
            }
        }
        std::mem::take(&mut self.ended)
    }

    /// Whether the template is as it started, for the verdict: unless the runtime is shared
    /// across leases, it served no command; alive (its socket not hung up: it holds the only
    /// other end) and not stopped. Nothing else of it can have changed: the seccomp guard
    /// refuses every call that would change what its forks inherit (priority, scheduling,
    /// affinity, I/O priority, limits), it is not dumpable (no `ptrace`, no `/proc/2`), and a
    /// signal sent to it stays pending for ever, blocked (a fork starts with none pending);
    /// only `SIGKILL` and `SIGSTOP` act, and show here. The children it serves are the
    /// spawner's to count: it runs the verdict once none is left.
    pub(super) fn untouched(&self, share_across_leases: bool) -> bool {
        if self.retired || (self.served > 0 && !share_across_leases) {
            return false;
        }
        let idle =
            matches!(channel::poll_each([Some(self.socket.as_fd())], Some(Duration::ZERO)), Ok([f]) if f.is_empty());
        idle && !stopped(TEMPLATE_PID)
    }
}

/// Removes `pid` from `pids`: whether it was there.
fn take(pids: &mut Vec<i32>, pid: i32) -> bool {
    let at = pids.iter().position(|p| *p == pid);
    at.map(|i| pids.swap_remove(i)).is_some()
}

/// `pid status utime-µs stime-µs maxrss-KiB`, as the template sends a served child's end.
fn parse_end(fields: &[u8]) -> Option<(i32, i32, sys::ChildUsage)> {
    let mut it = std::str::from_utf8(fields).ok()?.split(' ');
    let mut next = || it.next()?.parse::<i64>().ok();
    let (pid, status) = (i32::try_from(next()?).ok()?, i32::try_from(next()?).ok()?);
    let mut usage = || u64::try_from(next()?).ok();
    let usage = sys::ChildUsage { user_us: usage()?, system_us: usage()?, max_rss_kib: usage()? };
    Some((pid, status, usage))
}

/// One datagram from the template, waiting at most `timeout` (none: what has come already).
/// The socket is looked at once more when the time is up: a thread that ran late (a loaded
/// machine) does not take a message that came for a silence.
fn receive(socket: BorrowedFd<'_>, timeout: Duration) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match channel::poll_each([Some(socket)], Some(left)) {
            Ok([f]) if f.is_empty() && left.is_zero() => return Err(io::Error::from(io::ErrorKind::TimedOut)),
            Ok([f]) if f.is_empty() => continue,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let mut buf = vec![0u8; 4096];
        let mut fds = Vec::new();
        return match channel::recv(socket, &mut buf, &mut fds) {
            Ok(0) => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(n) => {
                buf.truncate(n);
                Ok(buf)
            }
            Err(e) => Err(e),
        };
    }
}

/// Whether the session holds no process but the spawner and the template (whose own children,
/// the served ones, the spawner counts until their ends come): the spawner's only child is
/// the template (every process of the session descends from the spawner or a served child,
/// and the kernel hands each orphan to the spawner, the namespace's init).
/// [`/proc/PID/task/TID/children`](https://man7.org/linux/man-pages/man5/proc_pid_task_tid_children.5.html);
/// `false` where the kernel lacks it.
pub(super) fn only_the_template_left() -> bool {
    std::fs::read_to_string("/proc/1/task/1/children").is_ok_and(|c| c.trim() == "2")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_takes_what_has_come_with_no_time_left() {
        let (ours, theirs) = channel::socket_pair().unwrap();
        assert_eq!(receive(ours.as_fd(), Duration::ZERO).unwrap_err().kind(), io::ErrorKind::TimedOut, "nothing yet");
        channel::send(theirs.as_fd(), b"X1 0 0 0 0", &[]).unwrap();
        assert_eq!(receive(ours.as_fd(), Duration::ZERO).unwrap(), b"X1 0 0 0 0");
        drop(theirs);
        assert_eq!(receive(ours.as_fd(), Duration::ZERO).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
