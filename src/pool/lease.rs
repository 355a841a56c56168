//! [`Lease`]: an RAII guard over one pooled resource.

use super::core::Core;
use super::idle::Idle;
use super::manager::Manager;
use super::sync::{Arc, Ordering};
use std::fmt;
use std::ops::{Deref, DerefMut};

/// How a lease reaches its pool's shared state.
enum Home<'a, M: Manager> {
    /// Borrowed from the pool: no reference count touched.
    Borrowed(&'a Arc<Core<M>>),
    /// Shared: keeps the state alive after the pool is dropped.
    Owned(Arc<Core<M>>),
}

impl<M: Manager> Deref for Home<'_, M> {
    type Target = Core<M>;
    #[inline]
    fn deref(&self) -> &Core<M> {
        match self {
            Home::Borrowed(core) => core,
            Home::Owned(core) => core,
        }
    }
}

/// A resource on loan from a [`Pool`](super::Pool).
///
/// Dereferences to the resource. Dropping the lease gives the resource back (recycled
/// inline or in the background, or destroyed if it reached `max_uses`/`max_lifetime` or
/// the pool was shut down); [`Lease::discard`] destroys it instead.
///
/// [`Pool::acquire`](super::Pool::acquire) returns a lease that borrows the pool, so a
/// round trip touches no reference count. [`Lease::into_owned`] turns it into a
/// `Lease<'static, M>` that can be sent anywhere and may outlive its pool: returned after
/// the pool's drop, the resource is destroyed.
///
/// ```
/// use sandpool::pool::{Lease, Manager, Pool, PoolConfig};
///
/// struct Numbers;
/// impl Manager for Numbers {
///     type Resource = u32;
///     type Error = std::io::Error;
///     fn create(&self) -> Result<u32, std::io::Error> {
///         Ok(7)
///     }
/// }
///
/// let pool = Pool::new(Numbers, PoolConfig::default())?;
/// let owned: Lease<'static, Numbers> = pool.acquire_owned()?;
/// let handle = std::thread::spawn(move || *owned + 1);
/// assert_eq!(handle.join().unwrap(), 8);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "dropping a lease at once returns the resource"]
pub struct Lease<'a, M: Manager> {
    idle: Option<Idle<M::Resource>>,
    home: Home<'a, M>,
}

impl<'a, M: Manager> Lease<'a, M> {
    #[inline]
    pub(crate) fn new(core: &'a Arc<Core<M>>, mut idle: Idle<M::Resource>) -> Self {
        idle.uses += 1;
        Lease { idle: Some(idle), home: Home::Borrowed(core) }
    }

    /// A lease holding the pool's shared state itself.
    pub(crate) fn owned(core: Arc<Core<M>>, mut idle: Idle<M::Resource>) -> Lease<'static, M> {
        idle.uses += 1;
        Lease { idle: Some(idle), home: Home::Owned(core) }
    }

    /// A lease of the same resource that holds the pool's shared state itself, so it can
    /// outlive the pool (and, being `'static`, be sent to any thread or stored anywhere).
    pub fn into_owned(mut this: Self) -> Lease<'static, M> {
        let home = match &this.home {
            Home::Borrowed(core) => Arc::clone(core),
            Home::Owned(core) => Arc::clone(core),
        };
        Lease { idle: this.idle.take(), home: Home::Owned(home) }
    }

    /// Destroys the resource instead of giving it back (for a resource the holder knows is
    /// broken). Counted in [`Stats::discarded`](super::Stats::discarded).
    pub fn discard(mut this: Self) {
        if let Some(idle) = this.idle.take() {
            let core = &*this.home;
            core.counters.discarded.fetch_add(1, Ordering::Relaxed);
            core.destroy(idle, None);
        }
    }

    /// Takes the resource out without releasing it (tests that drive a release by hand).
    #[cfg(test)]
    pub(crate) fn take_idle(&mut self) -> Option<Idle<M::Resource>> {
        self.idle.take()
    }

    /// How many leases (this one included) the resource has served.
    pub fn uses(this: &Self) -> u64 {
        this.idle.as_ref().map_or(0, |i| i.uses)
    }
}

impl<M: Manager> Deref for Lease<'_, M> {
    type Target = M::Resource;
    #[inline]
    fn deref(&self) -> &M::Resource {
        match &self.idle {
            Some(i) => &i.res,
            None => unreachable!("lease used after release"),
        }
    }
}

impl<M: Manager> DerefMut for Lease<'_, M> {
    #[inline]
    fn deref_mut(&mut self) -> &mut M::Resource {
        match &mut self.idle {
            Some(i) => &mut i.res,
            None => unreachable!("lease used after release"),
        }
    }
}

impl<M: Manager> Drop for Lease<'_, M> {
    #[inline]
    fn drop(&mut self) {
        if let Some(idle) = self.idle.take() {
            self.home.release(idle);
        }
    }
}

impl<M: Manager> fmt::Debug for Lease<'_, M>
where
    M::Resource: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("resource", &self.idle.as_ref().map(|i| &i.res))
            .field("uses", &Lease::uses(self))
            .field("owned", &matches!(self.home, Home::Owned(_)))
            .finish()
    }
}
