//! The engine's synchronisation facade.
//!
//! Every atomic, lock, condition variable, thread and the idle ring the engine uses comes
//! from here, so that building with `RUSTFLAGS="--cfg loom"` swaps them all for
//! [loom](https://docs.rs/loom)'s model-checked versions at once. Under `cfg(loom)` the
//! ring is [`Ring`], a loom-visible stand-in for `crossbeam`'s `ArrayQueue` with the same
//! interface and the same sequentially consistent points (a `SeqCst` operation when a value
//! is pushed, a `SeqCst` fence before a pop reports the ring empty).

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

/// A small stable number for the current thread, used to pick its shard.
#[cfg(not(loom))]
pub(crate) fn thread_index() -> usize {
    use std::cell::Cell;
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|i| {
        let v = i.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        i.set(v);
        v
    })
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
