//! Counters and the [`Stats`] snapshot.

use super::sync::{AtomicU64, AtomicUsize, CachePadded, Ordering};

/// Why a resource was evicted (destroyed by the pool rather than by the user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    IdleAge,
    Lifetime,
    MaxUses,
    CheckFailed,
    Surplus,
}

/// Evictions by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evictions {
    /// Idle for longer than `max_idle_age`.
    pub idle_age: u64,
    /// Older than `max_lifetime`.
    pub lifetime: u64,
    /// Leased `max_uses` times.
    pub max_uses: u64,
    /// [`Manager::check`](super::Manager::check) failed.
    pub check_failed: u64,
    /// Released while `max_idle` resources were already idle.
    pub surplus: u64,
}

impl Evictions {
    /// Sum over all reasons.
    pub fn total(&self) -> u64 {
        self.idle_age + self.lifetime + self.max_uses + self.check_failed + self.surplus
    }
}

/// A snapshot of the pool's state and counters ([`Pool::stats`](super::Pool::stats)).
///
/// Gauges (`live`, `idle`, `leased`, ...) are read one by one without stopping the pool:
/// under load they are each accurate but not mutually consistent; at a quiescent point they
/// add up (`live == idle + leased + being_made + recycling`, `live == created - destroyed`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Live resources: idle + leased + being made, recycled or destroyed.
    pub live: usize,
    /// Idle resources ready to hand out.
    pub idle: usize,
    /// Resources out on a lease.
    pub leased: usize,
    /// Resources being made.
    pub being_made: usize,
    /// Released resources waiting for a background recycle.
    pub recycling: usize,
    /// Callers blocked in `acquire`.
    pub waiting: usize,
    /// Acquires served at once from an idle resource.
    pub hits: u64,
    /// Acquires that found no idle resource (then made one, waited, or failed).
    pub misses: u64,
    /// Acquires that had to wait.
    pub waits: u64,
    /// Waits that timed out.
    pub wait_timeouts: u64,
    /// Asynchronous acquires given up before they were served: their future dropped while it
    /// waited (a timeout is counted in `wait_timeouts` instead).
    pub acquires_cancelled: u64,
    /// Resources made.
    pub created: u64,
    /// Failed creates (on the caller's path or in the sweeper).
    pub create_failures: u64,
    /// Resources destroyed, for any reason.
    pub destroyed: u64,
    /// Leases discarded with [`Lease::discard`](super::Lease::discard).
    pub discarded: u64,
    /// Failed recycles (the resource was destroyed).
    pub recycle_failures: u64,
    /// Evictions by reason.
    pub evictions: Evictions,
}

/// Counters touched only off the hot path, each on its own cache line where written often.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) misses: CachePadded<AtomicU64>,
    pub(crate) waits: AtomicU64,
    pub(crate) wait_timeouts: AtomicU64,
    pub(crate) acquires_cancelled: AtomicU64,
    pub(crate) created: CachePadded<AtomicU64>,
    pub(crate) create_failures: AtomicU64,
    pub(crate) destroyed: CachePadded<AtomicU64>,
    pub(crate) discarded: AtomicU64,
    pub(crate) recycle_failures: AtomicU64,
    pub(crate) recycling: AtomicUsize,
    pub(crate) ev_idle_age: AtomicU64,
    pub(crate) ev_lifetime: AtomicU64,
    pub(crate) ev_max_uses: AtomicU64,
    pub(crate) ev_check_failed: AtomicU64,
    pub(crate) ev_surplus: AtomicU64,
}

impl Counters {
    pub(crate) fn evicted(&self, reason: Reason) {
        let c = match reason {
            Reason::IdleAge => &self.ev_idle_age,
            Reason::Lifetime => &self.ev_lifetime,
            Reason::MaxUses => &self.ev_max_uses,
            Reason::CheckFailed => &self.ev_check_failed,
            Reason::Surplus => &self.ev_surplus,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn evictions(&self) -> Evictions {
        Evictions {
            idle_age: self.ev_idle_age.load(Ordering::Relaxed),
            lifetime: self.ev_lifetime.load(Ordering::Relaxed),
            max_uses: self.ev_max_uses.load(Ordering::Relaxed),
            check_failed: self.ev_check_failed.load(Ordering::Relaxed),
            surplus: self.ev_surplus.load(Ordering::Relaxed),
        }
    }
}
