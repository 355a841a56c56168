//! What `sandpool run` passes between its own streams and the command's while it runs: stdin
//! in, output out (or into a buffer for `--json`), signals on, and for `-t` the terminal in
//! raw mode with its window size.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::thread::JoinHandle;

use rustix::termios::{OptionalActions, Termios, Winsize};
use sandpool::sandbox::{ChildPty, Killer, Stdio};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGWINCH};
use signal_hook::iterator::{Handle, Signals};

/// Where the command's stdin comes from.
pub enum StdinSource {
    /// Ours, copied as it arrives into a pipe that sandpool makes for the command. The command
    /// never holds our descriptor, whatever it is: through a file's own description a command
    /// could do what its owner may (`fchmod`, extended attributes, times, inode flags, locks
    /// and leases that block the host's writers) and reopen it through `/proc/self/fd`; a
    /// terminal could be typed into; a directory leads out of the sandbox.
    Copied,
    /// None: our stdin is closed.
    Closed,
}

impl StdinSource {
    /// Looks at our stdin.
    pub fn of_this_process() -> StdinSource {
        match rustix::fs::fcntl_getfl(io::stdin().as_fd()) {
            Ok(_) => StdinSource::Copied,
            Err(_) => StdinSource::Closed,
        }
    }

    /// What the command's stdin is set to.
    pub fn stdio(self) -> Stdio {
        match self {
            StdinSource::Copied => Stdio::piped(),
            StdinSource::Closed => Stdio::null(),
        }
    }
}

/// Copies `from` to `to` until `from` ends or `to` refuses more; the bytes copied. Nothing
/// is kept beyond one chunk, however much passes.
pub fn copy(mut from: impl Read, mut to: impl Write) -> u64 {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) => return total,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return total,
        };
        // A reader gone (`sandpool run ... | head -1`): stop reading, so the command's next
        // write fails as it would outside.
        if to.write_all(&chunk[..n]).and_then(|()| to.flush()).is_err() {
            return total;
        }
        total += n as u64;
    }
}

/// Starts a thread that copies `from` to `to`, then closes `from` (after `done` has looked at
/// it) and returns what `done` said, with `to`.
pub fn copy_in_background<R, W, T>(from: R, to: W, done: impl FnOnce(R) -> T + Send + 'static) -> JoinHandle<(T, W)>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        let (mut from, mut to) = (from, to);
        copy(&mut from, &mut to);
        (done(from), to)
    })
}

/// The signals `sandpool run` passes on: `SIGINT`, `SIGTERM` and `SIGHUP` go to the command's
/// process group, and a second one kills it; `SIGWINCH` resizes the command's terminal.
pub struct SignalRelay {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
    signals: Option<Signals>,
}

impl SignalRelay {
    /// Catches the signals now, before the command exists, so that none sent meanwhile ends
    /// `sandpool` (and with it the sandbox) instead of reaching the command.
    pub fn catch() -> io::Result<SignalRelay> {
        let signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGWINCH])?;
        Ok(SignalRelay { handle: signals.handle(), thread: None, signals: Some(signals) })
    }

    /// Passes the signals caught (since [`SignalRelay::catch`]) to the command, and window
    /// size changes to `terminal`, which a `-t` run resizes from our own terminal.
    pub fn start(&mut self, killer: Killer, terminal: Option<TerminalResizer>) {
        let Some(mut signals) = self.signals.take() else { return };
        self.thread = Some(std::thread::spawn(move || {
            let mut forwarded = 0;
            for signal in signals.forever() {
                if signal == SIGWINCH {
                    if let Some(t) = &terminal {
                        t.follow_ours();
                    }
                    continue;
                }
                forwarded += 1;
                let sent = if forwarded == 1 { killer.signal(signal) } else { killer.kill() };
                if let Err(e) = sent {
                    eprintln!("sandpool: could not pass the signal on: {e}");
                }
            }
        }));
    }

    /// Stops passing signals on.
    pub fn stop(mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sets a command's terminal to the size of ours.
pub struct TerminalResizer(OwnedFd);

impl TerminalResizer {
    /// For the command's terminal `pty`.
    pub fn new(pty: &ChildPty) -> io::Result<TerminalResizer> {
        Ok(TerminalResizer(pty.as_fd().try_clone_to_owned()?))
    }

    fn follow_ours(&self) {
        if let Some((rows, cols)) = our_window_size() {
            let size = Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
            let _ = rustix::termios::tcsetwinsize(&self.0, size);
        }
    }
}

/// The size of the terminal on our stdin, `(rows, cols)`.
pub fn our_window_size() -> Option<(u16, u16)> {
    let Winsize { ws_row, ws_col, .. } = rustix::termios::tcgetwinsize(io::stdin().as_fd()).ok()?;
    (ws_row > 0 && ws_col > 0).then_some((ws_row, ws_col))
}

/// Our terminal in raw mode (each key passed on as typed, Ctrl-C included, nothing echoed
/// twice) while it lives; dropping it puts the terminal back as it was, on every way out.
pub struct RawTerminal {
    fd: OwnedFd,
    saved: Termios,
}

impl RawTerminal {
    /// Puts the terminal on our stdin in raw mode.
    pub fn enter() -> io::Result<RawTerminal> {
        let fd = io::stdin().as_fd().try_clone_to_owned()?;
        let saved = rustix::termios::tcgetattr(&fd)?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&fd, OptionalActions::Now, &raw)?;
        Ok(RawTerminal { fd, saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // Let what the command showed be written out first.
        let _ = rustix::termios::tcsetattr(&self.fd, OptionalActions::Drain, &self.saved);
    }
}
