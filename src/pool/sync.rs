//! The engine's synchronisation facade.
//!
//! Every atomic, lock, condition variable, thread, the idle ring, the magazines' deques,
//! the per-thread storage and the release/waiter barriers the engine uses come from here,
//! so that building with `RUSTFLAGS="--cfg loom"` swaps them all for
//! [loom](https://docs.rs/loom)'s model-checked versions at once. Under `cfg(loom)`:
//! - the ring is [`Ring`], a loom-visible stand-in for `crossbeam`'s `ArrayQueue` with the
//!   same interface and the same sequentially consistent points (a `SeqCst` operation when
//!   a value is pushed, a `SeqCst` fence before a pop reports the ring empty);
//! - the magazine deque publishes a push with a bare `Release` store, as crossbeam's does,
//!   so the models check that a release's barrier really pairs with a waiter's;
//! - both barriers are `SeqCst` fences (loom cannot model `membarrier`; the real light
//!   barrier is a compiler fence that `membarrier` upgrades, see [`light_barrier`]);
//! - per-thread storage is one slot per loom thread.

#[cfg(not(loom))]
pub(crate) use std::sync::{
    Arc, Condvar, Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence},
};

#[cfg(loom)]
pub(crate) use loom::sync::{
    Arc, Condvar, Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence},
};

pub(crate) use crossbeam::utils::CachePadded;

/// The idle ring: a bounded multi-producer multi-consumer queue.
#[cfg(not(loom))]
pub(crate) type Ring<T> = crossbeam::queue::ArrayQueue<T>;

/// Locks a mutex, ignoring poisoning (the engine never leaves its state half-updated
/// across a panic point while holding a lock).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A small stable number for the current (loom) thread, deterministic per execution.
#[cfg(loom)]
pub(crate) fn thread_index() -> usize {
    // loom's ThreadId hashes its execution too; its Debug form, `ThreadId(N)`, carries
    // only the per-execution number, which is what keeps the model deterministic.
    let s = format!("{:?}", loom::thread::current().id());
    s.trim_start_matches("ThreadId(").trim_end_matches(')').parse().unwrap_or(0)
}

#[cfg(loom)]
pub(crate) use loom_ring::Ring;

#[cfg(loom)]
mod loom_ring {
    use super::{Mutex, Ordering, fence, lock};
    use std::collections::VecDeque;

    /// Loom stand-in for `crossbeam::queue::ArrayQueue`: same interface, a loom mutex
    /// inside, and the same `SeqCst` points as the real ring.
    pub(crate) struct Ring<T> {
        cap: usize,
        q: Mutex<VecDeque<T>>,
    }

    impl<T> Ring<T> {
        pub(crate) fn new(cap: usize) -> Self {
            assert!(cap > 0, "capacity must be non-zero");
            Ring { cap, q: Mutex::new(VecDeque::with_capacity(cap)) }
        }
        pub(crate) fn push(&self, value: T) -> Result<(), T> {
            let r = {
                let mut q = lock(&self.q);
                if q.len() >= self.cap {
                    Err(value)
                } else {
                    q.push_back(value);
                    Ok(())
                }
            };
            fence(Ordering::SeqCst);
            r
        }
        pub(crate) fn pop(&self) -> Option<T> {
            fence(Ordering::SeqCst);
            lock(&self.q).pop_front()
        }
        pub(crate) fn len(&self) -> usize {
            lock(&self.q).len()
        }
        #[allow(dead_code)]
        pub(crate) fn is_empty(&self) -> bool {
            self.len() == 0
        }
        #[allow(dead_code)]
        pub(crate) fn capacity(&self) -> usize {
            self.cap
        }
    }
}

/// A thread's own magazine (owner end: LIFO push and pop) and its shared end (steal).
#[cfg(not(loom))]
pub(crate) use crossbeam::deque::{Steal, Stealer, Worker};

/// Per-pool, per-thread storage: each thread sees only its own value.
#[cfg(not(loom))]
pub(crate) use thread_local::ThreadLocal as PerThread;

/// An append-only list of shared items that readers walk without locking.
#[cfg(not(loom))]
pub(crate) struct Registry<T>(arc_swap::ArcSwap<Vec<Arc<T>>>);

#[cfg(not(loom))]
impl<T> Registry<T> {
    pub(crate) fn new() -> Self {
        Registry(arc_swap::ArcSwap::from_pointee(Vec::new()))
    }
    /// Appends `item` (copy on write; rare: once per thread that uses the pool).
    pub(crate) fn push(&self, item: Arc<T>) {
        self.0.rcu(|v| {
            let mut v = Vec::clone(v);
            v.push(Arc::clone(&item));
            v
        });
    }
    /// Calls `f` with the current list.
    pub(crate) fn with<U>(&self, f: impl FnOnce(&[Arc<T>]) -> U) -> U {
        f(&self.0.load())
    }
}

/// Whether [`light_barrier`] may be a compiler fence (the process is registered for
/// expedited `membarrier(2)`, so [`heavy_barrier`] can make it a real one).
#[cfg(not(loom))]
static ASYMMETRIC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Registers the process for `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` once; where
/// that is unavailable (an old kernel, a seccomp filter), both barriers stay full fences.
#[cfg(not(loom))]
pub(crate) fn init_barriers() {
    use rustix::thread::{MembarrierCommand, MembarrierQuery, membarrier, membarrier_query};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let supported = membarrier_query().contains(MembarrierQuery::PRIVATE_EXPEDITED);
        if supported && membarrier(MembarrierCommand::RegisterPrivateExpedited).is_ok() {
            ASYMMETRIC.store(true, Ordering::SeqCst);
        } else {
            tracing::debug!("sandpool: expedited membarrier unavailable; releases use a full fence");
        }
    });
}

/// The fast side of an asymmetric store-load barrier, between a release's push and its
/// reads of `waiting`/`shutdown`. Pairs with [`heavy_barrier`]: for each pair, either
/// this side's store is visible after the heavy barrier, or this side's later loads see
/// what the heavy side stored before it. With `membarrier` this costs nothing at run time.
#[cfg(not(loom))]
#[inline]
pub(crate) fn light_barrier() {
    if ASYMMETRIC.load(Ordering::Relaxed) {
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The slow side (a waiter after registering, `close` after setting `shutdown`):
/// `membarrier(2)` runs a full barrier on every CPU running a thread of this process,
/// which turns the other side's compiler fence into a memory barrier.
#[cfg(not(loom))]
pub(crate) fn heavy_barrier() {
    use rustix::thread::{MembarrierCommand, membarrier};
    fence(Ordering::SeqCst);
    if ASYMMETRIC.load(Ordering::Relaxed)
        && let Err(e) = membarrier(MembarrierCommand::PrivateExpedited)
    {
        // Cannot happen once registered; say so loudly rather than hang a waiter quietly.
        tracing::error!(error = %e, "sandpool: membarrier failed after registration");
    }
}

#[cfg(loom)]
pub(crate) fn init_barriers() {}

/// Under loom both sides are `SeqCst` fences (loom cannot model `membarrier`).
#[cfg(loom)]
pub(crate) fn light_barrier() {
    fence(Ordering::SeqCst);
}

/// Under loom both sides are `SeqCst` fences.
#[cfg(loom)]
pub(crate) fn heavy_barrier() {
    fence(Ordering::SeqCst);
}

#[cfg(loom)]
pub(crate) use loom_magazine::{PerThread, Registry, Steal, Stealer, Worker};

#[cfg(loom)]
mod loom_magazine {
    use super::{Arc, AtomicUsize, Mutex, Ordering, fence, lock, thread_index};

    /// Most entries a loom magazine holds (models use a handful).
    const SLOTS: usize = 16;

    /// The deque behind the loom `Worker`/`Stealer`: entries in slots, visibility decided
    /// by the `front`/`back` atomics exactly as in Chase-Lev. A push publishes with a
    /// `Release` store and no fence, as crossbeam's does, so a stealer may see a stale
    /// `back`: the store-load barrier a release needs after its push is really checked.
    /// Pops and steals take one mutex between them (the last-entry race is crossbeam's
    /// business, not the engine's), never the push.
    struct Deque<T> {
        slots: Vec<Mutex<Option<T>>>,
        front: AtomicUsize,
        back: AtomicUsize,
        take: Mutex<()>,
    }

    /// Loom stand-in for `crossbeam::deque::Worker` (LIFO).
    pub(crate) struct Worker<T> {
        d: Arc<Deque<T>>,
    }
    /// Loom stand-in for `crossbeam::deque::Stealer`.
    pub(crate) struct Stealer<T> {
        d: Arc<Deque<T>>,
    }
    /// Loom stand-in for `crossbeam::deque::Steal`.
    #[allow(dead_code)]
    pub(crate) enum Steal<T> {
        Empty,
        Success(T),
        Retry,
    }

    impl<T> Worker<T> {
        pub(crate) fn new_lifo() -> Self {
            let d = Deque {
                slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
                front: AtomicUsize::new(0),
                back: AtomicUsize::new(0),
                take: Mutex::new(()),
            };
            Worker { d: Arc::new(d) }
        }
        pub(crate) fn push(&self, value: T) {
            let b = self.d.back.load(Ordering::Relaxed);
            assert!(b - self.d.front.load(Ordering::Acquire) < SLOTS, "loom magazine full");
            *lock(&self.d.slots[b % SLOTS]) = Some(value);
            self.d.back.store(b + 1, Ordering::Release);
        }
        pub(crate) fn pop(&self) -> Option<T> {
            let _t = lock(&self.d.take);
            fence(Ordering::SeqCst);
            let b = self.d.back.load(Ordering::Relaxed);
            let f = self.d.front.load(Ordering::Acquire);
            if b <= f {
                return None;
            }
            self.d.back.store(b - 1, Ordering::Relaxed);
            lock(&self.d.slots[(b - 1) % SLOTS]).take()
        }
        pub(crate) fn len(&self) -> usize {
            let b = self.d.back.load(Ordering::Relaxed);
            b.saturating_sub(self.d.front.load(Ordering::Acquire))
        }
        pub(crate) fn stealer(&self) -> Stealer<T> {
            Stealer { d: Arc::clone(&self.d) }
        }
    }

    impl<T> Stealer<T> {
        pub(crate) fn steal(&self) -> Steal<T> {
            let _t = lock(&self.d.take);
            let f = self.d.front.load(Ordering::Acquire);
            fence(Ordering::SeqCst);
            let b = self.d.back.load(Ordering::Acquire);
            if b <= f {
                return Steal::Empty;
            }
            let value = lock(&self.d.slots[f % SLOTS]).take();
            self.d.front.store(f + 1, Ordering::Release);
            match value {
                Some(v) => Steal::Success(v),
                None => Steal::Empty,
            }
        }
        pub(crate) fn len(&self) -> usize {
            let f = self.d.front.load(Ordering::Acquire);
            self.d.back.load(Ordering::Acquire).saturating_sub(f)
        }
    }

    /// Loom stand-in for `thread_local::ThreadLocal`: one slot per loom thread number.
    pub(crate) struct PerThread<T> {
        slots: Vec<std::sync::OnceLock<T>>,
    }

    impl<T> PerThread<T> {
        pub(crate) fn new() -> Self {
            PerThread { slots: (0..8).map(|_| std::sync::OnceLock::new()).collect() }
        }
        pub(crate) fn get_or(&self, create: impl FnOnce() -> T) -> &T {
            self.slots[thread_index() % 8].get_or_init(create)
        }
    }

    /// Loom stand-in for the copy-on-write registry.
    pub(crate) struct Registry<T>(Mutex<Vec<Arc<T>>>);

    impl<T> Registry<T> {
        pub(crate) fn new() -> Self {
            Registry(Mutex::new(Vec::new()))
        }
        pub(crate) fn push(&self, item: Arc<T>) {
            lock(&self.0).push(item);
        }
        pub(crate) fn with<U>(&self, f: impl FnOnce(&[Arc<T>]) -> U) -> U {
            let snapshot: Vec<Arc<T>> = lock(&self.0).iter().map(Arc::clone).collect();
            f(&snapshot)
        }
    }
}
