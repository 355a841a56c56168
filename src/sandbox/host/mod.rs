//! The host's side of a sandbox: opening what every zygote needs, its id maps, the replies it
//! sends (with a deadline, and escaped: its words are data), and idmapped binds ([`idmap`]).

mod blockers;
mod idmap;
pub(crate) mod uids;

pub(crate) use blockers::what_refuses_namespaces;

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::process::{Signal, WaitId, WaitIdOptions, pidfd_send_signal, waitid};

use super::channel;
use super::protocol::{self, Reply};
use super::{SANDBOX_UID, SandboxError};

pub(super) use idmap::idmapped_trees;

/// This program's image (`/proc/self/exe`, `O_PATH`), which each zygote re-executes.
pub(super) fn self_image() -> Result<BorrowedFd<'static>, SandboxError> {
    static IMAGE: OnceLock<Result<OwnedFd, Errno>> = OnceLock::new();
    let image =
        IMAGE.get_or_init(|| rustix::fs::open(c"/proc/self/exe", OFlags::PATH | OFlags::CLOEXEC, Mode::empty()));
    match image {
        Ok(fd) => Ok(fd.as_fd()),
        Err(errno) => Err(SandboxError::OpenImage(io::Error::from(*errno))),
    }
}

/// `/dev/null`, opened once: the zygote's stdio, and a command's stdin when it has none.
pub(super) fn dev_null() -> Result<BorrowedFd<'static>, SandboxError> {
    static NULL: OnceLock<Result<OwnedFd, Errno>> = OnceLock::new();
    let null = NULL.get_or_init(|| rustix::fs::open(c"/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()));
    match null {
        Ok(fd) => Ok(fd.as_fd()),
        Err(errno) => Err(SandboxError::Channel { what: "/dev/null handle", source: io::Error::from(*errno) }),
    }
}

/// The highest capability number this kernel knows.
pub(crate) fn last_cap() -> u32 {
    static LAST: OnceLock<u32> = OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40)
    })
}

/// Kills and reaps a half-made zygote if spawning fails after the clone.
pub(super) struct SpawnGuard {
    pub(super) pidfd: Option<OwnedFd>,
}

impl Drop for SpawnGuard {
    fn drop(&mut self) {
        if let Some(fd) = self.pidfd.take() {
            let _ = kill_and_reap(fd.as_fd());
        }
    }
}

/// `pidfd_send_signal(SIGKILL)`, then `waitid(P_PIDFD)` until it is reaped (a zygote is a
/// clone child with no exit signal: `__WALL`).
pub(super) fn kill_and_reap(pidfd: BorrowedFd<'_>) -> io::Result<()> {
    let _ = pidfd_send_signal(pidfd, Signal::KILL);
    loop {
        match waitid(WaitId::PidFd(pidfd), WaitIdOptions::EXITED | all_children()) {
            Err(Errno::INTR) => continue,
            other => return other.map(drop).map_err(io::Error::from),
        }
    }
}

/// `__WALL`: wait for clone children too (those with no exit signal).
fn all_children() -> WaitIdOptions {
    WaitIdOptions::from_bits_retain(libc::__WALL as u32)
}

/// Whether the process behind `pidfd` has exited (its pidfd reads as ready).
pub(super) fn exited(pidfd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::from_borrowed_fd(pidfd, PollFlags::IN)];
    matches!(channel::poll(&mut fds, Some(Duration::ZERO)), Ok(n) if n > 0)
}

/// Writes the zygote's id maps: the sandbox's uid and gid are `host_uid`/`host_gid` outside.
pub(super) fn write_id_maps(pid: i32, host_uid: u32, host_gid: u32, privileged: bool) -> io::Result<()> {
    let proc = format!("/proc/{pid}");
    if !privileged {
        std::fs::write(format!("{proc}/setgroups"), "deny")?;
    }
    std::fs::write(format!("{proc}/uid_map"), format!("{SANDBOX_UID} {host_uid} 1\n"))?;
    std::fs::write(format!("{proc}/gid_map"), format!("{SANDBOX_UID} {host_gid} 1\n"))?;
    Ok(())
}

/// Waits for one reply from the zygote, or its death, or `deadline` (one deadline for the
/// whole wait, whatever the sandbox sends meanwhile).
pub(super) fn wait_reply(
    control: BorrowedFd<'_>,
    pidfd: BorrowedFd<'_>,
    deadline: Instant,
    step: &'static str,
) -> Result<(Reply, Vec<OwnedFd>), SandboxError> {
    loop {
        let mut fds =
            [PollFd::from_borrowed_fd(control, PollFlags::IN), PollFd::from_borrowed_fd(pidfd, PollFlags::IN)];
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(SandboxError::Control { step, source: io::Error::from(io::ErrorKind::TimedOut) });
        }
        channel::poll(&mut fds, Some(left)).map_err(|source| SandboxError::Control { step, source })?;
        if fds[0].revents().contains(PollFlags::IN) {
            return recv_reply(control, step);
        }
        if !fds[0].revents().is_empty() || !fds[1].revents().is_empty() {
            return Err(SandboxError::Dead);
        }
    }
}

/// Receives one reply. Only `Ready` may carry a descriptor (the spawner's socket): any other
/// reply with descriptors attached comes from a sandbox that is not behaving, and is refused.
pub(super) fn recv_reply(control: BorrowedFd<'_>, step: &'static str) -> Result<(Reply, Vec<OwnedFd>), SandboxError> {
    let mut buf = [0u8; 4096];
    let mut fds = Vec::new();
    let n = channel::recv(control, &mut buf, &mut fds).map_err(|source| {
        discard_descriptors(std::mem::take(&mut fds));
        SandboxError::Control { step, source }
    })?;
    if n == 0 {
        discard_descriptors(fds);
        return Err(SandboxError::Dead);
    }
    let reply = Reply::decode(&buf[..n]);
    if !fds.is_empty() && !matches!(reply, Ok(Reply::Ready(_))) {
        discard_descriptors(fds);
        return Err(SandboxError::Protocol(protocol::DecodeError::unexpected()));
    }
    Ok((reply?, fds))
}

/// Closes descriptors a sandbox sent unasked on a thread of their own: the last close of a
/// socket the sandbox set up (`SO_LINGER`, say) may block, and must not block the caller.
pub(super) fn discard_descriptors(fds: Vec<OwnedFd>) {
    if fds.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new().name("sandpool-discard".into()).spawn(move || drop(fds));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "sandpool: no thread to close a sandbox's stray descriptors; closing them here");
    }
}

/// What a sandbox says, made safe to print: control characters (terminal escape sequences
/// among them) escaped, and at most 200 characters kept. Its words are data, never trusted.
pub(super) fn escaped(text: &str) -> String {
    const MOST: usize = 200;
    let mut out = String::new();
    for (i, ch) in text.chars().enumerate() {
        if i == MOST {
            out.push_str("...");
            break;
        }
        if ch.is_control() || ch == '\\' {
            out.extend(ch.escape_default());
        } else {
            out.push(ch);
        }
    }
    out
}

/// The spawner's socket, which comes with `Ready`.
pub(super) fn take_runner(mut fds: Vec<OwnedFd>) -> Result<OwnedFd, SandboxError> {
    if fds.len() != 1 {
        return Err(SandboxError::Protocol(protocol::DecodeError::unexpected()));
    }
    Ok(fds.pop().expect("one descriptor"))
}

/// The most one TCP socket of a sandbox may buffer each way: a sixty-fourth of its memory
/// limit, at least 64 KiB. The kernel's own maximum (32 MiB to receive here) lets a hundred
/// loopback connections pin gigabytes where no cgroup charges socket memory; with v1's TCP
/// limit or v2 they are charged too, and this only keeps one socket from taking it all.
pub(super) fn socket_buffer_max(memory_bytes: u64) -> u64 {
    (memory_bytes / 64).max(64 << 10)
}

/// An OS error from its number, as a sandbox reported it.
pub(super) fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

#[cfg(test)]
mod tests {
    use super::escaped;

    #[test]
    fn what_a_sandbox_says_is_escaped_before_it_is_printed() {
        assert_eq!(escaped("mount /proc"), "mount /proc");
        assert_eq!(escaped("\u{1b}[2J\u{1b}]0;owned\u{7}x\n"), "\\u{1b}[2J\\u{1b}]0;owned\\u{7}x\\n");
        assert_eq!(escaped("a\\b"), "a\\\\b");
        let long = "é".repeat(500);
        assert_eq!(escaped(&long).chars().count(), 203);
    }
}
