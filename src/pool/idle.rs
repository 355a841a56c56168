//! [`Idle`]: one resource with its bookkeeping, as it moves between rings, magazines and
//! leases.

use std::ops::{Deref, DerefMut};

/// A resource and its stamps. Stamps are epochs (milliseconds on the pool's coarse clock),
/// so stamping never reads the system clock.
#[derive(Debug)]
pub(crate) struct Stamped<R> {
    /// The resource.
    pub(crate) res: R,
    /// Epoch at which it was made.
    pub(crate) created: u64,
    /// Epoch at which it last went idle.
    pub(crate) idle_since: u64,
    /// How many leases it has served.
    pub(crate) uses: u64,
}

/// A [`Stamped`] resource in one heap cell, allocated when the resource is made and freed
/// when it is destroyed: acquire and release move one pointer, whatever the resource's size.
#[derive(Debug)]
pub(crate) struct Idle<R>(Box<Stamped<R>>);

impl<R> Idle<R> {
    /// A resource made at epoch `now`.
    pub(crate) fn new(res: R, now: u64) -> Self {
        Idle(Box::new(Stamped { res, created: now, idle_since: now, uses: 0 }))
    }

    /// The resource itself (for destroying it).
    pub(crate) fn into_resource(self) -> R {
        self.0.res
    }
}

impl<R> Deref for Idle<R> {
    type Target = Stamped<R>;
    #[inline]
    fn deref(&self) -> &Stamped<R> {
        &self.0
    }
}

impl<R> DerefMut for Idle<R> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Stamped<R> {
        &mut self.0
    }
}
