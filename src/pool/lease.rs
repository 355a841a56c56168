//! [`Lease`]: an RAII guard over one pooled resource.

use super::idle::Idle;
use super::magazine::Shard;
use super::manager::Manager;
use super::sync::{Arc, Ordering};
use std::fmt;
use std::ops::{Deref, DerefMut};

/// A resource on loan from a [`Pool`](super::Pool).
///
/// Dereferences to the resource. Dropping the lease gives the resource back (recycled
/// inline or in the background, or destroyed if it reached `max_uses`/`max_lifetime` or
/// the pool was shut down); [`Lease::discard`] destroys it instead. A lease may outlive
/// its pool: returned after the pool's drop, the resource is destroyed.
pub struct Lease<M: Manager> {
    idle: Option<Idle<M::Resource>>,
    shard: Arc<Shard<M>>,
}

impl<M: Manager> Lease<M> {
    pub(crate) fn new(shard: Arc<Shard<M>>, mut idle: Idle<M::Resource>) -> Self {
        idle.uses += 1;
        Lease { idle: Some(idle), shard }
    }

    /// Destroys the resource instead of giving it back (for a resource the holder knows is
    /// broken). Counted in [`Stats::discarded`](super::Stats::discarded).
    pub fn discard(mut this: Self) {
        if let Some(idle) = this.idle.take() {
            let core = &this.shard.core;
            core.counters.discarded.fetch_add(1, Ordering::Relaxed);
            core.destroy(idle, Some(&this.shard));
        }
    }

    /// How many leases (this one included) the resource has served.
    pub fn uses(this: &Self) -> u64 {
        this.idle.as_ref().map_or(0, |i| i.uses)
    }
}

impl<M: Manager> Deref for Lease<M> {
    type Target = M::Resource;
    #[inline]
    fn deref(&self) -> &M::Resource {
        match &self.idle {
            Some(i) => &i.res,
            None => unreachable!("lease used after release"),
        }
    }
}

impl<M: Manager> DerefMut for Lease<M> {
    #[inline]
    fn deref_mut(&mut self) -> &mut M::Resource {
        match &mut self.idle {
            Some(i) => &mut i.res,
            None => unreachable!("lease used after release"),
        }
    }
}

impl<M: Manager> Drop for Lease<M> {
    #[inline]
    fn drop(&mut self) {
        if let Some(idle) = self.idle.take() {
            self.shard.core.release(&self.shard, idle);
        }
    }
}

impl<M: Manager> fmt::Debug for Lease<M>
where
    M::Resource: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("resource", &self.idle.as_ref().map(|i| &i.res))
            .field("uses", &Lease::uses(self))
            .finish()
    }
}
