//! Running one command to its end in a sandbox ([`Sandbox::run`]): a [`Child`] whose piped
//! output is collected as it comes, up to the cap, while the spawner enforces the timeout.

use std::io::{self, Read};
use std::os::fd::AsFd;

use super::child::{Child, ChildPty, ChildStdout};
use super::command::{Command, Output};
use super::{Sandbox, SandboxError, channel};

/// An output `run` collects: a pipe, or a terminal.
trait Stream: Read + AsFd {
    fn truncated(&self) -> bool;
}

impl Stream for ChildStdout {
    fn truncated(&self) -> bool {
        ChildStdout::truncated(self)
    }
}

impl Stream for ChildPty {
    fn truncated(&self) -> bool {
        ChildPty::truncated(self)
    }
}

/// A piped output stream being collected.
struct Collected {
    data: Vec<u8>,
    open: bool,
}

impl Collected {
    /// Reads what is there without blocking (the host's end is non-blocking).
    fn read_available(&mut self, stream: &mut dyn Read) {
        if self.open {
            self.open = read_available(stream, &mut self.data);
        }
    }
}

/// Reads what a non-blocking stream has now into `into` (straight into its spare capacity:
/// no buffer to clear first); whether it is still open (no end of file seen).
pub(crate) fn read_available(stream: &mut dyn Read, into: &mut Vec<u8>) -> bool {
    match stream.read_to_end(into) {
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
        // Any other error ends the stream, as the end of file would.
        Err(_) => false,
    }
}

impl Sandbox {
    /// Runs one command and waits for it: piped output (the default) captured up to the cap
    /// (then cut there and the command killed), the timeout enforced (the command's process
    /// group killed). Commands in the same sandbox share the session (`/tmp`, background
    /// processes) until [`Sandbox::reset`].
    ///
    /// Errors are about the sandbox or the input; a command that fails is an `Ok` [`Output`]
    /// with its exit status.
    pub fn run(&mut self, cmd: &Command) -> Result<Output, SandboxError> {
        let child = self.start_with(cmd, true, false).inspect_err(|e| {
            if matches!(
                e,
                SandboxError::Dead
                    | SandboxError::Unresponsive
                    | SandboxError::Control { .. }
                    | SandboxError::Protocol(_)
            ) {
                self.dead = true;
            }
        })?;
        // Under `run` nothing else resets the session: a status socket that hangs up means the
        // spawner (or the whole sandbox) died.
        let result = self.collect(child).map_err(|e| match e {
            SandboxError::SessionEnded => SandboxError::Dead,
            other => other,
        });
        if matches!(
            result,
            Err(SandboxError::Dead
                | SandboxError::Unresponsive
                | SandboxError::Control { .. }
                | SandboxError::Protocol(_))
        ) {
            // The command's end would arrive later and confuse the next run.
            self.dead = true;
        }
        result
    }

    /// Collects a child's piped output (or what its terminal shows, as stdout) until it ends.
    fn collect(&self, mut child: Child) -> Result<Output, SandboxError> {
        drop(child.stdin.take());
        let mut stdout: Option<Box<dyn Stream>> = match child.pty.take() {
            Some(pty) => Some(Box::new(pty)),
            None => child.stdout.take().map(|s| Box::new(s) as Box<dyn Stream>),
        };
        let mut stderr = child.stderr.take();
        let mut out = Collected { data: Vec::new(), open: stdout.is_some() };
        let mut err = Collected { data: Vec::new(), open: stderr.is_some() };
        let exit = loop {
            // One wait for output, the command's end, or the init's death.
            let watched = [
                stdout.as_ref().filter(|_| out.open).map(|s| s.as_fd()),
                stderr.as_ref().filter(|_| err.open).map(|s| s.as_fd()),
                Some(child.status_fd()),
                Some(self.pidfd.as_fd()),
            ];
            let ready = channel::poll_each(watched, Some(child.left()))
                .map_err(|source| SandboxError::Control { step: "waiting for the command", source })?;
            if let Some(s) = stdout.as_mut().filter(|_| !ready[0].is_empty()) {
                out.read_available(s.as_mut());
            }
            if let Some(s) = stderr.as_mut().filter(|_| !ready[1].is_empty()) {
                err.read_available(s);
            }
            if (!ready[2].is_empty() || child.has_buffered_status())
                && let Some(exit) = child.try_wait()?
            {
                break exit;
            }
            if !ready[3].is_empty() {
                return Err(SandboxError::Dead);
            }
            if child.left().is_zero() {
                return Err(child.gave_up());
            }
        };
        // The command has exited: what it wrote is in the pipes. Take it without waiting for
        // an end of file that a background process holding the pipe could delay forever.
        if let Some(s) = stdout.as_mut() {
            out.read_available(s.as_mut());
        }
        if let Some(s) = stderr.as_mut() {
            err.read_available(s);
        }
        Ok(Output {
            status: exit.status,
            timed_out: exit.timed_out(),
            killed_by_sandbox: exit.killed_by_sandbox,
            stdout_truncated: stdout.as_ref().is_some_and(|s| s.truncated()),
            stderr_truncated: stderr.as_ref().is_some_and(|s| s.truncated()),
            stdout: out.data,
            stderr: err.data,
            duration: exit.duration,
            usage: exit.usage,
        })
    }
}
