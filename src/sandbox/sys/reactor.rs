//! [`register`]: hands a descriptor to tokio's reactor ([`AsyncFd::register`], `unsafe`
//! since tokio 1.54 because the reactor cannot check that the descriptor stays the same).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

/// A value that owns one open descriptor for its whole life and never swaps it for another:
/// what [`AsyncFd::register`] requires of what it watches. Sealed: only the types below,
/// each an [`OwnedFd`] (alone, or shared: an `Arc` closes it only when the last holder,
/// the registration among them, drops) or a newtype over a [`std::fs::File`] that no method
/// replaces or closes before the value drops.
pub(crate) trait OwnsItsFd: AsRawFd + private::Sealed {}

mod private {
    pub trait Sealed {}
}

macro_rules! owns_its_fd {
    ($($t:ty),*) => {$(
        impl private::Sealed for $t {}
        impl OwnsItsFd for $t {}
    )*};
}

owns_its_fd!(
    OwnedFd,
    std::sync::Arc<OwnedFd>,
    crate::sandbox::ChildStdin,
    crate::sandbox::ChildStdout,
    crate::sandbox::ChildStderr,
    crate::sandbox::ChildPty
);

/// Registers `inner` with the current runtime's reactor (read and write interest). Panics,
/// as tokio does, outside a runtime with I/O enabled.
pub(crate) fn register<T: OwnsItsFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `T: OwnsItsFd` owns the descriptor `as_raw_fd` names, keeps it open and
    // unchanged until it drops, and the `AsyncFd` owns `T`: the descriptor stays the same
    // open file for as long as it is registered (tokio deregisters it before dropping `T`).
    let registered = unsafe { AsyncFd::register(inner) };
    registered.map_err(io::Error::from)
}
