//! [`Pool`]: the handle users acquire from.

use super::config::PoolConfig;
use super::core::Core;
use super::error::PoolError;
use super::idle::Idle;
use super::lease::Lease;
use super::magazine::Shard;
use super::manager::Manager;
use super::stats::Stats;
use super::sweeper::Sweeper;
use super::sync::{Arc, Ordering, fence, thread_index};
use super::waiters::{Handoff, Waiter};
use std::fmt;
use std::time::{Duration, Instant};

/// Most idle resources one shard's magazine holds.
const MAX_MAGAZINE: usize = 8;

/// A pool of resources made by a [`Manager`].
///
/// `Pool` is `Send + Sync` and not `Clone`: share it by reference or in an `Arc`. Dropping
/// it stops the sweeper, wakes blocked callers with [`PoolError::ShutDown`] (only possible
/// after [`close`](Pool::close), since `acquire` borrows the pool) and destroys every idle
/// resource; resources still leased are destroyed when their lease ends.
pub struct Pool<M: Manager> {
    pub(crate) core: Arc<Core<M>>,
    pub(crate) shards: Arc<Vec<Arc<Shard<M>>>>,
    sweeper: Option<Sweeper>,
}

impl<M: Manager> Pool<M> {
    /// Makes a pool and starts its sweeper (unless `sweep_interval` is `None`). Resources
    /// up to `min_idle` are made in the background by the sweeper, or by the first
    /// [`sweep_once`](Pool::sweep_once) when there is no sweeper.
    pub fn new(manager: M, config: PoolConfig) -> Result<Self, PoolError<M::Error>> {
        let nshards = config.effective_shards().max(1);
        let mag = (config.max_idle / (2 * nshards)).min(MAX_MAGAZINE);
        let ring_cap = config.max_idle - mag * nshards;
        let interval = config.sweep_interval;
        let core = Arc::new(Core::new(manager, config, ring_cap));
        let shards: Vec<Arc<Shard<M>>> = (0..nshards).map(|_| Arc::new(Shard::new(Arc::clone(&core), mag))).collect();
        let shards = Arc::new(shards);
        let sweeper = match interval {
            Some(every) => Sweeper::spawn(Arc::clone(&core), Arc::clone(&shards), every).map_err(PoolError::Spawn)?,
            None => None,
        };
        Ok(Pool { core, shards, sweeper })
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.core.config
    }

    /// The manager.
    pub fn manager(&self) -> &M {
        &self.core.manager
    }

    #[inline]
    fn my_shard(&self) -> &Arc<Shard<M>> {
        &self.shards[thread_index() & (self.shards.len() - 1)]
    }

    /// Takes an idle resource: own magazine, central ring, then the other magazines.
    #[inline]
    fn take_idle(&self, shard: &Arc<Shard<M>>) -> Option<Idle<M::Resource>> {
        loop {
            let idle = shard.pop().or_else(|| self.core.ring.pop()).or_else(|| self.steal(shard))?;
            let now = self.core.now();
            match self.core.stale(&idle, now) {
                None => return Some(idle),
                Some(reason) => self.core.evict(idle, reason, Some(shard)),
            }
        }
    }

    #[cold]
    fn steal(&self, shard: &Arc<Shard<M>>) -> Option<Idle<M::Resource>> {
        self.shards.iter().filter(|s| !Arc::ptr_eq(s, shard)).find_map(|s| s.pop())
    }

    /// Takes a resource, waiting up to `acquire_timeout` if the pool is at `max_size`.
    ///
    /// Served from idle when possible (no system call, no lock); otherwise makes one on
    /// this thread if below `max_size`; otherwise waits in FIFO order for a release.
    pub fn acquire(&self) -> Result<Lease<M>, PoolError<M::Error>> {
        self.acquire_inner(true, self.core.config.acquire_timeout)
    }

    /// Like [`acquire`](Pool::acquire) with its own timeout (`None`: wait forever).
    pub fn acquire_within(&self, timeout: Option<Duration>) -> Result<Lease<M>, PoolError<M::Error>> {
        self.acquire_inner(true, timeout)
    }

    /// Takes a resource without ever waiting: [`PoolError::Exhausted`] when none is idle,
    /// the pool is at `max_size`, or callers are already waiting (they go first).
    pub fn try_acquire(&self) -> Result<Lease<M>, PoolError<M::Error>> {
        self.acquire_inner(false, None)
    }

    #[inline]
    fn acquire_inner(&self, wait: bool, timeout: Option<Duration>) -> Result<Lease<M>, PoolError<M::Error>> {
        let shard = self.my_shard();
        let core = &*self.core;
        if core.hot.shutdown.load(Ordering::Relaxed) {
            return Err(PoolError::ShutDown);
        }
        let nobody_waits = core.hot.waiting.load(Ordering::Relaxed) == 0;
        if nobody_waits && let Some(idle) = self.take_idle(shard) {
            shard.counters.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Lease::new(Arc::clone(shard), idle));
        }
        self.slow_acquire(shard, nobody_waits, wait, timeout)
    }

    #[cold]
    fn slow_acquire(
        &self,
        shard: &Arc<Shard<M>>,
        nobody_waits: bool,
        wait: bool,
        timeout: Option<Duration>,
    ) -> Result<Lease<M>, PoolError<M::Error>> {
        let core = &*self.core;
        core.counters.misses.fetch_add(1, Ordering::Relaxed);
        if nobody_waits && core.try_reserve() {
            return self.make(shard);
        }
        if !wait {
            return Err(PoolError::Exhausted { waited: Duration::ZERO });
        }
        self.wait_for(shard, timeout)
    }

    /// Makes a resource under a reservation already held and leases it.
    fn make(&self, shard: &Arc<Shard<M>>) -> Result<Lease<M>, PoolError<M::Error>> {
        let idle = self.core.create(Some(shard)).map_err(PoolError::Create)?;
        Ok(self.lease_cold(shard, idle))
    }

    fn lease_cold(&self, shard: &Arc<Shard<M>>, idle: Idle<M::Resource>) -> Lease<M> {
        Lease::new(Arc::clone(shard), idle)
    }

    fn wait_for(&self, shard: &Arc<Shard<M>>, timeout: Option<Duration>) -> Result<Lease<M>, PoolError<M::Error>> {
        let core = &*self.core;
        let start = Instant::now();
        let deadline = timeout.map(|t| start + t);
        core.counters.waits.fetch_add(1, Ordering::Relaxed);
        let me = Arc::new(Waiter::new());
        if !core.waiters.register(&me, &core.hot.waiting, &core.hot.shutdown) {
            return Err(PoolError::ShutDown);
        }
        // Pairs with the SeqCst push + `waiting` load of a releaser: either it sees us or
        // we see what it pushed.
        fence(Ordering::SeqCst);
        let found = match self.take_idle(shard) {
            Some(idle) => Some(Handoff::Resource(idle)),
            None if core.try_reserve() => Some(Handoff::Capacity),
            None => None,
        };
        let handoff = match found {
            Some(gift) => {
                if !core.waiters.remove(&me, &core.hot.waiting) {
                    // Someone dequeued us and is handing us something: pass it on.
                    if let Some(other) = me.wait(None) {
                        self.give_back(shard, other);
                    }
                }
                gift
            }
            None => match me.wait(deadline) {
                Some(h) => h,
                None => {
                    if core.waiters.remove(&me, &core.hot.waiting) {
                        core.counters.wait_timeouts.fetch_add(1, Ordering::Relaxed);
                        return Err(PoolError::Exhausted { waited: start.elapsed() });
                    }
                    match me.wait(None) {
                        Some(h) => h,
                        None => return Err(PoolError::ShutDown),
                    }
                }
            },
        };
        match handoff {
            Handoff::Resource(idle) => Ok(self.lease_cold(shard, idle)),
            Handoff::Capacity => {
                if core.is_shut_down() {
                    core.unreserve(Some(shard));
                    return Err(PoolError::ShutDown);
                }
                self.make(shard)
            }
            Handoff::ShutDown => Err(PoolError::ShutDown),
        }
    }

    fn give_back(&self, shard: &Arc<Shard<M>>, h: Handoff<M::Resource>) {
        match h {
            Handoff::Resource(idle) => self.core.store_idle(Some(shard), idle),
            Handoff::Capacity => self.core.unreserve(Some(shard)),
            Handoff::ShutDown => {}
        }
    }

    /// A snapshot of gauges and counters.
    pub fn stats(&self) -> Stats {
        let core = &*self.core;
        let c = &core.counters;
        let (mut hits, mut leased, mut idle) = (0u64, 0usize, core.ring.len());
        for s in self.shards.iter() {
            hits += s.counters.hits.load(Ordering::Relaxed);
            leased += Arc::strong_count(s) - 1;
            idle += s.idle_len();
        }
        Stats {
            live: core.live.load(Ordering::SeqCst),
            idle,
            leased,
            being_made: core.making.load(Ordering::Relaxed),
            recycling: c.recycling.load(Ordering::Relaxed),
            waiting: core.hot.waiting.load(Ordering::Relaxed),
            hits,
            misses: c.misses.load(Ordering::Relaxed),
            waits: c.waits.load(Ordering::Relaxed),
            wait_timeouts: c.wait_timeouts.load(Ordering::Relaxed),
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
        self.core.close(&self.shards);
    }

    /// Whether [`close`](Pool::close) was called.
    pub fn is_closed(&self) -> bool {
        self.core.is_shut_down()
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
