//! The host's and the zygote's channels: `SOCK_SEQPACKET` sockets that carry one message per
//! datagram with descriptors beside it (`SCM_RIGHTS`), pipes and memfds for a command's stdio,
//! and waits that end at a deadline.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{MemfdFlags, OFlags};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

/// Most descriptors one message carries: the configuration's are the most, at most one tree
/// per bind, then the commands' cgroup and (cgroup v2) the init's own leaf.
pub(crate) const MAX_FDS: usize = super::policy::MAX_BINDS + 2;

/// Room for the control message of `MAX_FDS` descriptors.
const CMSG_SPACE: usize = rustix::cmsg_space!(ScmRights(MAX_FDS));

/// [`socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)`](https://man7.org/linux/man-pages/man2/socketpair.2.html):
/// two connected ends that keep message boundaries.
pub(crate) fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?)
}

/// [`sendmsg(2)`](https://man7.org/linux/man-pages/man2/sendmsg.2.html) of one datagram with
/// `fds` attached (`SCM_RIGHTS`; at most [`MAX_FDS`]), never raising `SIGPIPE`.
pub(crate) fn send(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    Ok(sendmsg(sock, data, fds, SendFlags::NOSIGNAL)?)
}

/// [`send`], but never waiting past `deadline` for room in the peer's queue
/// (`MSG_DONTWAIT`, then `poll` for `POLLOUT`): a peer that stops reading (a sandbox's
/// spawner wedged by what its commands did) must not hold the caller for ever.
/// `ErrorKind::TimedOut` when the deadline passes.
pub(crate) fn send_within(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
    deadline: std::time::Instant,
) -> io::Result<()> {
    loop {
        match sendmsg(sock, data, fds, SendFlags::NOSIGNAL | SendFlags::DONTWAIT) {
            Err(Errno::AGAIN) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(io::Error::from(io::ErrorKind::TimedOut));
                }
                let mut watched = [PollFd::from_borrowed_fd(sock, PollFlags::OUT)];
                poll(&mut watched, Some(left))?;
            }
            other => return Ok(other?),
        }
    }
}

#[cfg(feature = "tokio")]
/// [`send`] only if the peer's queue has room now (`MSG_DONTWAIT`): `false` if it has none.
pub(crate) fn try_send(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<bool> {
    match sendmsg(sock, data, fds, SendFlags::NOSIGNAL | SendFlags::DONTWAIT) {
        Err(Errno::AGAIN) => Ok(false),
        other => Ok(other.map(|()| true)?),
    }
}

/// One `sendmsg` of `data` with `fds`, again if a signal interrupts it.
fn sendmsg(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>], flags: SendFlags) -> Result<(), Errno> {
    if fds.len() > MAX_FDS {
        return Err(Errno::MSGSIZE);
    }
    let mut space = [MaybeUninit::<u8>::uninit(); CMSG_SPACE];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(Errno::MSGSIZE);
    }
    loop {
        match rustix::net::sendmsg(sock, &[IoSlice::new(data)], &mut control, flags) {
            Err(Errno::INTR) => continue,
            other => return other.map(drop),
        }
    }
}

/// [`recvmsg(2)`](https://man7.org/linux/man-pages/man2/recvmsg.2.html) of one datagram,
/// taking ownership of the descriptors attached (`MSG_CMSG_CLOEXEC`). Returns its length; 0
/// means the peer closed. A datagram or descriptor list that did not fit is an error
/// (`EMSGSIZE`), and its descriptors are closed.
pub(crate) fn recv(sock: BorrowedFd<'_>, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    recv_with(sock, buf, fds, RecvFlags::CMSG_CLOEXEC)
}

/// [`recv`] that never waits (`MSG_DONTWAIT`): `ErrorKind::WouldBlock` if nothing has come.
#[cfg(feature = "tokio")]
pub(crate) fn recv_now(sock: BorrowedFd<'_>, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    recv_with(sock, buf, fds, RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT)
}

fn recv_with(sock: BorrowedFd<'_>, buf: &mut [u8], fds: &mut Vec<OwnedFd>, flags: RecvFlags) -> io::Result<usize> {
    let mut space = [MaybeUninit::<u8>::uninit(); CMSG_SPACE];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match rustix::net::recvmsg(sock, &mut [IoSliceMut::new(buf)], &mut control, flags) {
            Err(Errno::INTR) => continue,
            other => break other?,
        }
    };
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if msg.flags.intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC) {
        fds.clear();
        return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
    }
    Ok(msg.bytes)
}

/// [`ppoll(2)`](https://man7.org/linux/man-pages/man2/poll.2.html): waits until one of `fds`
/// is ready or `timeout` passes (`None`: no end). Returns how many are ready; 0 on timeout
/// or when a signal interrupted the wait (the caller looks at its deadline again).
pub(crate) fn poll(fds: &mut [PollFd<'_>], timeout: Option<Duration>) -> io::Result<usize> {
    let timeout = timeout
        .map(|t| Timespec { tv_sec: t.as_secs().min(i64::MAX as u64) as i64, tv_nsec: i64::from(t.subsec_nanos()) });
    match rustix::event::poll(fds, timeout.as_ref()) {
        Err(Errno::INTR) => Ok(0),
        other => Ok(other?),
    }
}

/// [`poll`] on up to `N` descriptors (`None`: not watched), for input; returns what each
/// reported (empty for one not watched, and for all on timeout).
pub(crate) fn poll_each<const N: usize>(
    fds: [Option<BorrowedFd<'_>>; N],
    timeout: Option<Duration>,
) -> io::Result<[PollFlags; N]> {
    let mut watched: Vec<PollFd<'_>> = Vec::with_capacity(N);
    for fd in fds.iter().flatten() {
        watched.push(PollFd::from_borrowed_fd(*fd, PollFlags::IN));
    }
    poll(&mut watched, timeout)?;
    let mut ready = watched.iter().map(PollFd::revents);
    Ok(fds.map(|fd| fd.and_then(|_| ready.next()).unwrap_or(PollFlags::empty())))
}

/// Writes one message to a pipe, framed by a length byte: a write of at most 256 bytes is
/// atomic on a pipe, so messages from one writer never interleave. A closed reader (`EPIPE`)
/// is an error like any other (the writer blocks `SIGPIPE`).
pub(crate) fn send_framed(pipe: BorrowedFd<'_>, message: &[u8]) -> io::Result<()> {
    let len = u8::try_from(message.len()).map_err(|_| io::Error::from_raw_os_error(libc::EMSGSIZE))?;
    let mut framed = Vec::with_capacity(1 + message.len());
    framed.push(len);
    framed.extend_from_slice(message);
    loop {
        match rustix::io::write(pipe, &framed) {
            Err(Errno::INTR) => continue,
            Ok(n) if n == framed.len() => return Ok(()),
            Ok(_) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads messages framed by [`send_framed`] from a pipe: what one `read` brings may hold
/// several, or part of one.
#[derive(Debug, Default)]
pub(crate) struct FramedReader {
    buf: Vec<u8>,
    ended: bool,
}

impl FramedReader {
    /// A complete message already read, if any.
    pub(crate) fn buffered(&mut self) -> Option<Vec<u8>> {
        let len = usize::from(*self.buf.first()?);
        if self.buf.len() < 1 + len {
            return None;
        }
        let message = self.buf[1..1 + len].to_vec();
        self.buf.drain(..1 + len);
        Some(message)
    }

    /// Whether a complete message waits in the buffer.
    pub(crate) fn has_buffered(&self) -> bool {
        self.buf.first().is_some_and(|&len| self.buf.len() > usize::from(len))
    }

    /// Reads what the pipe has (one `read`, which may block if it has nothing), then returns
    /// the next complete message; `Ok(None)` once the writer closed it with none left, or if
    /// only part of one has arrived (then `ended` says which).
    pub(crate) fn read(&mut self, pipe: BorrowedFd<'_>) -> io::Result<Option<Vec<u8>>> {
        if let Some(message) = self.buffered() {
            return Ok(Some(message));
        }
        let mut chunk = [0u8; 512];
        let n = loop {
            match rustix::io::read(pipe, &mut chunk) {
                Err(Errno::INTR) => continue,
                other => break other?,
            }
        };
        if n == 0 {
            self.ended = true;
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(self.buffered())
    }

    /// Whether the writer closed the pipe.
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }
}

/// Reads a non-blocking signalfd or eventfd until it is empty.
pub(crate) fn drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 1024];
    while matches!(rustix::io::read(fd, &mut buf), Ok(n) if n > 0) {}
}

/// [`pipe2(O_CLOEXEC)`](https://man7.org/linux/man-pages/man2/pipe.2.html): (read end, write
/// end); the read end non-blocking if asked.
pub(crate) fn pipe(nonblocking_read: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    if nonblocking_read {
        rustix::fs::fcntl_setfl(&r, OFlags::NONBLOCK)?;
    }
    Ok((r, w))
}

/// [`memfd_create(MFD_CLOEXEC)`](https://man7.org/linux/man-pages/man2/memfd_create.2.html)
/// filled with `data` and rewound: a command's stdin given as bytes.
pub(crate) fn memfd_with(name: &std::ffi::CStr, data: &[u8]) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, data)?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0))?;
    Ok(OwnedFd::from(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_datagram_carries_descriptors_and_keeps_its_bounds() {
        let (a, b) = socket_pair().unwrap();
        let (r, w) = pipe(false).unwrap();
        send(a.as_fd(), b"one", &[r.as_fd(), w.as_fd()]).unwrap();
        send(a.as_fd(), b"two", &[]).unwrap();
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        assert_eq!(recv(b.as_fd(), &mut buf, &mut fds).unwrap(), 3);
        assert_eq!(&buf[..3], b"one");
        assert_eq!(fds.len(), 2);
        // The received write end reaches the original read end.
        rustix::io::write(&fds[1], b"x").unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(rustix::io::read(&r, &mut byte).unwrap(), 1);
        fds.clear();
        assert_eq!(recv(b.as_fd(), &mut buf, &mut fds).unwrap(), 3);
        assert_eq!(&buf[..3], b"two");
        assert!(fds.is_empty());
    }

    #[test]
    fn a_datagram_too_long_for_the_buffer_is_refused() {
        let (a, b) = socket_pair().unwrap();
        let (r, _w) = pipe(false).unwrap();
        send(a.as_fd(), b"longer than four", &[r.as_fd()]).unwrap();
        let mut buf = [0u8; 4];
        let mut fds = Vec::new();
        let err = recv(b.as_fd(), &mut buf, &mut fds).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EMSGSIZE));
        assert!(fds.is_empty(), "the descriptors of a refused message are closed");
    }

    #[test]
    fn a_send_to_a_peer_that_stops_reading_ends_at_its_deadline() {
        let (a, b) = socket_pair().unwrap();
        let soon = || std::time::Instant::now() + Duration::from_millis(20);
        let mut sent = 0;
        let err = loop {
            match send_within(a.as_fd(), b"request", &[], soon()) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 1_000_000, "the queue never filled");
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(sent > 0, "messages went through while there was room");
        // Once the peer reads one, there is room again.
        let mut buf = [0u8; 16];
        assert_eq!(recv(b.as_fd(), &mut buf, &mut Vec::new()).unwrap(), 7);
        send_within(a.as_fd(), b"request", &[], soon()).unwrap();
    }

    #[test]
    fn framed_messages_keep_their_bounds_in_a_pipe() {
        let (r, w) = pipe(false).unwrap();
        send_framed(w.as_fd(), b"first").unwrap();
        send_framed(w.as_fd(), b"").unwrap();
        send_framed(w.as_fd(), b"third").unwrap();
        drop(w);
        let mut reader = FramedReader::default();
        assert_eq!(reader.read(r.as_fd()).unwrap().as_deref(), Some(&b"first"[..]), "one read brings all three");
        assert!(reader.has_buffered());
        assert_eq!(reader.read(r.as_fd()).unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(reader.read(r.as_fd()).unwrap().as_deref(), Some(&b"third"[..]));
        assert_eq!(reader.read(r.as_fd()).unwrap(), None);
        assert!(reader.ended());
        assert!(send_framed(r.as_fd(), &[0u8; 256]).is_err(), "longer than a length byte says");
    }

    #[test]
    fn more_descriptors_than_a_message_carries_are_refused() {
        let (a, _b) = socket_pair().unwrap();
        let (r, _w) = pipe(false).unwrap();
        let many = vec![r.as_fd(); MAX_FDS + 1];
        assert_eq!(send(a.as_fd(), b"x", &many).unwrap_err().raw_os_error(), Some(libc::EMSGSIZE));
    }
}
