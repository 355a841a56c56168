//! [`PoolError`]: why an acquire (or the pool's start) failed.

use std::time::Duration;

/// Why [`Pool::acquire`](super::Pool::acquire) or
/// [`Pool::try_acquire`](super::Pool::try_acquire) gave no resource. `E` is the manager's
/// error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError<E: std::error::Error + 'static> {
    /// Every resource is in use and the pool is at `max_size`; no resource came back within
    /// `waited` (zero for `try_acquire`).
    #[error("pool exhausted: all resources in use at max_size (waited {waited:?})")]
    Exhausted {
        /// How long the caller waited.
        waited: Duration,
    },
    /// The manager failed to make a resource.
    #[error("could not create a resource")]
    Create(#[source] E),
    /// The pool was closed or dropped.
    #[error("pool is shut down")]
    ShutDown,
    /// The sweeper thread could not be started.
    #[error("could not start the sweeper thread")]
    Spawn(#[source] std::io::Error),
}
