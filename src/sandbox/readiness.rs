//! [`Readiness`]: which of many sandboxes have an answer waiting, without a thread per
//! sandbox (`epoll`).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::event::{EventfdFlags, Timespec, epoll, eventfd};
use rustix::io::Errno;

use super::{Sandbox, channel};

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
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(&epoll, &wake, epoll::EventData::new_u64(WAKE), epoll::EventFlags::IN)?;
        Ok(Readiness { epoll, wake })
    }

    /// Reports `token` once when `sandbox` has an answer waiting (`EPOLLONESHOT`; call again to
    /// watch for the next one).
    pub fn watch_once(&self, sandbox: &Sandbox, token: u64) -> io::Result<()> {
        let fd = sandbox.runner_fd();
        let data = epoll::EventData::new_u64(token);
        let flags = epoll::EventFlags::IN | epoll::EventFlags::ONESHOT;
        match epoll::modify(&self.epoll, fd, data, flags) {
            Err(Errno::NOENT) => Ok(epoll::add(&self.epoll, fd, data, flags)?),
            other => Ok(other?),
        }
    }

    /// Makes a waiting [`Readiness::wait`] return now.
    pub fn wake(&self) {
        // A full counter (EAGAIN) wakes the waiter all the same.
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    /// Waits up to `timeout`; appends the tokens of sandboxes with an answer to `tokens`.
    /// Returns whether [`Readiness::wake`] was called.
    pub fn wait(&self, tokens: &mut Vec<u64>, timeout: Duration) -> io::Result<bool> {
        let start = tokens.len();
        let mut events = Vec::with_capacity(64);
        let timeout = Timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        match epoll::wait(&self.epoll, rustix::buffer::spare_capacity(&mut events), Some(&timeout)) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        tokens.extend(events.iter().map(|e| e.data.u64()));
        let woken = tokens[start..].contains(&WAKE);
        if woken {
            tokens.retain(|t| *t != WAKE);
            channel::drain(self.wake.as_fd()); // a non-blocking read to empty the counter
        }
        Ok(woken)
    }
}
