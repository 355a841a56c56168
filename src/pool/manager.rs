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
}
