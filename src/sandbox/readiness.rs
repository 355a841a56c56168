//! [`Readiness`]: which of many sandboxes have an answer waiting, without a thread per
//! sandbox (`epoll`).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use super::{Sandbox, sys};

/// The token reported when [`Readiness::wake`] was called.
const WAKE: u64 = u64::MAX;

/// An `epoll` set over sandboxes' answer sockets ([`Sandbox::runner_fd`]), plus a wake-up.
///
/// A pool starts a reset on the releasing thread ([`Sandbox::start_reset`]), arms the
/// sandbox here once, and a single collector thread waits for all of them.
#[derive(Debug)]
pub struct Readiness {
    epoll: OwnedFd,
    wake: OwnedFd,
}

impl Readiness {
    /// An empty set (`epoll_create1`, plus an `eventfd` for [`Readiness::wake`]).
    pub fn new() -> io::Result<Readiness> {
        let epoll = sys::epoll_create()?;
        let wake = sys::eventfd()?;
        sys::epoll_watch(epoll.as_fd(), wake.as_fd(), WAKE)?;
        Ok(Readiness { epoll, wake })
    }

    /// Reports `token` once when `sandbox` has an answer waiting (`EPOLLONESHOT`; call again to
    /// watch for the next one).
    pub fn watch_once(&self, sandbox: &Sandbox, token: u64) -> io::Result<()> {
        let fd = sandbox.runner_fd();
        match sys::epoll_watch_once(self.epoll.as_fd(), fd, token, true) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                sys::epoll_watch_once(self.epoll.as_fd(), fd, token, false)
            }
            other => other,
        }
    }

    /// Makes a waiting [`Readiness::wait`] return now.
    pub fn wake(&self) {
        sys::eventfd_signal(self.wake.as_fd());
    }

    /// Waits up to `timeout`; appends the tokens of sandboxes with an answer to `tokens`.
    /// Returns whether [`Readiness::wake`] was called.
    pub fn wait(&self, tokens: &mut Vec<u64>, timeout: Duration) -> io::Result<bool> {
        let start = tokens.len();
        sys::epoll_wait(self.epoll.as_fd(), tokens, timeout)?;
        let woken = tokens[start..].contains(&WAKE);
        if woken {
            tokens.retain(|t| *t != WAKE);
            sys::drain_signalfd(self.wake.as_fd()); // a non-blocking read to empty the counter
        }
        Ok(woken)
    }
}
