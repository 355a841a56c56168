//! `run_async`: one command to its end, its piped output collected as it comes, from a tokio
//! task, holding no thread.

use super::child::{AsyncChild, read_available};
use crate::sandbox::{Output, SandboxError};

/// An output being collected.
struct Collected {
    data: Vec<u8>,
    open: bool,
}

/// Collects a child's piped output (or what its terminal shows, as stdout) until it ends. Cut
/// at any await, the child (dropped) kills its command.
pub(crate) async fn collect(mut child: AsyncChild) -> Result<Output, SandboxError> {
    drop(child.stdin.take());
    let mut pty = child.pty.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut out = Collected { data: Vec::new(), open: pty.is_some() || stdout.is_some() };
    let mut err = Collected { data: Vec::new(), open: stderr.is_some() };
    let exit = loop {
        tokio::select! {
            ready = async {
                match (&mut pty, &mut stdout) {
                    (Some(p), _) => p.inner().readable_mut().await.map(|mut g| g.clear_ready()),
                    (None, Some(s)) => s.inner().readable_mut().await.map(|mut g| g.clear_ready()),
                    (None, None) => std::future::pending().await,
                }
            }, if out.open => {
                ready.map_err(|source| SandboxError::Control { step: "reading the command's output", source })?;
                out.open = match (&mut pty, &mut stdout) {
                    (Some(p), _) => read_available(p.inner(), &mut out.data),
                    (None, Some(s)) => read_available(s.inner(), &mut out.data),
                    (None, None) => false,
                };
            }
            ready = async {
                match &mut stderr {
                    Some(s) => s.inner().readable_mut().await.map(|mut g| g.clear_ready()),
                    None => std::future::pending().await,
                }
            }, if err.open => {
                ready.map_err(|source| SandboxError::Control { step: "reading the command's output", source })?;
                err.open = stderr.as_mut().is_some_and(|s| read_available(s.inner(), &mut err.data));
            }
            exit = child.wait() => break exit?,
        }
    };
    // The command has exited: what it wrote is in the pipes. Take it without waiting for an
    // end of file that a background process holding the pipe could delay for ever.
    match (&mut pty, &mut stdout) {
        (Some(p), _) => drop(read_available(p.inner(), &mut out.data)),
        (None, Some(s)) => drop(read_available(s.inner(), &mut out.data)),
        (None, None) => {}
    }
    if let Some(s) = stderr.as_mut() {
        read_available(s.inner(), &mut err.data);
    }
    Ok(Output {
        status: exit.status,
        timed_out: exit.timed_out(),
        killed_by_sandbox: exit.killed_by_sandbox,
        stdout_truncated: pty.as_ref().map_or(stdout.as_ref().is_some_and(|s| s.truncated()), |p| p.truncated()),
        stderr_truncated: stderr.as_ref().is_some_and(|s| s.truncated()),
        stdout: out.data,
        stderr: err.data,
        duration: exit.duration,
        usage: exit.usage,
    })
}
