//! [`Core`]: the state every handle, shard and lease of one pool shares.

use super::config::{PoolConfig, RecycleMode};
use super::idle::Idle;
use super::magazine::Shard;
use super::manager::Manager;
use super::stats::{Counters, Reason};
use super::sync::{AtomicBool, AtomicU64, AtomicUsize, CachePadded, Ordering, Ring, fence};
use super::waiters::{Handoff, Waiters};

/// Values read on every acquire/release and written rarely: one cache line, shared
/// read-only by all CPUs in the steady state.
pub(crate) struct ReadMostly {
    /// The coarse clock: milliseconds, advanced by the sweeper (or `advance_epoch`).
    pub(crate) epoch: AtomicU64,
    /// Callers blocked in `acquire`.
    pub(crate) waiting: AtomicUsize,
    /// Set once by `close`.
    pub(crate) shutdown: AtomicBool,
}

/// Shared state of one pool.
pub(crate) struct Core<M: Manager> {
    pub(crate) hot: CachePadded<ReadMostly>,
    /// Live resources (the `max_size` reservation counter).
    pub(crate) live: CachePadded<AtomicUsize>,
    /// Resources being made.
    pub(crate) making: AtomicUsize,
    /// Milliseconds added by `advance_epoch`.
    pub(crate) skew: AtomicU64,
    pub(crate) manager: M,
    pub(crate) config: PoolConfig,
    /// The central idle ring.
    pub(crate) ring: Ring<Idle<M::Resource>>,
    /// Released resources waiting for a background recycle.
    pub(crate) recycle_q: Ring<Idle<M::Resource>>,
    pub(crate) waiters: Waiters<M::Resource>,
    pub(crate) counters: Counters,
    idle_enabled: bool,
    idle_age_ms: u64,
    lifetime_ms: u64,
    max_uses: u64,
}

fn ms(d: Option<std::time::Duration>) -> u64 {
    d.map_or(u64::MAX, |d| (d.as_millis() as u64).max(1))
}

impl<M: Manager> Core<M> {
    pub(crate) fn new(manager: M, config: PoolConfig, ring_cap: usize) -> Self {
        Core {
            hot: CachePadded::new(ReadMostly {
                epoch: AtomicU64::new(0),
                waiting: AtomicUsize::new(0),
                shutdown: AtomicBool::new(false),
            }),
            live: CachePadded::new(AtomicUsize::new(0)),
            making: AtomicUsize::new(0),
            skew: AtomicU64::new(0),
            ring: Ring::new(ring_cap.max(1)),
            recycle_q: Ring::new(config.max_size),
            waiters: Waiters::new(),
            counters: Counters::default(),
            idle_enabled: config.max_idle > 0,
            idle_age_ms: ms(config.max_idle_age),
            lifetime_ms: ms(config.max_lifetime),
            max_uses: config.max_uses.unwrap_or(u64::MAX),
            manager,
            config,
        }
    }

    /// The current epoch.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.hot.epoch.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn is_shut_down(&self) -> bool {
        self.hot.shutdown.load(Ordering::SeqCst)
    }

    /// Why an idle resource must not be handed out any more, if it must not.
    #[inline]
    pub(crate) fn stale(&self, idle: &Idle<M::Resource>, now: u64) -> Option<Reason> {
        if now.saturating_sub(idle.created) >= self.lifetime_ms {
            Some(Reason::Lifetime)
        } else if now.saturating_sub(idle.idle_since) >= self.idle_age_ms {
            Some(Reason::IdleAge)
        } else {
            None
        }
    }

    /// Whether a resource is older than `max_lifetime`.
    #[inline]
    pub(crate) fn past_lifetime(&self, idle: &Idle<M::Resource>) -> bool {
        self.now().saturating_sub(idle.created) >= self.lifetime_ms
    }

    /// Why a released resource must be destroyed rather than reused, if it must.
    #[inline]
    fn spent(&self, idle: &Idle<M::Resource>) -> Option<Reason> {
        if idle.uses >= self.max_uses {
            Some(Reason::MaxUses)
        } else if self.past_lifetime(idle) {
            Some(Reason::Lifetime)
        } else {
            None
        }
    }

    /// Reserves one unit of `max_size` (compare-and-swap on `live`).
    pub(crate) fn try_reserve(&self) -> bool {
        let max = self.config.max_size;
        let mut cur = self.live.load(Ordering::Relaxed);
        loop {
            if cur >= max {
                return false;
            }
            match self.live.compare_exchange_weak(cur, cur + 1, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(v) => cur = v,
            }
        }
    }

    /// Gives back one unit of `max_size` and lets a waiter have it.
    pub(crate) fn unreserve(&self, shard: Option<&Shard<M>>) {
        self.live.fetch_sub(1, Ordering::SeqCst);
        self.kick(shard);
    }

    /// Makes a resource under a reservation the caller holds. On failure the reservation
    /// is given back.
    pub(crate) fn create(&self, shard: Option<&Shard<M>>) -> Result<Idle<M::Resource>, M::Error> {
        self.making.fetch_add(1, Ordering::Relaxed);
        let r = self.manager.create();
        self.making.fetch_sub(1, Ordering::Relaxed);
        match r {
            Ok(res) => {
                self.counters.created.fetch_add(1, Ordering::Relaxed);
                let now = self.now();
                Ok(Idle { res, created: now, idle_since: now, uses: 0 })
            }
            Err(e) => {
                self.counters.create_failures.fetch_add(1, Ordering::Relaxed);
                self.unreserve(shard);
                Err(e)
            }
        }
    }

    /// Destroys a resource without waking anyone.
    fn destroy_quiet(&self, idle: Idle<M::Resource>) {
        self.manager.destroy(idle.res);
        self.counters.destroyed.fetch_add(1, Ordering::Relaxed);
        self.live.fetch_sub(1, Ordering::SeqCst);
    }

    /// Destroys a resource and lets a waiter have the freed capacity.
    pub(crate) fn destroy(&self, idle: Idle<M::Resource>, shard: Option<&Shard<M>>) {
        self.destroy_quiet(idle);
        self.kick(shard);
    }

    /// Destroys a resource for `reason`.
    pub(crate) fn evict(&self, idle: Idle<M::Resource>, reason: Reason, shard: Option<&Shard<M>>) {
        self.counters.evicted(reason);
        tracing::debug!(?reason, "sandpool: evicting a resource");
        self.destroy(idle, shard);
    }

    /// Pushes to the shard's magazine, else to the central ring.
    #[inline]
    fn push_idle(&self, shard: Option<&Shard<M>>, idle: Idle<M::Resource>) -> Result<(), Idle<M::Resource>> {
        if !self.idle_enabled {
            return Err(idle);
        }
        let idle = match shard.and_then(|s| s.magazine.as_ref()) {
            Some(m) => match m.push(idle) {
                Ok(()) => return Ok(()),
                Err(i) => i,
            },
            None => idle,
        };
        self.ring.push(idle)
    }

    /// After a push to idle: drain if the pool shut down meanwhile, wake a waiter if any.
    #[inline]
    pub(crate) fn after_push(&self, shard: Option<&Shard<M>>) {
        if self.hot.shutdown.load(Ordering::SeqCst) {
            self.drain(shard);
        } else if self.hot.waiting.load(Ordering::SeqCst) > 0 {
            self.kick(shard);
        }
    }

    /// Puts a resource back to idle without restamping it (sweeper re-insertion).
    #[inline]
    pub(crate) fn store_idle(&self, shard: Option<&Shard<M>>, idle: Idle<M::Resource>) {
        match self.push_idle(shard, idle) {
            Ok(()) => self.after_push(shard),
            Err(idle) => self.evict(idle, Reason::Surplus, shard),
        }
    }

    /// Puts a ready resource back to idle, stamped now.
    #[inline]
    pub(crate) fn put_idle(&self, shard: Option<&Shard<M>>, mut idle: Idle<M::Resource>) {
        idle.idle_since = self.now();
        self.store_idle(shard, idle);
    }

    /// A lease of `shard` ended normally.
    #[inline]
    pub(crate) fn release(&self, shard: &Shard<M>, mut idle: Idle<M::Resource>) {
        if self.hot.shutdown.load(Ordering::Relaxed) {
            self.destroy(idle, Some(shard));
            return;
        }
        if let Some(reason) = self.spent(&idle) {
            self.evict(idle, reason, Some(shard));
            return;
        }
        if self.config.recycle == RecycleMode::Background {
            self.counters.recycling.fetch_add(1, Ordering::Relaxed);
            match self.recycle_q.push(idle) {
                Ok(()) => {
                    if self.hot.shutdown.load(Ordering::SeqCst) {
                        self.drain(Some(shard));
                    }
                    return;
                }
                Err(i) => {
                    self.counters.recycling.fetch_sub(1, Ordering::Relaxed);
                    idle = i;
                }
            }
        }
        if let Some(idle) = self.recycle(idle, Some(shard)) {
            self.put_idle(Some(shard), idle);
        }
    }

    /// Recycles a released resource; destroys it (and counts it) on failure.
    #[inline]
    pub(crate) fn recycle(&self, mut idle: Idle<M::Resource>, shard: Option<&Shard<M>>) -> Option<Idle<M::Resource>> {
        match self.manager.recycle(&mut idle.res) {
            Ok(()) => Some(idle),
            Err(e) => {
                self.counters.recycle_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "sandpool: recycle failed; destroying the resource");
                self.destroy(idle, shard);
                None
            }
        }
    }

    /// Hands idle resources or free capacity to waiters while there are both.
    ///
    /// Called after something became available (a push to idle, a freed unit of
    /// `max_size`). The fence pairs with the one a waiter issues after registering: either
    /// the waiter sees what was made available, or we see the waiter. (A push to the ring
    /// is itself a `SeqCst` operation, so the hot release path checks `waiting` without
    /// calling this unless someone waits.)
    pub(crate) fn kick(&self, shard: Option<&Shard<M>>) {
        fence(Ordering::SeqCst);
        loop {
            if self.hot.waiting.load(Ordering::SeqCst) == 0 || self.is_shut_down() {
                return;
            }
            let gift = match shard.and_then(|s| s.pop()).or_else(|| self.ring.pop()) {
                Some(idle) => Handoff::Resource(idle),
                None if self.try_reserve() => Handoff::Capacity,
                None => return,
            };
            match self.waiters.pop_front(&self.hot.waiting) {
                Some(w) => w.deliver(gift),
                None => self.take_back(gift, shard),
            }
        }
    }

    /// Returns a gift no waiter took (no waking: the caller loops).
    pub(crate) fn take_back(&self, gift: Handoff<M::Resource>, shard: Option<&Shard<M>>) {
        match gift {
            Handoff::Resource(idle) => {
                if let Err(idle) = self.push_idle(shard, idle) {
                    self.counters.evicted(Reason::Surplus);
                    self.destroy_quiet(idle);
                }
                if self.is_shut_down() {
                    self.drain(shard);
                }
            }
            Handoff::Capacity => {
                self.live.fetch_sub(1, Ordering::SeqCst);
                fence(Ordering::SeqCst);
            }
            Handoff::ShutDown => {}
        }
    }

    /// Destroys everything idle in `shard`, the central ring and the recycle queue.
    pub(crate) fn drain(&self, shard: Option<&Shard<M>>) {
        if let Some(s) = shard {
            while let Some(idle) = s.pop() {
                self.destroy_quiet(idle);
            }
        }
        while let Some(idle) = self.ring.pop() {
            self.destroy_quiet(idle);
        }
        while let Some(idle) = self.recycle_q.pop() {
            self.counters.recycling.fetch_sub(1, Ordering::Relaxed);
            self.destroy_quiet(idle);
        }
    }

    /// Shuts the pool down: wakes every waiter with `ShutDown` and destroys all idle.
    pub(crate) fn close(&self, shards: &[super::sync::Arc<Shard<M>>]) {
        self.hot.shutdown.store(true, Ordering::SeqCst);
        for w in self.waiters.take_all(&self.hot.waiting) {
            w.deliver(Handoff::ShutDown);
        }
        for s in shards {
            self.drain(Some(s));
        }
        self.drain(None);
    }
}
