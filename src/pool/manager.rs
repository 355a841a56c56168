//! The [`Manager`] trait: how the pool makes, recycles, checks and destroys one resource.

/// Makes, recycles, checks and destroys the resources of a [`Pool`](super::Pool).
///
/// The pool calls these from the acquiring thread (a `create` on a miss), the releasing
/// thread (`recycle` in [`RecycleMode::Inline`](super::RecycleMode::Inline)) or the sweeper
/// (refill, background recycle, `check`). `check` never runs on the acquire path.
pub trait Manager: Send + Sync + 'static {
    /// The pooled resource.
    type Resource: Send + 'static;
    /// What `create`, `recycle` and `check` fail with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Makes a new resource.
    fn create(&self) -> Result<Self::Resource, Self::Error>;

    /// Resets a released resource before it is reused. On error the pool destroys it and
    /// counts a recycle failure. Default: nothing to reset.
    fn recycle(&self, resource: &mut Self::Resource) -> Result<(), Self::Error> {
        let _ = resource;
        Ok(())
    }

    /// Says whether an idle resource is still healthy. Called by the sweeper on idle
    /// resources; should be cheap. On error the resource is evicted. Default: healthy.
    fn check(&self, resource: &mut Self::Resource) -> Result<(), Self::Error> {
        let _ = resource;
        Ok(())
    }

    /// Destroys a resource the pool no longer wants. Default: drops it.
    fn destroy(&self, resource: Self::Resource) {
        drop(resource);
    }

    /// Hears of what the pool did off its fast path, for metrics: an acquire that was not
    /// served at once from idle, a resource made. Called on the thread that did it, after
    /// it is done; must be cheap and must not call back into the pool. Default: nothing.
    fn observe(&self, event: PoolEvent) {
        let _ = event;
    }
}

/// What [`Manager::observe`] hears of. A hit (an acquire served at once from idle) is not an
/// event, to keep the fast path free of clock reads: [`Stats::hits`](super::Stats::hits)
/// counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolEvent {
    /// An acquire that missed got its resource after `waited` (waiting for a release, or
    /// making one on the caller's path).
    Acquired {
        /// From the miss to the lease.
        waited: std::time::Duration,
    },
    /// A resource was made in `took` (on a caller's path or by the sweeper).
    Created {
        /// How long [`Manager::create`] ran.
        took: std::time::Duration,
    },
}
