//! [`Shard`]: the contention-avoiding layer in front of the idle ring.
//!
//! Each thread maps to one shard (round robin over a thread number). A shard holds a small
//! magazine (a short bounded ring) of idle resources and the hot counters of the threads
//! that use it, on its own cache line. Release pushes to the releasing lease's shard and
//! acquire pops from the caller's shard first, so under load each thread mostly touches
//! only its own cache lines; the central ring and the other shards' magazines are the
//! fallback (stealing). Magazines are ordinary rings reachable from the pool, so the
//! sweeper sees, checks, evicts and drains them like the central ring.

use super::core::Core;
use super::idle::Idle;
use super::manager::Manager;
use super::sync::{Arc, AtomicU64, CachePadded, Ring};

/// Counters written on every acquire and release by the threads of one shard.
#[derive(Default)]
pub(crate) struct HotCounters {
    /// Acquires served from an idle resource without waiting.
    pub(crate) hits: AtomicU64,
}

/// One shard: a magazine plus hot counters. A lease keeps its shard alive (an `Arc` whose
/// count only this shard's threads touch), and the shard keeps the pool's core alive. The
/// pool holds one reference to each shard; every other strong reference is a lease, so
/// `Arc::strong_count - 1` is the number of this shard's leases (no extra counter).
pub(crate) struct Shard<M: Manager> {
    pub(crate) counters: CachePadded<HotCounters>,
    pub(crate) magazine: Option<Ring<Idle<M::Resource>>>,
    pub(crate) core: Arc<Core<M>>,
}

impl<M: Manager> Shard<M> {
    pub(crate) fn new(core: Arc<Core<M>>, magazine_cap: usize) -> Self {
        Shard {
            counters: CachePadded::new(HotCounters::default()),
            magazine: (magazine_cap > 0).then(|| Ring::new(magazine_cap)),
            core,
        }
    }

    /// Idle resources in this shard's magazine.
    pub(crate) fn idle_len(&self) -> usize {
        self.magazine.as_ref().map_or(0, |m| m.len())
    }

    /// Pops one idle resource from the magazine.
    #[inline]
    pub(crate) fn pop(&self) -> Option<Idle<M::Resource>> {
        self.magazine.as_ref().and_then(|m| m.pop())
    }
}
