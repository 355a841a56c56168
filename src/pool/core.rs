//! [`Core`]: the state every handle, shard and lease of one pool shares.

use super::config::{PoolConfig, RecycleMode};
use super::idle::Idle;
use super::magazine::{Local, Shard};
use super::manager::{Manager, PoolEvent};
use super::stats::{Counters, Reason};
use super::sync::{
    Arc, AtomicBool, AtomicU64, AtomicUsize, CachePadded, Ordering, PerThread, Registry, Ring, fence, heavy_barrier,
    light_barrier,
};
use super::waiters::{Handoff, Waiter, Waiters};

/// Where [`Core::queue_up`] left the caller.
pub(crate) enum Queued<R> {
    /// Found something after all (and left the queue).
    Found(Handoff<R>),
    /// Queued: wait on it.
    Waiting(Arc<Waiter<R>>),
}

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
    /// Each thread's magazine and hit counter.
    locals: PerThread<Local<M::Resource>>,
    /// The shards of every thread's `Local`, for stealing, sweeping and stats.
    pub(crate) shards: Registry<Shard<M::Resource>>,
    idle_enabled: bool,
    idle_age_ms: u64,
    lifetime_ms: u64,
    max_uses: u64,
}

fn ms(d: Option<std::time::Duration>) -> u64 {
    d.map_or(u64::MAX, |d| (d.as_millis() as u64).max(1))
}

impl<M: Manager> Core<M> {
    pub(crate) fn new(manager: M, config: PoolConfig, ring_cap: usize, magazines: usize, magazine_cap: usize) -> Self {
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
            locals: PerThread::new(),
            shards: {
                let shards = Registry::new();
                for _ in 0..if magazine_cap > 0 { magazines } else { 0 } {
                    shards.push(Arc::new(Shard::with_magazine(magazine_cap)));
                }
                shards
            },
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
    pub(crate) fn unreserve(&self, local: Option<&Local<M::Resource>>) {
        self.live.fetch_sub(1, Ordering::SeqCst);
        self.kick(local);
    }

    /// Makes a resource under a reservation the caller holds. On failure the reservation
    /// is given back.
    pub(crate) fn create(&self, local: Option<&Local<M::Resource>>) -> Result<Idle<M::Resource>, M::Error> {
        self.making.fetch_add(1, Ordering::Relaxed);
        let start = std::time::Instant::now();
        let r = self.manager.create();
        self.making.fetch_sub(1, Ordering::Relaxed);
        match r {
            Ok(res) => {
                self.counters.created.fetch_add(1, Ordering::Relaxed);
                self.manager.observe(PoolEvent::Created { took: start.elapsed() });
                let now = self.now();
                Ok(Idle::new(res, now))
            }
            Err(e) => {
                self.counters.create_failures.fetch_add(1, Ordering::Relaxed);
                self.unreserve(local);
                Err(e)
            }
        }
    }

    /// Destroys a resource without waking anyone.
    fn destroy_quiet(&self, idle: Idle<M::Resource>) {
        self.manager.destroy(idle.into_resource());
        self.counters.destroyed.fetch_add(1, Ordering::Relaxed);
        self.live.fetch_sub(1, Ordering::SeqCst);
    }

    /// Destroys a resource and lets a waiter have the freed capacity.
    pub(crate) fn destroy(&self, idle: Idle<M::Resource>, local: Option<&Local<M::Resource>>) {
        self.destroy_quiet(idle);
        self.kick(local);
    }

    /// Destroys a resource for `reason`.
    pub(crate) fn evict(&self, idle: Idle<M::Resource>, reason: Reason, local: Option<&Local<M::Resource>>) {
        self.counters.evicted(reason);
        tracing::debug!(?reason, "sandpool: evicting a resource");
        self.destroy(idle, local);
    }

    /// This thread's `Local`, made on first use (a magazine if one is left).
    #[inline]
    pub(crate) fn local(&self) -> &Local<M::Resource> {
        self.locals.get_or(|| self.new_local())
    }

    #[cold]
    fn new_local(&self) -> Local<M::Resource> {
        if let Some(local) = self.shards.with(|shards| shards.iter().find_map(Shard::claim)) {
            return local;
        }
        let local = Local::without_magazine();
        self.shards.push(Arc::clone(&local.shard));
        local
    }

    /// Takes an idle resource from anywhere: `local`'s magazine, the central ring, then
    /// the other shards (stealing their oldest). Does not check staleness.
    #[inline]
    pub(crate) fn pop_any(&self, local: Option<&Local<M::Resource>>) -> Option<Idle<M::Resource>> {
        local.and_then(Local::pop).or_else(|| self.ring.pop()).or_else(|| self.steal(local))
    }

    /// Takes a fresh idle resource (own magazine, central ring, then stealing), evicting
    /// stale ones on the way.
    #[inline]
    pub(crate) fn take_idle(&self, local: &Local<M::Resource>) -> Option<Idle<M::Resource>> {
        loop {
            let idle = self.pop_any(Some(local))?;
            match self.stale(&idle, self.now()) {
                None => return Some(idle),
                Some(reason) => self.evict(idle, reason, Some(local)),
            }
        }
    }

    /// Queues the caller as a waiter, then looks once more for an idle resource or a unit of
    /// capacity (a release that came in between may not have seen it queued); `None` if the
    /// pool is shut down.
    pub(crate) fn queue_up(&self, local: &Local<M::Resource>) -> Option<Queued<M::Resource>> {
        self.counters.waits.fetch_add(1, Ordering::Relaxed);
        let me = Arc::new(Waiter::new());
        if !self.waiters.register(&me, &self.hot.waiting, &self.hot.shutdown) {
            return None;
        }
        // Pairs with the light barrier between a releaser's push and its `waiting` load:
        // either it sees us or we see what it pushed.
        heavy_barrier();
        let found = match self.take_idle(local) {
            Some(idle) => Some(Handoff::Resource(idle)),
            None if self.try_reserve() => Some(Handoff::Capacity),
            None => None,
        };
        Some(match found {
            Some(gift) => {
                self.leave_queue(local, &me);
                Queued::Found(gift)
            }
            None => Queued::Waiting(me),
        })
    }

    /// Takes a waiter that will not wait any more off the queue, passing on anything handed
    /// to it meanwhile (or leaving it to its deliverer to pass on). Returns whether it was
    /// still queued (nothing was on its way to it).
    pub(crate) fn leave_queue(&self, local: &Local<M::Resource>, me: &Arc<Waiter<M::Resource>>) -> bool {
        if self.waiters.remove(me, &self.hot.waiting) {
            return true;
        }
        if let Some(h) = me.abandon() {
            self.give_back(local, h);
        }
        false
    }

    /// Passes on what a waiter was handed but will not use.
    pub(crate) fn give_back(&self, local: &Local<M::Resource>, h: Handoff<M::Resource>) {
        match h {
            Handoff::Resource(idle) => self.store_idle(Some(local), idle),
            Handoff::Capacity => self.unreserve(Some(local)),
            Handoff::ShutDown => {}
        }
    }

    #[cold]
    fn steal(&self, local: Option<&Local<M::Resource>>) -> Option<Idle<M::Resource>> {
        self.shards.with(|shards| {
            shards.iter().filter(|s| local.is_none_or(|l| !Arc::ptr_eq(s, &l.shard))).find_map(|s| s.steal())
        })
    }

    /// Idle resources in the ring and every shard.
    pub(crate) fn idle_len(&self) -> usize {
        self.ring.len() + self.shards.with(|shards| shards.iter().map(|s| s.idle_len()).sum::<usize>())
    }

    /// Pushes to `local`'s magazine, else to the central ring, else to any shard's inbox with
    /// room: idle capacity left in magazines no thread claimed (a host with few threads, an
    /// async runtime's workers) still holds resources, up to `max_idle` in all.
    #[inline]
    fn push_idle(&self, local: Option<&Local<M::Resource>>, idle: Idle<M::Resource>) -> Result<(), Idle<M::Resource>> {
        if !self.idle_enabled {
            return Err(idle);
        }
        let idle = match local {
            Some(l) => match l.push(idle) {
                Ok(()) => return Ok(()),
                Err(i) => i,
            },
            None => idle,
        };
        match self.ring.push(idle) {
            Ok(()) => Ok(()),
            Err(idle) => self.push_any_inbox(idle),
        }
    }

    #[cold]
    fn push_any_inbox(&self, idle: Idle<M::Resource>) -> Result<(), Idle<M::Resource>> {
        self.shards.with(|shards| {
            let mut idle = idle;
            for s in shards {
                match s.push_inbox(idle) {
                    Ok(()) => return Ok(()),
                    Err(i) => idle = i,
                }
            }
            Err(idle)
        })
    }

    /// After a push to idle: drain if the pool shut down meanwhile, wake a waiter if any.
    ///
    /// The light barrier pairs with the heavy one in `close` and in a waiter after it
    /// registers: either they see what was pushed, or this sees their flag.
    #[inline]
    pub(crate) fn after_push(&self, local: Option<&Local<M::Resource>>) {
        light_barrier();
        if self.hot.shutdown.load(Ordering::Relaxed) {
            self.drain();
        } else if self.hot.waiting.load(Ordering::Relaxed) > 0 {
            self.kick(local);
        }
    }

    /// Puts a resource back to idle without restamping it (sweeper re-insertion).
    #[inline]
    pub(crate) fn store_idle(&self, local: Option<&Local<M::Resource>>, idle: Idle<M::Resource>) {
        match self.push_idle(local, idle) {
            Ok(()) => self.after_push(local),
            Err(idle) => self.evict(idle, Reason::Surplus, local),
        }
    }

    /// Puts a ready resource back to idle, stamped now.
    #[inline]
    pub(crate) fn put_idle(&self, local: Option<&Local<M::Resource>>, mut idle: Idle<M::Resource>) {
        idle.idle_since = self.now();
        self.store_idle(local, idle);
    }

    /// A lease ended normally (on this thread).
    #[inline]
    pub(crate) fn release(&self, mut idle: Idle<M::Resource>) {
        if self.hot.shutdown.load(Ordering::Relaxed) {
            self.destroy(idle, None);
            return;
        }
        if let Some(reason) = self.spent(&idle) {
            self.evict(idle, reason, None);
            return;
        }
        if self.config.recycle == RecycleMode::Background {
            self.counters.recycling.fetch_add(1, Ordering::Relaxed);
            match self.recycle_q.push(idle) {
                Ok(()) => {
                    if self.hot.shutdown.load(Ordering::SeqCst) {
                        self.drain();
                    }
                    return;
                }
                Err(i) => {
                    self.counters.recycling.fetch_sub(1, Ordering::Relaxed);
                    idle = i;
                }
            }
        }
        let local = self.local();
        if let Some(idle) = self.recycle(idle, Some(local)) {
            self.put_idle(Some(local), idle);
        }
    }

    /// Recycles a released resource; destroys it (and counts it) on failure.
    #[inline]
    pub(crate) fn recycle(
        &self,
        mut idle: Idle<M::Resource>,
        local: Option<&Local<M::Resource>>,
    ) -> Option<Idle<M::Resource>> {
        match self.manager.recycle(&mut idle.res) {
            Ok(()) => Some(idle),
            Err(e) => {
                self.counters.recycle_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "sandpool: recycle failed; destroying the resource");
                self.destroy(idle, local);
                None
            }
        }
    }

    /// Hands idle resources or free capacity to waiters while there are both.
    ///
    /// Called after something became available (a push to idle, a freed unit of
    /// `max_size`). The fence pairs with the barrier a waiter issues after registering:
    /// either the waiter sees what was made available, or we see the waiter.
    pub(crate) fn kick(&self, local: Option<&Local<M::Resource>>) {
        fence(Ordering::SeqCst);
        loop {
            if self.hot.waiting.load(Ordering::SeqCst) == 0 || self.is_shut_down() {
                return;
            }
            let gift = match self.pop_any(local) {
                Some(idle) => Handoff::Resource(idle),
                None if self.try_reserve() => Handoff::Capacity,
                None => return,
            };
            match self.waiters.pop_front(&self.hot.waiting) {
                Some(w) => {
                    // A waiter that gave up after leaving the queue: offer it to the next.
                    if let Err(gift) = w.deliver(gift) {
                        self.take_back(gift, local);
                    }
                }
                None => self.take_back(gift, local),
            }
        }
    }

    /// Returns a gift no waiter took (no waking: the caller loops).
    pub(crate) fn take_back(&self, gift: Handoff<M::Resource>, local: Option<&Local<M::Resource>>) {
        match gift {
            Handoff::Resource(idle) => {
                if let Err(idle) = self.push_idle(local, idle) {
                    self.counters.evicted(Reason::Surplus);
                    self.destroy_quiet(idle);
                }
                if self.is_shut_down() {
                    self.drain();
                }
            }
            Handoff::Capacity => {
                self.live.fetch_sub(1, Ordering::SeqCst);
                fence(Ordering::SeqCst);
            }
            Handoff::ShutDown => {}
        }
    }

    /// Destroys everything idle: every shard's magazine and inbox (stolen, the caller's own
    /// too), the central ring and the recycle queue. Runs on shutdown paths only.
    pub(crate) fn drain(&self) {
        self.shards.with(|shards| {
            for s in shards {
                while let Some(idle) = s.steal() {
                    self.destroy_quiet(idle);
                }
            }
        });
        while let Some(idle) = self.ring.pop() {
            self.destroy_quiet(idle);
        }
        while let Some(idle) = self.recycle_q.pop() {
            self.counters.recycling.fetch_sub(1, Ordering::Relaxed);
            self.destroy_quiet(idle);
        }
    }

    /// Shuts the pool down: wakes every waiter with `ShutDown` and destroys all idle
    /// (every shard's magazine and inbox too; a release racing this sees `shutdown` after
    /// its push and drains its own magazine).
    pub(crate) fn close(&self) {
        self.hot.shutdown.store(true, Ordering::SeqCst);
        heavy_barrier();
        for w in self.waiters.take_all(&self.hot.waiting) {
            // One that gave up needs no word.
            let _ = w.deliver(Handoff::ShutDown);
        }
        self.drain();
    }
}
