//! Running one command in a sandbox: the request and its stdio, the wait (output read as it
//! comes, up to the cap; the timeout), the kill, and what comes back.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::PollFlags;

use super::command::{self, Command, ExitStatus, KillReason, Output, ResourceUsage};
use super::host::{errno, recv_reply, wait_reply};
use super::protocol::{self, Reply, Request, RunRequest, SpawnStep};
use super::{KILL_GRACE, Sandbox, SandboxError, channel};

impl Sandbox {
    /// Runs one command and waits for it: output captured up to the cap (then truncated and the
    /// command killed), the timeout enforced (the command and everything it started killed).
    /// Commands in the same sandbox share `/tmp` until [`Sandbox::reset`].
    ///
    /// Errors are about the sandbox or the input; a command that fails is an `Ok` [`Output`]
    /// with its exit status.
    pub fn run(&mut self, cmd: &Command) -> Result<Output, SandboxError> {
        if self.dead {
            return Err(SandboxError::Dead);
        }
        self.used = true;
        let command::EncodedCommand { argv, env, cwd } = cmd.encode()?;
        let program = cmd.get_program().to_string_lossy().into_owned();
        let timeout = cmd.get_timeout().unwrap_or(self.policy.timeout);
        let cap = cmd.get_output_limit().unwrap_or(self.policy.output_limit);
        let to_error = |what| move |source| SandboxError::Channel { what, source };
        let (out_r, out_w) = channel::pipe(true).map_err(to_error("stdout pipe"))?;
        let (err_r, err_w) = channel::pipe(true).map_err(to_error("stderr pipe"))?;
        let stdin = match cmd.get_stdin() {
            Some(bytes) => Some(channel::memfd_with(c"sandpool-stdin", bytes).map_err(to_error("stdin buffer"))?),
            None => None,
        };
        let request = Request::Run(RunRequest {
            argv,
            env,
            cwd,
            no_fork: cmd.get_no_fork(),
            cpu_seconds: self.policy.cpu_time.map_or(0, |t| t.as_secs().max(1)),
            has_stdin: stdin.is_some(),
        });
        let mut fds = Vec::with_capacity(3);
        if let Some(s) = &stdin {
            fds.push(s.as_fd());
        }
        fds.push(out_w.as_fd());
        fds.push(err_w.as_fd());
        let start = Instant::now();
        if let Err(source) = channel::send(self.runner.as_fd(), &request.encode(), &fds) {
            self.dead = true;
            return Err(SandboxError::Control { step: "sending the command", source });
        }
        drop(fds);
        drop((out_w, err_w, stdin));

        let mut streams = [Stream::new(out_r, cap), Stream::new(err_r, cap)];
        let mut deadline = start + timeout;
        let mut kill_sent: Option<KillReason> = None;
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if kill_sent.is_some() {
                    // The init did not report the killed command in time: it is unusable.
                    self.dead = true;
                    return Err(SandboxError::Dead);
                }
                kill_sent = Some(KillReason::Timeout);
                self.send_kill()?;
                deadline = Instant::now() + KILL_GRACE;
                continue;
            }
            let watched =
                [streams[0].poll_fd(), streams[1].poll_fd(), Some(self.runner.as_fd()), Some(self.pidfd.as_fd())];
            let ready = match channel::poll_each(watched, Some(left)) {
                Ok(ready) => ready,
                Err(source) => {
                    // The command's end would arrive later and confuse the next run.
                    self.dead = true;
                    return Err(SandboxError::Control { step: "waiting for the command", source });
                }
            };
            for (i, s) in streams.iter_mut().enumerate() {
                if !ready[i].is_empty() && s.read_available() && kill_sent.is_none() {
                    kill_sent = Some(KillReason::OutputLimit);
                    self.send_kill()?;
                    deadline = Instant::now() + KILL_GRACE;
                }
            }
            if ready[2].contains(PollFlags::IN) {
                match recv_reply(self.runner.as_fd(), "waiting for the command") {
                    Ok((reply, _)) => break reply,
                    Err(e) => {
                        self.dead = true;
                        return Err(e);
                    }
                }
            }
            if !ready[2].is_empty() || !ready[3].is_empty() {
                self.dead = true;
                return Err(SandboxError::Dead);
            }
        };
        let duration = start.elapsed();
        if kill_sent.is_some() && matches!(result, Reply::Exited { .. }) {
            // The spawner confirms the kill after the command's end: take that answer now,
            // within the same grace the kill started.
            if let Err(e) = self.wait_killed(deadline) {
                self.dead = true;
                return Err(e);
            }
        }
        let (status, usage) = match result {
            Reply::Exited { status, usage, untouched } => {
                // The spawner looked once the command ended: a session it left as a reset
                // would needs no reset (the pool then hands the sandbox on at once).
                self.used = !untouched;
                (status, usage)
            }
            Reply::SpawnFailed { step, errno: e } => {
                return Err(if step == SpawnStep::Exec {
                    if e == libc::ENOENT {
                        SandboxError::ProgramNotFound { program }
                    } else {
                        SandboxError::Exec { program, source: errno(e) }
                    }
                } else {
                    SandboxError::CommandSetup { step: step.name().into(), source: errno(e) }
                });
            }
            _ => {
                self.dead = true;
                return Err(SandboxError::Protocol(protocol::DecodeError::unexpected()));
            }
        };
        // The command has exited: what it wrote is in the pipes. Take it without waiting for
        // an end of file that a background process holding the pipe could delay forever.
        for s in &mut streams {
            s.read_available();
        }
        let status = if libc::WIFSIGNALED(status) {
            ExitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        };
        let killed = matches!(status, ExitStatus::Signaled(libc::SIGKILL));
        let killed_by_sandbox = kill_sent.filter(|_| killed);
        let [out, err] = streams;
        Ok(Output {
            status,
            timed_out: killed_by_sandbox == Some(KillReason::Timeout),
            killed_by_sandbox,
            stdout_truncated: out.truncated,
            stderr_truncated: err.truncated,
            stdout: out.data,
            stderr: err.data,
            duration,
            usage: ResourceUsage {
                user_time: Duration::from_micros(usage.user_us),
                system_time: Duration::from_micros(usage.system_us),
                max_rss_kib: usage.max_rss_kib,
            },
        })
    }

    fn send_kill(&mut self) -> Result<(), SandboxError> {
        channel::send(self.runner.as_fd(), &Request::Kill.encode(), &[]).map_err(|source| {
            self.dead = true;
            SandboxError::Control { step: "asking the sandbox to kill the command", source }
        })
    }

    /// Waits for the spawner's `Killed`, skipping the `Exited` of a command killed on the way;
    /// all of it by `deadline` (the kill's grace), however many replies the sandbox sends.
    fn wait_killed(&mut self, deadline: Instant) -> Result<(), SandboxError> {
        loop {
            match wait_reply(self.runner.as_fd(), self.pidfd.as_fd(), deadline, "waiting for the kill")? {
                (Reply::Killed, _) => return Ok(()),
                (Reply::Exited { .. }, _) => continue,
                _ => return Err(SandboxError::Protocol(protocol::DecodeError::unexpected())),
            }
        }
    }
}

/// One captured output stream.
struct Stream {
    fd: Option<OwnedFd>,
    data: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Stream {
    fn new(fd: OwnedFd, cap: usize) -> Self {
        Stream { fd: Some(fd), data: Vec::new(), cap, truncated: false }
    }

    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// Reads what is there without blocking; returns true the first time the cap is passed.
    fn read_available(&mut self) -> bool {
        let Some(fd) = &self.fd else { return false };
        let mut chunk = [0u8; 64 * 1024];
        let was_truncated = self.truncated;
        loop {
            match rustix::io::read(fd, &mut chunk) {
                Ok(0) => {
                    self.fd = None;
                    break;
                }
                Ok(n) => {
                    let room = self.cap.saturating_sub(self.data.len());
                    self.data.extend_from_slice(&chunk[..n.min(room)]);
                    if n > room {
                        self.truncated = true;
                    }
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break, // EAGAIN: nothing more for now
            }
        }
        self.truncated && !was_truncated
    }
}
