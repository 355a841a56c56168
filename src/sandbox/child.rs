//! A command running in a sandbox: [`Child`], shaped like [`std::process::Child`], with its
//! streams ([`ChildStdin`], [`ChildStdout`], [`ChildStderr`]) and a [`Killer`] that other
//! threads may hold.
//!
//! Each command has a status pipe of its own to the session's spawner, on which its start
//! and its end arrive, so any number of children run and are waited for at once, from any
//! thread, without one reader sorting out the others' replies. The spawner enforces each
//! command's timeout itself (it kills the command's process group); the host only bounds how
//! long it waits to hear of it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;

use super::command::{Command, ExitStatus, KillReason, ResourceUsage, StdioKind};
use super::host::errno;
use super::protocol::{self, Leftover, Reply, Request, RunRequest, SpawnStep};
use super::{CONTROL_TIMEOUT, KILL_GRACE, SEND_TIMEOUT, Sandbox, SandboxError, channel};

/// A session's request socket to its spawner, shared by the sandbox and its children (a
/// child may outlive the session: then sending to it fails, and the child's status pipe
/// has hung up).
///
/// It also keeps whether the session is as it started. Commands are counted as they are
/// sent; the spawner says, with each command's end, what the session's commands left
/// (nothing, files only, or more) and how many commands it had received by then. The session
/// is clean while a verdict of "nothing" covers every command sent, and needs no more than
/// fresh session directories while one of "files only" (or "nothing") does: a command still
/// on its way (sent from another thread) keeps it unclean, whatever a verdict that could not
/// see it said.
#[derive(Debug)]
pub(crate) struct SessionLink {
    pub(crate) runner: OwnedFd,
    /// `Run` requests sent (counted before each is sent).
    commands_sent: AtomicU64,
    /// The most commands covered by an "untouched" verdict.
    clean_through: AtomicU64,
    /// The most commands covered by a verdict of files only (or untouched).
    files_through: AtomicU64,
}

impl SessionLink {
    /// The link to a fresh session's spawner.
    pub(crate) fn new(runner: OwnedFd) -> SessionLink {
        SessionLink {
            runner,
            commands_sent: AtomicU64::new(0),
            clean_through: AtomicU64::new(0),
            files_through: AtomicU64::new(0),
        }
    }

    /// Whether the session is as it started, as far as the spawner's verdicts tell.
    pub(crate) fn is_clean(&self) -> bool {
        self.clean_through.load(Ordering::Acquire) == self.commands_sent.load(Ordering::Acquire)
    }

    /// Whether the session's commands changed nothing but files in its `/tmp` and
    /// `/dev/shm` (and something there: it is not clean), as far as the spawner's verdicts
    /// tell: a reset in place makes it as it started.
    pub(crate) fn only_files_changed(&self) -> bool {
        !self.is_clean() && self.files_through.load(Ordering::Acquire) == self.commands_sent.load(Ordering::Acquire)
    }

    /// After the zygote's reset in place: tells the spawner, which moves to the fresh session
    /// directories and records them as its session's start, and waits for its word (or the
    /// sandbox's death, `pidfd`); the session is then clean again.
    pub(crate) fn renewed_in_place(&self, pidfd: BorrowedFd<'_>) -> Result<(), SandboxError> {
        const STEP: &str = "waiting for the spawner after a reset in place";
        self.send(&Request::DirsRenewed, &[], "telling the spawner of a reset in place")?;
        let deadline = Instant::now() + CONTROL_TIMEOUT;
        match super::host::wait_reply(self.runner.as_fd(), pidfd, deadline, STEP)? {
            (Reply::ResetDone { .. }, _) => {
                let sent = self.commands_sent.load(Ordering::Acquire);
                self.files_through.fetch_max(sent, Ordering::AcqRel);
                self.clean_through.fetch_max(sent, Ordering::AcqRel);
                Ok(())
            }
            (Reply::ResetFailed { step, errno: e }, _) => {
                Err(SandboxError::Reset { step: super::host::escaped(&step), source: errno(e) })
            }
            _ => Err(SandboxError::Protocol(protocol::DecodeError::unexpected())),
        }
    }

    /// Records that a command is about to be sent.
    fn count_command(&self) {
        self.commands_sent.fetch_add(1, Ordering::AcqRel);
    }

    /// Sends `request` (with `fds`) to the spawner, waiting at most [`SEND_TIMEOUT`] for room:
    /// a spawner that takes no request for that long has stopped answering.
    fn send(&self, request: &Request, fds: &[BorrowedFd<'_>], step: &'static str) -> Result<(), SandboxError> {
        self.send_bytes(&request.encode(), fds, Instant::now() + SEND_TIMEOUT, step)
    }

    /// Sends an encoded request, waiting until `deadline` at most for room.
    fn send_bytes(
        &self,
        message: &[u8],
        fds: &[BorrowedFd<'_>],
        deadline: Instant,
        step: &'static str,
    ) -> Result<(), SandboxError> {
        channel::send_within(self.runner.as_fd(), message, fds, deadline).map_err(|source| match source.kind() {
            io::ErrorKind::TimedOut => SandboxError::Unresponsive,
            _ => SandboxError::Control { step, source },
        })
    }

    #[cfg(feature = "tokio")]
    /// Sends an encoded request if the queue has room now; `false` if it has none.
    fn try_send_bytes(&self, message: &[u8], fds: &[BorrowedFd<'_>], step: &'static str) -> Result<bool, SandboxError> {
        match channel::try_send(self.runner.as_fd(), message, fds) {
            Ok(sent) => Ok(sent),
            Err(source) => Err(SandboxError::Control { step, source }),
        }
    }

    /// Why the host gave up waiting on this session: its spawner is gone (the request socket
    /// hung up: the sandbox's init, or the session, died), or it lives and stopped answering.
    pub(crate) fn gave_up(&self) -> SandboxError {
        match channel::poll_each([Some(self.runner.as_fd())], Some(Duration::ZERO)) {
            Ok([ready]) if ready.intersects(PollFlags::HUP | PollFlags::ERR) => SandboxError::Dead,
            _ => SandboxError::Unresponsive,
        }
    }

    /// Records a verdict that covered the first `commands_received` commands.
    fn judged(&self, left: Leftover, commands_received: u64) {
        if left != Leftover::More {
            self.files_through.fetch_max(commands_received, Ordering::AcqRel);
        }
        if left == Leftover::Nothing {
            self.clean_through.fetch_max(commands_received, Ordering::AcqRel);
        }
    }
}

/// Sends signals to one command's process group, from any thread, for as long as anyone
/// holds it (a clone of [`Child::killer`]).
#[derive(Clone, Debug)]
pub struct Killer {
    link: Arc<SessionLink>,
    /// The host's name for the command in its session.
    token: u64,
    /// Set when the sandbox killed the command for its output.
    cut: Arc<AtomicBool>,
}

impl Killer {
    /// Kills the command's process group: the command and every process it started that
    /// stayed in its group (one that left it with `setsid` or `setpgid` lives until the
    /// session ends). Asks the spawner, which kills again until the group is gone.
    pub fn kill(&self) -> Result<(), SandboxError> {
        self.signal(libc::SIGKILL)
    }

    /// Sends `signal` (a named signal, 1 to 31) to the command's process group, as a
    /// terminal does for Ctrl-C. Signals for a command that has ended are ignored.
    pub fn signal(&self, signal: i32) -> Result<(), SandboxError> {
        let request = Request::Signal { token: self.token, signal };
        self.link.send(&request, &[], "asking the sandbox to signal the command")
    }

    #[cfg(feature = "tokio")]
    /// [`Killer::signal`] if the spawner's queue has room now; `false` if it has none (try
    /// again: a spawner that stays full for long has stopped answering).
    pub(crate) fn try_signal(&self, signal: i32) -> Result<bool, SandboxError> {
        let request = Request::Signal { token: self.token, signal };
        self.link.try_send_bytes(&request.encode(), &[], "asking the sandbox to signal the command")
    }

    /// Kills the command for its output, so that its end says why.
    fn cut(&self) {
        if !self.cut.swap(true, Ordering::AcqRel) {
            let _ = self.kill();
        }
    }
}

/// What a piped output stream (or a terminal) reads, up to the cap.
#[derive(Debug)]
struct CappedPipe {
    file: File,
    /// Bytes it may still pass on; past them the command is killed and the stream ends.
    room: usize,
    /// Whether the command wrote past the cap.
    truncated: bool,
    killer: Killer,
    /// Whether `file` is a terminal's near end, which says `EIO` where a pipe says end of
    /// file (once no process holds the far end).
    terminal: bool,
}

impl CappedPipe {
    fn read_file(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.file.read(buf) {
            Err(e) if self.terminal && e.raw_os_error() == Some(libc::EIO) => Ok(0),
            other => other,
        }
    }
}

impl Read for CappedPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.room == 0 {
            // Read one byte more than the cap allows: only a command that writes past it is
            // cut, not one that writes exactly the cap.
            let mut probe = [0u8; 1];
            return match self.read_file(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.truncated = true;
                    self.killer.cut();
                    Ok(0)
                }
            };
        }
        let want = buf.len().min(self.room);
        let n = self.read_file(&mut buf[..want])?;
        self.room -= n;
        Ok(n)
    }
}

/// The host's end of a command's stdin ([`Stdio::piped`](super::Stdio::piped)): what is
/// written reaches the command as it is written. Dropping it closes the command's stdin.
#[derive(Debug)]
pub struct ChildStdin(File);

impl Write for ChildStdin {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl std::os::fd::AsRawFd for ChildStdin {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

impl AsFd for ChildStdin {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// The host's end of a command's piped stdout, read as the command writes. Past the output
/// cap the command is killed and the stream ends there; [`ChildExit::killed_by_sandbox`]
/// says so.
#[derive(Debug)]
pub struct ChildStdout(CappedPipe);

/// The host's end of a command's piped stderr; as [`ChildStdout`].
#[derive(Debug)]
pub struct ChildStderr(CappedPipe);

impl Read for ChildStdout {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Read for ChildStderr {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl ChildStdout {
    /// Whether the command wrote past the output cap (and was killed for it).
    pub fn truncated(&self) -> bool {
        self.0.truncated
    }
}

impl ChildStderr {
    /// Whether the command wrote past the output cap (and was killed for it).
    pub fn truncated(&self) -> bool {
        self.0.truncated
    }
}

impl std::os::fd::AsRawFd for ChildStdout {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.file.as_raw_fd()
    }
}

impl AsFd for ChildStdout {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.file.as_fd()
    }
}

impl std::os::fd::AsRawFd for ChildStderr {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.file.as_raw_fd()
    }
}

impl AsFd for ChildStderr {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.file.as_fd()
    }
}

/// The host's side of a command's terminal ([`Command::pty`]): reads what the command shows
/// (its output, and the echo of what it is typed), writes what it is typed (`b"\x03"` is
/// Ctrl-C), and sets the window size. Past the output cap the command is killed and the
/// reads end there, as for [`ChildStdout`]; once the command and everything holding its
/// terminal are gone, reads end too.
///
/// ```no_run
/// use sandpool::sandbox::{Command, Policy, Sandbox};
/// use std::io::{Read, Write};
/// let sandbox = Sandbox::spawn(&Policy::default())?;
/// let mut child = sandbox.start(Command::new("sh").pty(24, 80))?;
/// let mut tty = child.pty.take().unwrap();
/// tty.write_all(b"stty size; exit 3\n")?;
/// let mut screen = Vec::new();
/// tty.read_to_end(&mut screen)?;                  // the echo, then "24 80\r\n"
/// assert_eq!(child.wait()?.code(), Some(3));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ChildPty(CappedPipe);

impl ChildPty {
    /// Sets the terminal's window size; the command's foreground process group gets
    /// `SIGWINCH` (`TIOCSWINSZ`, see
    /// [`ioctl_tty(2)`](https://man7.org/linux/man-pages/man2/ioctl_tty.2.html)).
    pub fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        let size = rustix::termios::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        Ok(rustix::termios::tcsetwinsize(&self.0.file, size)?)
    }
    /// Whether the command wrote past the output cap (and was killed for it).
    pub fn truncated(&self) -> bool {
        self.0.truncated
    }
}

impl Read for ChildPty {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for ChildPty {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl std::os::fd::AsRawFd for ChildPty {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.file.as_raw_fd()
    }
}

impl AsFd for ChildPty {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.file.as_fd()
    }
}

/// How a [`Child`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildExit {
    /// Its exit code or the signal that killed it.
    pub status: ExitStatus,
    /// Why the sandbox killed it, if it did (its timeout, or its output past the cap).
    pub killed_by_sandbox: Option<KillReason>,
    /// Resource use as the kernel reported it.
    pub usage: ResourceUsage,
    /// Wall-clock time from start to exit (as the host saw it).
    pub duration: Duration,
}

impl ChildExit {
    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }
    /// Its exit code, if it exited.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    /// Whether the sandbox killed it for running past its timeout.
    pub fn timed_out(&self) -> bool {
        self.killed_by_sandbox == Some(KillReason::Timeout)
    }
}

/// A command running in a sandbox, from [`Sandbox::start`]. Like [`std::process::Child`]:
/// take its streams, then [`wait`](Child::wait) for it. Several run at once in one session
/// (a server and its client), each with its own timeout and output cap.
///
/// Dropping a `Child` does not stop the command: it runs on in the session (its piped streams
/// closed) until it ends, its timeout passes, or the session ends.
#[derive(Debug)]
#[must_use = "a child runs on in the session; wait for it, or kill it"]
pub struct Child {
    /// Its stdin, if piped.
    pub stdin: Option<ChildStdin>,
    /// Its stdout, if piped.
    pub stdout: Option<ChildStdout>,
    /// Its stderr, if piped.
    pub stderr: Option<ChildStderr>,
    /// Its terminal, if it runs on one ([`Command::pty`]).
    pub pty: Option<ChildPty>,
    /// The read end of its status pipe (shared with the reactor that watches it, for an
    /// async child).
    status: Arc<OwnedFd>,
    /// What has been read of it (behind a lock only so that [`Child::id`] can read the start
    /// through `&self`; everything else takes it through `&mut self`, without locking).
    heard: Mutex<Heard>,
    /// The program, for the error if it could not start (heard of late, under `run`).
    program: String,
    killer: Killer,
    started: Instant,
    /// The sandbox's cgroup usage files, its CPU time (µs) and OOM kills when the command
    /// started, and a watermark of its memory from then on.
    usage: Arc<super::cgroup::UsageFiles>,
    cpu_at_start: Option<u64>,
    oom_kills_at_start: Option<u64>,
    peak_since_start: Option<super::cgroup::PeakSince>,
    /// When the host stops waiting to hear of the end: its timeout, plus a grace for the kill.
    give_up: Instant,
    exit: Option<ChildExit>,
    /// Its output cap, for a terminal attached once its start is heard of.
    cap: usize,
}

/// What a child's status pipe has said so far.
#[derive(Debug, Default)]
struct Heard {
    reader: channel::FramedReader,
    /// Its pid, once its start is heard of (0 before).
    pid: i32,
    /// Why it could not start, if it could not.
    failure: Option<(SpawnStep, i32)>,
    /// A message read while looking for the start, not taken yet.
    held: Option<Reply>,
}

impl Heard {
    /// Whether a message is waiting to be taken without reading the pipe.
    fn has_buffered(&self) -> bool {
        self.held.is_some() || self.reader.has_buffered()
    }

    /// The next message (the pipe being readable, or one buffered); `None` if the pipe hung
    /// up. Records the start and a failure to start.
    fn next(&mut self, status: BorrowedFd<'_>) -> Result<Option<Reply>, SandboxError> {
        let message = match self.held.take() {
            Some(message) => Some(message),
            None => read_status(status, &mut self.reader)?,
        };
        match &message {
            Some(Reply::Started { pid }) => self.pid = *pid,
            Some(Reply::SpawnFailed { step, errno }) => self.failure = Some((*step, *errno)),
            _ => {}
        }
        Ok(message)
    }
}

impl Child {
    /// Its pid inside the sandbox (also its process group's and session's id there). The
    /// first call may wait for the sandbox to report the start ([`Sandbox::start`] returns
    /// as soon as the command is on its way); 0 if the command could not start (its
    /// [`wait`](Child::wait) says why) or the session ended first.
    pub fn id(&self) -> u32 {
        let mut heard = self.heard.lock().unwrap_or_else(PoisonError::into_inner);
        while heard.pid == 0 && heard.failure.is_none() && heard.held.is_none() {
            if !heard.reader.has_buffered() {
                let left = self.give_up.saturating_duration_since(Instant::now());
                match channel::poll_each([Some(self.status.as_fd())], Some(left)) {
                    Ok([ready]) if !ready.is_empty() => {}
                    _ => break,
                }
            }
            match heard.next(self.status.as_fd()) {
                Ok(Some(Reply::Started { .. } | Reply::SpawnFailed { .. })) => {}
                // Anything else is the wait's to take.
                Ok(Some(other)) => heard.held = Some(other),
                Ok(None) | Err(_) => break,
            }
        }
        heard.pid as u32
    }

    #[cfg(feature = "tokio")]
    /// Its pid, if its start has been heard of.
    pub(crate) fn heard_pid(&self) -> Option<u32> {
        let heard = self.heard.lock().unwrap_or_else(PoisonError::into_inner);
        (heard.pid != 0).then_some(heard.pid as u32)
    }

    #[cfg(feature = "tokio")]
    /// Whether its end has been taken already.
    pub(crate) fn has_ended(&self) -> bool {
        self.exit.is_some()
    }

    /// A handle that kills or signals it from another thread.
    pub fn killer(&self) -> Killer {
        self.killer.clone()
    }

    /// Kills it and its process group (see [`Killer::kill`]); nothing if it has ended.
    pub fn kill(&mut self) -> Result<(), SandboxError> {
        if self.exit.is_some() { Ok(()) } else { self.killer.kill() }
    }

    /// Sends `signal` to its process group (see [`Killer::signal`]).
    pub fn signal(&self, signal: i32) -> Result<(), SandboxError> {
        self.killer.signal(signal)
    }

    /// Waits for it to end. Closes its stdin first, as [`std::process::Child::wait`] does,
    /// so a command reading it to the end is not left waiting.
    pub fn wait(&mut self) -> Result<ChildExit, SandboxError> {
        drop(self.stdin.take());
        loop {
            if let Some(exit) = self.wait_until(self.give_up)? {
                return Ok(exit);
            }
            if Instant::now() >= self.give_up {
                return Err(self.killer.link.gave_up());
            }
        }
    }

    /// Its end, if it has ended; does not wait.
    pub fn try_wait(&mut self) -> Result<Option<ChildExit>, SandboxError> {
        self.wait_until(Instant::now())
    }

    /// Waits for it to end, at most `timeout`; `None` if it is still running then.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ChildExit>, SandboxError> {
        let until = Instant::now() + timeout;
        let exit = self.wait_until(until.min(self.give_up))?;
        if exit.is_none() && Instant::now() >= self.give_up {
            return Err(self.killer.link.gave_up());
        }
        Ok(exit)
    }

    /// Waits for its start: its pid, or why it could not start (its image missing, ...); or
    /// the sandbox's death.
    fn wait_for_start(&mut self, sandbox: &Sandbox) -> Result<(), SandboxError> {
        let deadline = self.started + CONTROL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SandboxError::Control {
                    step: "waiting for the command to start",
                    source: io::Error::from(io::ErrorKind::TimedOut),
                });
            }
            let [status_ready, init_ended] =
                channel::poll_each([Some(self.status.as_fd()), Some(sandbox.pidfd.as_fd())], Some(left))
                    .map_err(|source| SandboxError::Control { step: "waiting for the command to start", source })?;
            if status_ready.contains(PollFlags::IN) {
                let heard = self.heard.get_mut().unwrap_or_else(PoisonError::into_inner);
                return match heard.next(self.status.as_fd())? {
                    Some(Reply::Started { .. }) => Ok(()),
                    Some(Reply::SpawnFailed { step, errno: e }) => Err(spawn_error(&self.program, step, e)),
                    Some(_) => Err(SandboxError::Protocol(protocol::DecodeError::unexpected())),
                    None => Err(SandboxError::Dead),
                };
            }
            if !status_ready.is_empty() || !init_ended.is_empty() {
                return Err(SandboxError::Dead);
            }
        }
    }

    /// Gives it the terminal that came back with its start.
    pub(crate) fn attach_terminal(&mut self, near: File) {
        let killer = self.killer.clone();
        self.pty = Some(ChildPty(CappedPipe { file: near, room: self.cap, truncated: false, killer, terminal: true }));
    }

    /// Its status pipe, readable when its end has arrived (or the session ended).
    pub(crate) fn status_fd(&self) -> BorrowedFd<'_> {
        self.status.as_fd()
    }

    /// Its status pipe, to watch with a reactor.
    #[cfg(feature = "tokio")]
    pub(crate) fn status_shared(&self) -> Arc<OwnedFd> {
        Arc::clone(&self.status)
    }

    /// Whether its end has been read already, waiting to be taken.
    pub(crate) fn has_buffered_status(&mut self) -> bool {
        self.heard.get_mut().unwrap_or_else(PoisonError::into_inner).has_buffered()
    }

    /// Why the host stopped waiting for its end (see [`SessionLink::gave_up`]).
    pub(crate) fn gave_up(&self) -> SandboxError {
        self.killer.link.gave_up()
    }

    /// How long the host still waits to hear of its end.
    pub(crate) fn left(&self) -> Duration {
        self.give_up.saturating_duration_since(Instant::now())
    }

    /// Its end if it has arrived, read without waiting or polling: its status pipe is
    /// non-blocking (an async child's, whose reactor says when to read).
    #[cfg(feature = "tokio")]
    pub(crate) fn end_if_arrived(&mut self) -> Result<Option<ChildExit>, SandboxError> {
        self.wait_until(None)
    }

    /// Waits on its status pipe until `until` for its end (`None`: reads what has arrived
    /// without polling; the pipe is non-blocking then).
    fn wait_until(&mut self, until: impl Into<Option<Instant>>) -> Result<Option<ChildExit>, SandboxError> {
        let until = until.into();
        if let Some(exit) = self.exit {
            return Ok(Some(exit));
        }
        let heard = self.heard.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some((step, e)) = heard.failure {
            return Err(spawn_error(&self.program, step, e));
        }
        let reply = loop {
            if !heard.has_buffered()
                && let Some(until) = until
            {
                let left = until.saturating_duration_since(Instant::now());
                let [ready] = channel::poll_each([Some(self.status.as_fd())], Some(left))
                    .map_err(|source| SandboxError::Control { step: "waiting for the command", source })?;
                if ready.is_empty() {
                    return Ok(None);
                }
            }
            match heard.next(self.status.as_fd()) {
                Ok(Some(Reply::Started { .. })) => {}
                Ok(Some(Reply::SpawnFailed { step, errno: e })) => return Err(spawn_error(&self.program, step, e)),
                Ok(other) => break other,
                Err(SandboxError::Control { source, .. })
                    if until.is_none() && source.kind() == io::ErrorKind::WouldBlock =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        };
        let exit = match reply {
            Some(Reply::Exited { status, usage, left, timed_out, commands_received }) => {
                self.killer.link.judged(left, commands_received);
                let status = ExitStatus::from_wait_status(status);
                let cut = self.killer.cut.load(Ordering::Acquire);
                let killed = status == ExitStatus::Signaled(libc::SIGKILL);
                let killed_by_sandbox = match (timed_out, cut && killed) {
                    (true, _) => Some(KillReason::Timeout),
                    (false, true) => Some(KillReason::OutputLimit),
                    _ => None,
                };
                ChildExit {
                    status,
                    killed_by_sandbox,
                    usage: ResourceUsage {
                        user_time: Duration::from_micros(usage.user_us),
                        system_time: Duration::from_micros(usage.system_us),
                        max_rss_kib: usage.max_rss_kib,
                        sandbox_cpu_time: self
                            .cpu_at_start
                            .zip(self.usage.cpu_usage_us())
                            .map(|(start, end)| Duration::from_micros(end.saturating_sub(start))),
                        sandbox_peak_memory: self.peak_since_start.take().and_then(|p| p.read()),
                        sandbox_oom_kills: self
                            .oom_kills_at_start
                            .zip(self.usage.oom_kills())
                            .map(|(start, end)| end.saturating_sub(start)),
                    },
                    duration: self.started.elapsed(),
                }
            }
            Some(_) => return Err(SandboxError::Protocol(protocol::DecodeError::unexpected())),
            None => return Err(SandboxError::SessionEnded),
        };
        self.exit = Some(exit);
        Ok(Some(exit))
    }
}

/// Reads one message from a command's status pipe (which is readable); `None` if it ended
/// with none (the session ended). Part of a message read so far waits in `reader`: then it
/// reads on, as the rest is in the pipe already (the spawner writes each message at once).
fn read_status(status: BorrowedFd<'_>, reader: &mut channel::FramedReader) -> Result<Option<Reply>, SandboxError> {
    loop {
        let message = reader
            .read(status)
            .map_err(|source| SandboxError::Control { step: "reading the command's status", source })?;
        match message {
            Some(message) => return Ok(Some(Reply::decode(&message)?)),
            None if reader.ended() => return Ok(None),
            None => continue,
        }
    }
}

/// The host's ends of a command's stdio, and what is passed into the sandbox.
struct StdioPlan {
    given: [bool; 3],
    /// What travels with the request, in stdio order.
    sent: Vec<Arc<OwnedFd>>,
    stdin: Option<File>,
    outputs: [Option<File>; 2],
}

fn plan_stdio(cmd: &Command, nonblocking_outputs: bool) -> Result<StdioPlan, SandboxError> {
    let to_error = |what| move |source| SandboxError::Channel { what, source };
    let mut plan = StdioPlan { given: [false; 3], sent: Vec::new(), stdin: None, outputs: [None, None] };
    for (i, stdio) in cmd.get_stdio().into_iter().enumerate() {
        let sent = match &stdio.0 {
            StdioKind::Null => None,
            StdioKind::Fd(fd) => Some(fd.clone()),
            StdioKind::Bytes(bytes) => {
                Some(Arc::new(channel::memfd_with(c"sandpool-stdin", bytes).map_err(to_error("stdin buffer"))?))
            }
            StdioKind::Piped if i == 0 => {
                let (r, w) = channel::pipe(false).map_err(to_error("stdin pipe"))?;
                plan.stdin = Some(File::from(w));
                Some(Arc::new(r))
            }
            StdioKind::Piped => {
                let (r, w) = channel::pipe(nonblocking_outputs).map_err(to_error("output pipe"))?;
                plan.outputs[i - 1] = Some(File::from(r));
                Some(Arc::new(w))
            }
        };
        plan.given[i] = sent.is_some();
        plan.sent.extend(sent);
    }
    Ok(plan)
}

impl Sandbox {
    /// Starts a command and returns at once: its piped streams are read and written as it
    /// runs (see [`Child`]). Several may run at once in the session, and each ends with it.
    ///
    /// It returns once the command is on its way, without waiting to hear that it started
    /// (that would cost every command a wake-up): a command that cannot start (no such
    /// program, not executable) says so from its first `wait`, `try_wait` or
    /// `wait_timeout`, as [`SandboxError::ProgramNotFound`] or [`SandboxError::Exec`]. Only
    /// a command with a terminal ([`Command::pty`]) is heard of first, as the terminal comes
    /// back with its start.
    ///
    /// ```no_run
    /// use sandpool::sandbox::{Command, Policy, Sandbox, Stdio};
    /// use std::io::{BufRead, BufReader, Write};
    /// let sandbox = Sandbox::spawn(&Policy::default())?;
    /// let mut child = sandbox.start(&Command::new("sh").args(["-c", "read x; echo got $x"])
    ///     .stdin(Stdio::piped()))?;
    /// child.stdin.as_mut().unwrap().write_all(b"hello\n")?;
    /// let mut line = String::new();
    /// BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
    /// assert_eq!(line, "got hello\n");
    /// assert!(child.wait()?.success());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(&self, cmd: &Command) -> Result<Child, SandboxError> {
        let mut child = self.start_with(cmd, false, true)?;
        if cmd.get_pty().is_some() && child.pty.is_none() {
            // No terminal came back: the status pipe says why.
            child.wait_for_start(self)?;
        }
        Ok(child)
    }

    /// [`Sandbox::start`], with the host's ends of piped outputs blocking or not, returning
    /// before the command's start is heard of: its `Started` (sent only if `report_start`) or
    /// why it could not start is read by [`Child::wait_for_start`] or by the first wait.
    pub(crate) fn start_with(
        &self,
        cmd: &Command,
        nonblocking_outputs: bool,
        report_start: bool,
    ) -> Result<Child, SandboxError> {
        let mut launch = self.prepare_start(cmd, nonblocking_outputs, report_start)?;
        launch.send(SEND_TIMEOUT)?;
        let (mut child, terminal_return) = launch.sent();
        if let Some(back) = terminal_return
            && let Some(near) = self.receive_terminal(back, nonblocking_outputs)?
        {
            child.attach_terminal(near);
        }
        Ok(child)
    }

    /// Everything a command's start needs but its sending: its pipes, its request, and the
    /// [`Child`] that will watch it.
    pub(crate) fn prepare_start(
        &self,
        cmd: &Command,
        nonblocking_outputs: bool,
        report_start: bool,
    ) -> Result<Launch, SandboxError> {
        self.prepare_start_with(cmd, nonblocking_outputs, report_start, false)
    }

    /// [`Sandbox::prepare_start`], the host's end of the status pipe non-blocking if asked
    /// (for a reactor, which reads it only when told it is readable).
    pub(crate) fn prepare_start_with(
        &self,
        cmd: &Command,
        nonblocking_outputs: bool,
        report_start: bool,
        nonblocking_status: bool,
    ) -> Result<Launch, SandboxError> {
        if self.dead {
            return Err(SandboxError::Dead);
        }
        let super::command::EncodedCommand { argv, env, cwd } = cmd.encode()?;
        let timeout = cmd.get_timeout().unwrap_or(self.policy.timeout);
        let cap = cmd.get_output_limit().unwrap_or(self.policy.output_limit);
        let terminal = cmd.get_pty().map(|(rows, cols)| [rows, cols]);
        let plan = match terminal {
            Some(_) => StdioPlan { given: [false; 3], sent: Vec::new(), stdin: None, outputs: [None, None] },
            None => plan_stdio(cmd, nonblocking_outputs)?,
        };
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (status, status_inside) = channel::pipe(nonblocking_status)
            .map_err(|source| SandboxError::Channel { what: "command status pipe", source })?;
        // A terminal's near end comes back on a socket of its own (a pipe cannot carry it).
        let terminal_return = match terminal {
            Some(_) => Some(
                channel::socket_pair()
                    .map_err(|source| SandboxError::Channel { what: "terminal return socket", source })?,
            ),
            None => None,
        };
        let request = Request::Run(RunRequest {
            argv,
            env,
            cwd,
            no_fork: cmd.get_no_fork(),
            cpu_seconds: self.policy.cpu_time.map_or(0, |t| t.as_secs().max(1)),
            given: plan.given,
            timeout_ms: timeout.as_millis().clamp(1, u64::MAX as u128) as u64,
            token,
            report_start,
            terminal,
        });
        let (back, inside) = terminal_return.map_or((None, None), |(back, inside)| (Some(back), Some(inside)));
        let mut sent = plan.sent;
        sent.extend(inside.map(Arc::new));
        sent.push(Arc::new(status_inside));
        let killer = Killer { link: self.runner.clone(), token, cut: Arc::new(AtomicBool::new(false)) };
        let capped = |file| CappedPipe { file, room: cap, truncated: false, killer: killer.clone(), terminal: false };
        let [stdout, stderr] = plan.outputs.map(|f| f.map(capped));
        let started = Instant::now();
        let child = Child {
            stdin: plan.stdin.map(ChildStdin),
            stdout: stdout.map(ChildStdout),
            stderr: stderr.map(ChildStderr),
            pty: None,
            status: Arc::new(status),
            heard: Mutex::new(Heard::default()),
            program: cmd.get_program().to_string_lossy().into_owned(),
            killer,
            started,
            usage: self.usage.clone(),
            cpu_at_start: self.usage.cpu_usage_us(),
            oom_kills_at_start: self.usage.oom_kills(),
            peak_since_start: self.usage.peak_from_now(),
            give_up: started + timeout + KILL_GRACE,
            exit: None,
            cap,
        };
        Ok(Launch { message: request.encode(), sent, terminal_return: back, child, counted: false })
    }
}

/// A command ready to go: its request and the descriptors that travel with it. Dropped
/// unsent, the command never starts.
pub(crate) struct Launch {
    message: Vec<u8>,
    /// Stdio, the terminal's return socket, then the status pipe's write end.
    sent: Vec<Arc<OwnedFd>>,
    terminal_return: Option<OwnedFd>,
    child: Child,
    /// Whether the session counts it already (once, before the first try).
    counted: bool,
}

impl Launch {
    fn count(&mut self) {
        if !self.counted {
            self.counted = true;
            self.child.killer.link.count_command();
        }
    }

    /// Sends it, waiting at most `within` for room in the spawner's queue.
    pub(crate) fn send(&mut self, within: Duration) -> Result<(), SandboxError> {
        self.count();
        let fds: Vec<BorrowedFd<'_>> = self.sent.iter().map(|f| f.as_fd()).collect();
        self.child.killer.link.send_bytes(&self.message, &fds, Instant::now() + within, "sending the command")
    }

    #[cfg(feature = "tokio")]
    /// Sends it if the spawner's queue has room now; `false` if it has none (try again).
    pub(crate) fn try_send(&mut self) -> Result<bool, SandboxError> {
        self.count();
        let fds: Vec<BorrowedFd<'_>> = self.sent.iter().map(|f| f.as_fd()).collect();
        self.child.killer.link.try_send_bytes(&self.message, &fds, "sending the command")
    }

    /// After a send: the child, and the socket its terminal comes back on (if it has one).
    pub(crate) fn sent(self) -> (Child, Option<OwnedFd>) {
        (self.child, self.terminal_return)
    }
}

impl Sandbox {
    /// Receives a terminal's near end from the spawner, sent once the command runs; `None`
    /// if the command could not start (why is on its status pipe).
    fn receive_terminal(&self, back: OwnedFd, nonblocking: bool) -> Result<Option<File>, SandboxError> {
        let step = "receiving the command's terminal";
        let [sent, init_ended] =
            channel::poll_each([Some(back.as_fd()), Some(self.pidfd.as_fd())], Some(CONTROL_TIMEOUT))
                .map_err(|source| SandboxError::Control { step, source })?;
        if sent.is_empty() {
            return match init_ended.is_empty() {
                true => Err(SandboxError::Control { step, source: io::Error::from(io::ErrorKind::TimedOut) }),
                false => Err(SandboxError::Dead),
            };
        }
        take_terminal(back.as_fd(), nonblocking)
    }
}

/// Takes a terminal's near end from its return socket, which is readable; `None` if the
/// command could not start (why is on its status pipe).
fn take_terminal(back: BorrowedFd<'_>, nonblocking: bool) -> Result<Option<File>, SandboxError> {
    let mut fds = Vec::new();
    channel::recv(back, &mut [0u8; 1], &mut fds)
        .map_err(|source| SandboxError::Control { step: TAKE_TERMINAL, source })?;
    terminal_from(fds, nonblocking)
}

/// [`take_terminal`] if it has come back already, never waiting: `Ok(None)` if it has not
/// (`Ok(Some(None))`: the command could not start), for an async caller told by its reactor
/// that the socket may be readable.
#[cfg(feature = "tokio")]
pub(crate) fn take_terminal_now(back: BorrowedFd<'_>) -> Result<Option<Option<File>>, SandboxError> {
    let mut fds = Vec::new();
    match channel::recv_now(back, &mut [0u8; 1], &mut fds) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(source) => Err(SandboxError::Control { step: TAKE_TERMINAL, source }),
        Ok(_) => terminal_from(fds, true).map(Some),
    }
}

const TAKE_TERMINAL: &str = "receiving the command's terminal";

/// The terminal among what came back (none if the command could not start), made
/// non-blocking if asked.
fn terminal_from(mut fds: Vec<OwnedFd>, nonblocking: bool) -> Result<Option<File>, SandboxError> {
    let Some(near) = fds.pop() else { return Ok(None) };
    if nonblocking {
        rustix::io::ioctl_fionbio(&near, true)
            .map_err(|e| SandboxError::Control { step: TAKE_TERMINAL, source: e.into() })?;
    }
    Ok(Some(File::from(near)))
}

/// The error for a command that could not start: not found, not executable, or a step of its
/// child that failed.
fn spawn_error(program: &str, step: SpawnStep, e: i32) -> SandboxError {
    let program = program.to_string();
    match step {
        SpawnStep::Exec if e == libc::ENOENT => SandboxError::ProgramNotFound { program },
        SpawnStep::Exec => SandboxError::Exec { program, source: errno(e) },
        _ => SandboxError::CommandSetup { step: step.name().into(), source: errno(e) },
    }
}
