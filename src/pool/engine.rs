//! [`Pool`]: the handle users acquire from.

use super::acquire_async::AcquireFuture;
use super::config::PoolConfig;
use super::core::Core;
use super::core::Queued;
use super::error::PoolError;
use super::lease::Lease;
use super::magazine::Local;
use super::manager::{Manager, PoolEvent};
use super::stats::Stats;
use super::sweeper::Sweeper;
use super::sync::{Arc, Ordering, init_barriers};
use super::waiters::Handoff;
use std::fmt;
use std::time::{Duration, Instant};

/// Most idle resources one thread's magazine holds.
const MAX_MAGAZINE: usize = 8;

/// A pool of resources made by a [`Manager`].
///
/// `Pool` is `Send + Sync` and not `Clone`: share it by reference or in an `Arc`. Dropping
/// it stops the sweeper, wakes blocked callers with [`PoolError::ShutDown`] (only possible
/// after [`close`](Pool::close), since `acquire` borrows the pool) and destroys every idle
/// resource; resources still on an owned lease ([`Lease::into_owned`]) are destroyed when
/// their lease ends.
pub struct Pool<M: Manager> {
    pub(crate) core: Arc<Core<M>>,
    sweeper: Option<Sweeper>,
}

impl<M: Manager> Pool<M> {
    /// Makes a pool and starts its sweeper (unless `sweep_interval` is `None`). Resources
    /// up to `min_idle` are made in the background by the sweeper, or by the first
    /// [`sweep_once`](Pool::sweep_once) when there is no sweeper.
    pub fn new(manager: M, config: PoolConfig) -> Result<Self, PoolError<M::Error>> {
        init_barriers();
        let (magazines, mag) = magazine_layout(config.effective_shards().max(1), config.max_idle);
        let ring_cap = config.max_idle - mag * magazines;
        let interval = config.sweep_interval;
        let core = Arc::new(Core::new(manager, config, ring_cap, magazines, mag));
        let sweeper = match interval {
            Some(every) => Sweeper::spawn(Arc::clone(&core), every).map_err(PoolError::Spawn)?,
            None => None,
        };
        Ok(Pool { core, sweeper })
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.core.config
    }

    /// The manager.
    pub fn manager(&self) -> &M {
        &self.core.manager
    }

    /// Takes a resource, waiting up to `acquire_timeout` if the pool is at `max_size`.
    ///
    /// Served from idle when possible (no system call, no lock); otherwise makes one on
    /// this thread if below `max_size`; otherwise waits in FIFO order for a release.
    ///
    /// The lease borrows the pool; [`Lease::into_owned`] (or
    /// [`acquire_owned`](Pool::acquire_owned)) makes one that can outlive it.
    pub fn acquire(&self) -> Result<Lease<'_, M>, PoolError<M::Error>> {
        self.acquire_inner(true, self.core.config.acquire_timeout)
    }

    /// Like [`acquire`](Pool::acquire), returning a lease that holds the pool's shared
    /// state alive and may be sent anywhere and outlive the pool (one reference count
    /// more per lease).
    pub fn acquire_owned(&self) -> Result<Lease<'static, M>, PoolError<M::Error>> {
        self.acquire().map(Lease::into_owned)
    }

    /// Like [`acquire`](Pool::acquire) with its own timeout (`None`: wait forever).
    pub fn acquire_within(&self, timeout: Option<Duration>) -> Result<Lease<'_, M>, PoolError<M::Error>> {
        self.acquire_inner(true, timeout)
    }

    /// Takes a resource without holding the thread while it waits: an executor-agnostic
    /// future, served like [`acquire`](Pool::acquire) (idle first, FIFO with blocked threads
    /// when it must wait) and safe to drop at any point (see [`AcquireFuture`]). It resolves
    /// to a [`Granted`](super::Granted) lease, or a unit of capacity whose resource the
    /// caller makes ([`Granted::into_lease`](super::Granted::into_lease) makes it on the
    /// spot). It applies no timeout: race it with the host's timer.
    ///
    /// ```
    /// use sandpool::pool::{Manager, Pool, PoolError};
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
    /// async fn handler(pool: &Pool<Numbers>) -> Result<u32, PoolError<std::io::Error>> {
    ///     let lease = pool.acquire_async().await?.into_lease()?;
    ///     Ok(*lease + 1)
    /// }
    /// ```
    pub fn acquire_async(&self) -> AcquireFuture<M> {
        AcquireFuture::new(Arc::clone(&self.core))
    }

    /// Takes a resource without ever waiting: [`PoolError::Exhausted`] when none is idle,
    /// the pool is at `max_size`, or callers are already waiting (they go first).
    pub fn try_acquire(&self) -> Result<Lease<'_, M>, PoolError<M::Error>> {
        self.acquire_inner(false, None)
    }

    #[inline]
    fn acquire_inner(&self, wait: bool, timeout: Option<Duration>) -> Result<Lease<'_, M>, PoolError<M::Error>> {
        let core = &*self.core;
        if core.hot.shutdown.load(Ordering::Relaxed) {
            return Err(PoolError::ShutDown);
        }
        let local = core.local();
        let nobody_waits = core.hot.waiting.load(Ordering::Relaxed) == 0;
        if nobody_waits && let Some(idle) = self.core.take_idle(local) {
            local.count_hit();
            return Ok(Lease::new(&self.core, idle));
        }
        self.slow_acquire(local, nobody_waits, wait, timeout)
    }

    #[cold]
    fn slow_acquire(
        &self,
        local: &Local<M::Resource>,
        nobody_waits: bool,
        wait: bool,
        timeout: Option<Duration>,
    ) -> Result<Lease<'_, M>, PoolError<M::Error>> {
        let core = &*self.core;
        core.counters.misses.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let lease = if nobody_waits && core.try_reserve() {
            self.make(local)
        } else if !wait {
            return Err(PoolError::Exhausted { waited: Duration::ZERO });
        } else {
            self.wait_for(local, timeout)
        }?;
        core.manager.observe(PoolEvent::Acquired { waited: start.elapsed() });
        Ok(lease)
    }

    /// Makes a resource under a reservation already held and leases it.
    fn make(&self, local: &Local<M::Resource>) -> Result<Lease<'_, M>, PoolError<M::Error>> {
        let idle = self.core.create(Some(local)).map_err(PoolError::Create)?;
        Ok(Lease::new(&self.core, idle))
    }

    fn wait_for(
        &self,
        local: &Local<M::Resource>,
        timeout: Option<Duration>,
    ) -> Result<Lease<'_, M>, PoolError<M::Error>> {
        let core = &*self.core;
        let start = Instant::now();
        let deadline = timeout.map(|t| start + t);
        let me = match core.queue_up(local) {
            None => return Err(PoolError::ShutDown),
            Some(Queued::Found(gift)) => return self.handed(local, gift),
            Some(Queued::Waiting(me)) => me,
        };
        let handoff = match me.wait(deadline) {
            Some(h) => h,
            None => {
                if core.waiters.remove(&me, &core.hot.waiting) {
                    core.counters.wait_timeouts.fetch_add(1, Ordering::Relaxed);
                    return Err(PoolError::Exhausted { waited: start.elapsed() });
                }
                // Taken off the queue just now: what is on its way is ours.
                match me.wait(None) {
                    Some(h) => h,
                    None => return Err(PoolError::ShutDown),
                }
            }
        };
        self.handed(local, handoff)
    }

    /// A lease from what a waiter was handed.
    fn handed(
        &self,
        local: &Local<M::Resource>,
        handoff: Handoff<M::Resource>,
    ) -> Result<Lease<'_, M>, PoolError<M::Error>> {
        let core = &*self.core;
        match handoff {
            Handoff::Resource(idle) => Ok(Lease::new(&self.core, idle)),
            Handoff::Capacity => {
                if core.is_shut_down() {
                    core.unreserve(Some(local));
                    return Err(PoolError::ShutDown);
                }
                self.make(local)
            }
            Handoff::ShutDown => Err(PoolError::ShutDown),
        }
    }

    /// A snapshot of gauges and counters.
    pub fn stats(&self) -> Stats {
        let core = &*self.core;
        let c = &core.counters;
        let hits = core.shards.with(|shards| shards.iter().map(|s| s.line.hits.load(Ordering::Relaxed)).sum::<u64>());
        let idle = core.idle_len();
        let being_made = core.making.load(Ordering::Relaxed);
        let recycling = c.recycling.load(Ordering::Relaxed);
        let live = core.live.load(Ordering::SeqCst);
        Stats {
            live,
            idle,
            leased: live.saturating_sub(idle + being_made + recycling),
            being_made,
            recycling,
            waiting: core.hot.waiting.load(Ordering::Relaxed),
            hits,
            misses: c.misses.load(Ordering::Relaxed),
            waits: c.waits.load(Ordering::Relaxed),
            wait_timeouts: c.wait_timeouts.load(Ordering::Relaxed),
            acquires_cancelled: c.acquires_cancelled.load(Ordering::Relaxed),
            created: c.created.load(Ordering::Relaxed),
            create_failures: c.create_failures.load(Ordering::Relaxed),
            destroyed: c.destroyed.load(Ordering::Relaxed),
            discarded: c.discarded.load(Ordering::Relaxed),
            recycle_failures: c.recycle_failures.load(Ordering::Relaxed),
            evictions: c.evictions(),
        }
    }

    /// Moves the pool's clock forward by `by` (for tests and models; the sweeper moves it
    /// with real time).
    pub fn advance_epoch(&self, by: Duration) {
        let ms = by.as_millis() as u64;
        self.core.skew.fetch_add(ms, Ordering::Relaxed);
        self.core.hot.epoch.fetch_add(ms, Ordering::Relaxed);
    }

    /// The pool's clock, in milliseconds.
    pub fn epoch(&self) -> u64 {
        self.core.now()
    }

    /// Shuts the pool down: later acquires fail with [`PoolError::ShutDown`], blocked ones
    /// are woken with it, idle resources are destroyed now and leased ones when returned.
    pub fn close(&self) {
        self.core.close();
    }

    /// Whether [`close`](Pool::close) was called.
    pub fn is_closed(&self) -> bool {
        self.core.is_shut_down()
    }
}

/// How many magazines and how many entries each: up to half of `max_idle` goes to
/// magazines, the rest stays in the central ring. With few idle resources for many shards,
/// fewer shards get a magazine (of one entry) rather than none, so the first threads still
/// get back what they released last.
fn magazine_layout(shards: usize, max_idle: usize) -> (usize, usize) {
    match (max_idle / (2 * shards)).min(MAX_MAGAZINE) {
        0 => (max_idle / 2, 1),
        per_shard => (shards, per_shard),
    }
}

impl<M: Manager> Drop for Pool<M> {
    fn drop(&mut self) {
        if let Some(s) = self.sweeper.take() {
            s.stop();
        }
        self.close();
    }
}

impl<M: Manager> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("config", &self.core.config).field("stats", &self.stats()).finish()
    }
}
