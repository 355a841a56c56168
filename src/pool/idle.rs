//! [`Idle`]: one resource with its bookkeeping, as it sits in the idle ring.

/// A resource and its stamps. Stamps are epochs (milliseconds on the pool's coarse clock),
/// so stamping never reads the system clock.
#[derive(Debug)]
pub(crate) struct Idle<R> {
    /// The resource.
    pub(crate) res: R,
    /// Epoch at which it was made.
    pub(crate) created: u64,
    /// Epoch at which it last went idle.
    pub(crate) idle_since: u64,
    /// How many leases it has served.
    pub(crate) uses: u64,
}
