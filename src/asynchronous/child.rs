//! [`AsyncChild`]: a command running in a sandbox, watched from a tokio task: its status pipe,
//! its streams and its terminal under [`AsyncFd`], so waiting holds no thread.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::sandbox::reactor;
use crate::sandbox::{Child, ChildExit, ChildPty, ChildStderr, ChildStdin, ChildStdout, Killer, SandboxError};

/// How often a full request queue is tried again (a spawner reads its queue as fast as it
/// starts commands: a full one is rare, and one full for `SEND_TIMEOUT` has stopped answering).
const RETRY_FULL_QUEUE: Duration = Duration::from_millis(1);

/// The host's end of a command's piped stdin: [`AsyncWrite`]. Dropping it closes the stdin.
#[derive(Debug)]
pub struct AsyncChildStdin(AsyncFd<ChildStdin>);

/// The host's end of a command's piped stdout: [`AsyncRead`], ending at the output cap (the
/// command is killed past it, as for [`ChildStdout`]).
#[derive(Debug)]
pub struct AsyncChildStdout(AsyncFd<ChildStdout>);

/// The host's end of a command's piped stderr; as [`AsyncChildStdout`].
#[derive(Debug)]
pub struct AsyncChildStderr(AsyncFd<ChildStderr>);

/// The host's side of a command's terminal: [`AsyncRead`] what it shows, [`AsyncWrite`] what
/// it is typed; see [`ChildPty`].
#[derive(Debug)]
pub struct AsyncChildPty(AsyncFd<ChildPty>);

impl AsyncChildStdout {
    /// Whether the command wrote past the output cap (and was killed for it).
    pub fn truncated(&self) -> bool {
        self.0.get_ref().truncated()
    }
}

impl AsyncChildStderr {
    /// Whether the command wrote past the output cap (and was killed for it).
    pub fn truncated(&self) -> bool {
        self.0.get_ref().truncated()
    }
}

impl AsyncChildPty {
    /// Sets the terminal's window size (see [`ChildPty::resize`]).
    pub fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        self.0.get_ref().resize(rows, cols)
    }
    /// Whether the command wrote past the output cap (and was killed for it).
    pub fn truncated(&self) -> bool {
        self.0.get_ref().truncated()
    }
}

/// Reads from a non-blocking descriptor once it is ready.
fn poll_read_from<T: AsRawFd + Read>(
    fd: &mut AsyncFd<T>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    loop {
        let mut guard = ready!(fd.poll_read_ready_mut(cx))?;
        let unfilled = buf.initialize_unfilled();
        match guard.try_io(|inner| inner.get_mut().read(unfilled)) {
            Ok(Ok(n)) => {
                buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            Ok(Err(e)) => return Poll::Ready(Err(e)),
            Err(_would_block) => continue,
        }
    }
}

/// Writes to a non-blocking descriptor once it is ready.
fn poll_write_to<T: AsRawFd + Write>(
    fd: &mut AsyncFd<T>,
    cx: &mut Context<'_>,
    data: &[u8],
) -> Poll<io::Result<usize>> {
    loop {
        let mut guard = ready!(fd.poll_write_ready_mut(cx))?;
        match guard.try_io(|inner| inner.get_mut().write(data)) {
            Ok(result) => return Poll::Ready(result),
            Err(_would_block) => continue,
        }
    }
}

impl AsyncRead for AsyncChildStdout {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        poll_read_from(&mut self.get_mut().0, cx, buf)
    }
}

impl AsyncRead for AsyncChildStderr {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        poll_read_from(&mut self.get_mut().0, cx, buf)
    }
}

impl AsyncRead for AsyncChildPty {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        poll_read_from(&mut self.get_mut().0, cx, buf)
    }
}

impl AsyncWrite for AsyncChildStdin {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        poll_write_to(&mut self.get_mut().0, cx, data)
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    /// Nothing to flush; the stdin closes when this is dropped.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for AsyncChildPty {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        poll_write_to(&mut self.get_mut().0, cx, data)
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A command running in a sandbox, from [`SandboxLease::start_async`](crate::SandboxLease::start_async):
/// like `tokio::process::Child`, take its streams, then `wait().await`. Nothing here holds a
/// thread: the streams, the status pipe and the terminal are watched by the runtime's reactor.
///
/// **Dropped before it ended, it kills its command** (and the command's process group), like
/// `tokio::process::Command::kill_on_drop(true)`: a cancelled task leaves no command running
/// unowned. [`AsyncChild::detach`] lets a command run on in the session instead.
///
/// Cancellation: every `await` here may be cut (a `select!`, a timeout, a dropped task)
/// without losing anything: `wait` reads the command's end only as a whole message, and may be
/// awaited again; reads and writes are [`AsyncRead`]/[`AsyncWrite`]'s, cancel-safe as theirs.
#[derive(Debug)]
#[must_use = "a dropped AsyncChild kills its command; wait for it"]
pub struct AsyncChild {
    /// Its stdin, if piped.
    pub stdin: Option<AsyncChildStdin>,
    /// Its stdout, if piped.
    pub stdout: Option<AsyncChildStdout>,
    /// Its stderr, if piped.
    pub stderr: Option<AsyncChildStderr>,
    /// Its terminal, if it runs on one.
    pub pty: Option<AsyncChildPty>,
    status: AsyncFd<Arc<OwnedFd>>,
    child: Child,
    killer: Killer,
    kill_on_drop: bool,
    /// Where a kill on drop is counted (the pool's cancellations).
    cancelled: Option<Arc<AtomicU64>>,
}

impl AsyncChild {
    /// Wraps a started [`Child`] whose outputs are non-blocking (the caller made them so).
    pub(crate) fn new(mut child: Child, cancelled: Option<Arc<AtomicU64>>) -> Result<AsyncChild, SandboxError> {
        let step = "watching the command with the runtime";
        let control = |source| SandboxError::Control { step, source };
        let status = reactor::register(child.status_shared()).map_err(control)?;
        let stdin = match child.stdin.take() {
            Some(stdin) => {
                rustix::fs::fcntl_setfl(stdin.as_fd(), rustix::fs::OFlags::NONBLOCK).map_err(|e| control(e.into()))?;
                Some(AsyncChildStdin(reactor::register(stdin).map_err(control)?))
            }
            None => None,
        };
        let stdout = child.stdout.take().map(reactor::register).transpose().map_err(control)?.map(AsyncChildStdout);
        let stderr = child.stderr.take().map(reactor::register).transpose().map_err(control)?.map(AsyncChildStderr);
        let pty = child.pty.take().map(reactor::register).transpose().map_err(control)?.map(AsyncChildPty);
        let killer = child.killer();
        Ok(AsyncChild { stdin, stdout, stderr, pty, status, child, killer, kill_on_drop: true, cancelled })
    }

    /// Its pid inside the sandbox, once its start has been heard of (`None` before, and for a
    /// command that could not start).
    pub fn id(&self) -> Option<u32> {
        self.child.heard_pid()
    }

    /// Waits for it to end, closing its stdin first (as [`Child::wait`]). Cancel-safe: a
    /// cut `wait` loses nothing, and may be awaited again.
    pub async fn wait(&mut self) -> Result<ChildExit, SandboxError> {
        drop(self.stdin.take());
        let give_up = tokio::time::Instant::from_std(Instant::now() + self.child.left());
        let AsyncChild { status, child, .. } = self;
        // Already read (or read along with an earlier message): no readiness will come for it.
        if (child.has_ended() || child.has_buffered_status())
            && let Some(exit) = child.end_if_arrived()?
        {
            return Ok(exit);
        }
        let ended = async {
            loop {
                let mut guard = status
                    .readable()
                    .await
                    .map_err(|source| SandboxError::Control { step: "waiting for the command", source })?;
                // The pipe is non-blocking: read what has arrived; readiness is cleared only
                // if that was nothing (or not all of the end).
                let heard = guard.try_io(|_| match child.end_if_arrived() {
                    Ok(None) => Err(io::ErrorKind::WouldBlock.into()),
                    other => Ok(other),
                });
                match heard {
                    Ok(Ok(Ok(Some(exit)))) => return Ok::<ChildExit, SandboxError>(exit),
                    Ok(Ok(Err(e))) => return Err(e),
                    _ => continue,
                }
            }
        };

        match tokio::time::timeout_at(give_up, ended).await {
            Ok(result) => result,
            Err(_) => Err(child.gave_up()),
        }
    }

    /// Its end, if it has ended; does not wait.
    pub fn try_wait(&mut self) -> Result<Option<ChildExit>, SandboxError> {
        self.child.try_wait()
    }

    /// Sends `signal` to its process group (see [`Killer::signal`]), waiting (without holding
    /// the thread) for room in the session's request queue if it is full.
    pub async fn signal(&self, signal: i32) -> Result<(), SandboxError> {
        send_signal(&self.killer, signal).await
    }

    /// Kills it and its process group (see [`Killer::kill`]); nothing if it has ended. Does not
    /// wait for its end: `wait` does.
    pub async fn kill(&mut self) -> Result<(), SandboxError> {
        if self.child.has_ended() {
            return Ok(());
        }
        send_signal(&self.killer, libc::SIGKILL).await
    }

    /// A handle that kills or signals it from anywhere (blocking calls; see [`Killer`]).
    pub fn killer(&self) -> Killer {
        self.killer.clone()
    }

    /// Lets the command run on in the session when this is dropped (it ends with the session,
    /// its timeout, or by itself), instead of killing it.
    pub fn detach(mut self) {
        self.kill_on_drop = false;
    }
}

/// Sends a signal request, trying again while the queue is full (see [`until_sent`]).
pub(crate) async fn send_signal(killer: &Killer, signal: i32) -> Result<(), SandboxError> {
    until_sent(|| killer.try_signal(signal)).await
}

/// Calls `try_send` until it sends (`true`), sleeping between tries while the session's
/// request queue is full, for at most the send timeout: a spawner that takes no request for
/// that long has stopped answering ([`SandboxError::Unresponsive`]). Never blocks the thread.
pub(crate) async fn until_sent(mut try_send: impl FnMut() -> Result<bool, SandboxError>) -> Result<(), SandboxError> {
    let deadline = Instant::now() + crate::sandbox::SEND_TIMEOUT;
    loop {
        if try_send()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(SandboxError::Unresponsive);
        }
        tokio::time::sleep(RETRY_FULL_QUEUE).await;
    }
}

impl Drop for AsyncChild {
    /// Kills a command that has not ended (unless detached): one request, never waiting. If
    /// the session's queue is full, a task of the runtime tries again; the command ends with
    /// the session at the latest (a lease's end resets it).
    fn drop(&mut self) {
        if !self.kill_on_drop || self.child.has_ended() || matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Some(counter) = &self.cancelled {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        match self.killer.try_signal(libc::SIGKILL) {
            Ok(true) => {}
            Ok(false) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let killer = self.killer.clone();
                    runtime.spawn(async move {
                        if let Err(e) = send_signal(&killer, libc::SIGKILL).await {
                            tracing::warn!(error = %e, "sandpool: could not kill a dropped command");
                        }
                    });
                }
            }
            Err(e) => tracing::debug!(error = %e, "sandpool: could not kill a dropped command (its session is gone)"),
        }
    }
}

/// Reads what a non-blocking output has now, without waiting; whether it is still open.
pub(crate) fn read_available<T: AsRawFd + Read>(fd: &mut AsyncFd<T>, into: &mut Vec<u8>) -> bool {
    crate::sandbox::read_available(fd.get_mut(), into)
}

/// The inner descriptors of the streams, for `run_async`'s collection.
impl AsyncChildStdout {
    pub(crate) fn inner(&mut self) -> &mut AsyncFd<ChildStdout> {
        &mut self.0
    }
}
impl AsyncChildStderr {
    pub(crate) fn inner(&mut self) -> &mut AsyncFd<ChildStderr> {
        &mut self.0
    }
}
impl AsyncChildPty {
    pub(crate) fn inner(&mut self) -> &mut AsyncFd<ChildPty> {
        &mut self.0
    }
}
