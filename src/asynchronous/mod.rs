//! The async API for tokio hosts (feature `tokio`): acquire, run and watch commands from tasks,
//! with no thread per command and nothing left behind by a cancelled future.
//!
//! - [`SandboxPool::acquire_async`]: waits in the same FIFO as the blocking `acquire` (a host
//!   may use both on one pool), honouring the pool's acquire timeout.
//! - [`SandboxLease::run_async`]: one command to its end, output collected.
//! - [`SandboxLease::start_async`]: an [`AsyncChild`], its streams [`AsyncRead`](tokio::io::AsyncRead)
//!   / [`AsyncWrite`](tokio::io::AsyncWrite) (pipes and a PTY), with `wait().await`, `kill()`
//!   and `signal()`.
//!
//! Everything is built on [`AsyncFd`](tokio::io::unix::AsyncFd) over the command's pipes, its
//! status pipe and its terminal: a waiting command costs the reactor one registration, not a
//! thread. Releasing a lease never blocks (one `sendmsg` starts the reset; a collector thread
//! of the pool finishes it), so a lease may be dropped anywhere in async code. These must be
//! called inside a tokio runtime with I/O and time enabled.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use sandpool::{SandboxPool, sandbox::{Command, Policy}};
//! let pool = SandboxPool::builder(Policy::default()).max_size(64).build()?;
//! let mut lease = pool.acquire_async().await?;
//! let out = lease.run_async(&Command::new("echo").arg("hi")).await?;
//! assert_eq!(out.stdout, b"hi\n");
//! # Ok(()) }
//! ```
//!
//! # Cancellation, await point by await point
//!
//! | future | cut while | what happens |
//! |---|---|---|
//! | `acquire_async` | waiting in the queue | it leaves the queue; a sandbox a release was handing it at that moment goes to the next waiter or back to idle, warm ([`Stats::acquires_cancelled`](crate::pool::Stats::acquires_cancelled)) |
//! | `acquire_async` | a sandbox is being made for it (off the runtime, on tokio's blocking pool: making one takes milliseconds) | the making finishes and the new sandbox goes to idle, warm |
//! | `run_async`, `start_async` | the request waits for room in the session's queue (rare) | the command never starts |
//! | `run_async` | the command runs | the command (and its process group) is killed; the lease stays usable ([`SandboxPoolStats::runs_cancelled`](crate::SandboxPoolStats::runs_cancelled)) |
//! | `start_async` | its terminal comes back | the command is killed |
//! | [`AsyncChild::wait`] | any time | nothing is lost: the end is read only as a whole message; wait again |
//! | [`AsyncChild`] dropped | the command runs | the command is killed, unless [`AsyncChild::detach`]ed |
//!
//! A lease dropped with commands still running is reset as any used lease is: its session,
//! and every process in it, ends.

mod child;
mod run;

pub use child::{AsyncChild, AsyncChildPty, AsyncChildStderr, AsyncChildStdin, AsyncChildStdout};

use std::os::fd::AsFd;

use crate::pool::{Granted, Lease, PoolError, Reservation};
use crate::sandbox::{Command, Output, Sandbox, SandboxError};
use crate::{SandboxLease, SandboxManager, SandboxPool};

impl SandboxPool {
    /// Takes a ready sandbox without holding a thread while it waits: FIFO with the blocking
    /// [`acquire`](SandboxPool::acquire) callers, up to the pool's acquire timeout
    /// ([`PoolError::Exhausted`] then). Where a sandbox must be made, it is made on tokio's
    /// blocking pool (milliseconds of system calls), not on the runtime's threads.
    ///
    /// Cancel-safe: dropped at any point, it leaves nothing behind (see the
    /// [module docs](crate::asynchronous)); a sandbox handed to it at that moment, or made for
    /// it, goes back to the pool warm.
    pub async fn acquire_async(&self) -> Result<SandboxLease, PoolError<SandboxError>> {
        let mut waiting = self.engine().acquire_async();
        let granted = match self.config().acquire_timeout {
            None => (&mut waiting).await?,
            Some(limit) => match tokio::time::timeout(limit, &mut waiting).await {
                Ok(granted) => granted?,
                Err(_elapsed) => match waiting.time_out() {
                    Some(granted) => granted?,
                    None => return Err(PoolError::Exhausted { waited: waiting.waited() }),
                },
            },
        };
        let lease = match granted {
            Granted::Lease(lease) => lease,
            Granted::Capacity(reservation) => make_off_runtime(reservation).await?,
        };
        Ok(self.lease(lease))
    }
}

/// Kills a command that no [`AsyncChild`] watches yet if dropped armed (counted as a
/// cancelled run).
struct KillUnlessDisarmed<'a>(Option<crate::sandbox::Killer>, &'a Option<std::sync::Arc<std::sync::atomic::AtomicU64>>);

impl Drop for KillUnlessDisarmed<'_> {
    fn drop(&mut self) {
        if let Some(killer) = self.0.take() {
            if let Some(counter) = self.1 {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if !matches!(killer.try_signal(libc::SIGKILL), Ok(true)) {
                tracing::debug!("sandpool: could not kill a command whose start was given up (its session ends it)");
            }
        }
    }
}

/// Makes a sandbox on tokio's blocking pool. If the caller goes away meanwhile, the new
/// sandbox's lease is dropped on that thread when it is made: back to the pool, warm.
async fn make_off_runtime(
    reservation: Reservation<SandboxManager>,
) -> Result<Lease<'static, SandboxManager>, PoolError<SandboxError>> {
    match tokio::task::spawn_blocking(move || reservation.make()).await {
        Ok(made) => made,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is shutting down: the reservation was dropped with the task.
        Err(_) => Err(PoolError::ShutDown),
    }
}

impl SandboxLease {
    /// [`run`](SandboxLease::run) from a task: starts the command and collects its piped
    /// output (or its terminal) until it ends, holding no thread. Dropped before the command
    /// ends, it kills the command (and its process group); the lease stays usable. A timed-out
    /// command or a broken sandbox marks the lease as `run` does.
    pub async fn run_async(&mut self, cmd: &Command) -> Result<Output, SandboxError> {
        let result = match self.start_inner(cmd, false).await {
            Ok(child) => run::collect(child).await,
            Err(e) => Err(e),
        };
        let result = result.map_err(|e| match e {
            // Under `run` nothing else ends the session: a status pipe that hangs up means the
            // spawner (or the whole sandbox) died.
            SandboxError::SessionEnded => SandboxError::Dead,
            other => other,
        });
        self.judge(&result);
        result
    }

    /// [`start`](Sandbox::start) from a task: the command is on its way when this returns (a
    /// command with a terminal once its terminal is back), watched by an [`AsyncChild`]. Several
    /// may run at once in the session. The child kills its command when dropped before it
    /// ended, unless [detached](AsyncChild::detach).
    pub async fn start_async(&self, cmd: &Command) -> Result<AsyncChild, SandboxError> {
        self.start_inner(cmd, true).await
    }

    async fn start_inner(&self, cmd: &Command, report_start: bool) -> Result<AsyncChild, SandboxError> {
        let sandbox: &Sandbox = self;
        let mut launch = sandbox.prepare_start_with(cmd, true, report_start, true)?;
        child::until_sent(|| launch.try_send()).await?;
        let (mut started, terminal_return) = launch.sent();
        let terminal_back = match terminal_return {
            Some(back) => Some(
                crate::sandbox::reactor::register(back)
                    .map_err(|source| SandboxError::Control { step: "watching the terminal's return", source })?,
            ),
            None => None,
        };
        let cancelled = Some(self.runs_cancelled());
        if let Some(back) = terminal_back {
            // Until the child watches it, a cut (or an error) here kills the command.
            let mut guard = KillUnlessDisarmed(Some(started.killer()), &cancelled);
            let step = "receiving the command's terminal";
            let arrived = async {
                loop {
                    let mut ready = back.readable().await.map_err(|source| SandboxError::Control { step, source })?;
                    // Readiness may be a guess (a new registration): cleared if nothing came.
                    match ready.try_io(|back| match crate::sandbox::take_terminal_now(back.get_ref().as_fd()) {
                        Ok(None) => Err(std::io::ErrorKind::WouldBlock.into()),
                        other => Ok(other),
                    }) {
                        Ok(Ok(Ok(Some(near)))) => return Ok(near),
                        Ok(Ok(Err(e))) => return Err(e),
                        _ => continue,
                    }
                }
            };
            let near = match tokio::time::timeout(crate::sandbox::CONTROL_TIMEOUT, arrived).await {
                Err(_) => return Err(SandboxError::Control { step, source: std::io::ErrorKind::TimedOut.into() }),
                Ok(near) => near?,
            };
            guard.0 = None;
            drop(guard);
            match near {
                Some(near) => started.attach_terminal(near),
                None => {
                    // It could not start: its status pipe says why.
                    let mut child = AsyncChild::new(started, cancelled)?;
                    return Err(child.wait().await.err().unwrap_or(SandboxError::SessionEnded));
                }
            }
        }
        AsyncChild::new(started, cancelled)
    }
}
