//! [`Waiters`]: the FIFO queue of callers blocked in `acquire`.
//!
//! Only the slow path touches it. A release that finds `waiting > 0` hands its resource
//! (or a freed unit of capacity) directly to the oldest waiter, so waiters are served in
//! arrival order and a release can never be missed: a waiter registers, then (after a
//! `SeqCst` fence) looks at the idle ring again, while a releaser pushes to the ring (a
//! `SeqCst` operation) and then reads `waiting`; one of the two always sees the other.
//!
//! A waiter is a blocked thread or an asynchronous task (its future). A task may give up at
//! any point (its future dropped): still queued, it leaves the queue; already taken off it
//! by a releaser, it marks its slot abandoned, and whichever of the two comes second passes
//! the handoff on ([`Waiter::deliver`] returns it, [`Waiter::abandon`] finds it), so nothing
//! handed to a cancelled waiter is lost.

use super::idle::Idle;
use super::sync::{Arc, AtomicBool, AtomicUsize, Condvar, Mutex, Ordering, lock};
use std::collections::VecDeque;
use std::task::Waker;
use std::time::Instant;

/// What a waiter is given.
pub(crate) enum Handoff<R> {
    /// An idle resource.
    Resource(Idle<R>),
    /// One reserved unit of `max_size`: the waiter makes a resource itself.
    Capacity,
    /// The pool shut down.
    ShutDown,
}

/// Where a waiter's handoff lands.
enum Slot<R> {
    /// Nothing yet; a blocking waiter sleeps on the condition variable.
    Empty,
    /// Nothing yet; an asynchronous waiter is to be woken through this.
    Parked(Waker),
    /// Handed over, not taken yet.
    Given(Handoff<R>),
    /// The waiter gave up (its future was dropped) after being taken off the queue: whoever
    /// delivers keeps what it brought.
    Abandoned,
}

/// One blocked caller: a thread (condition variable) or a task (waker).
pub(crate) struct Waiter<R> {
    slot: Mutex<Slot<R>>,
    cv: Condvar,
}

impl<R> Waiter<R> {
    pub(crate) fn new() -> Self {
        Waiter { slot: Mutex::new(Slot::Empty), cv: Condvar::new() }
    }

    /// Gives the waiter its handoff and wakes it; `Err` gives it back when the waiter has
    /// abandoned its wait (the caller passes it on).
    pub(crate) fn deliver(&self, h: Handoff<R>) -> Result<(), Handoff<R>> {
        let mut g = lock(&self.slot);
        match std::mem::replace(&mut *g, Slot::Empty) {
            Slot::Empty => {
                *g = Slot::Given(h);
                self.cv.notify_one();
                Ok(())
            }
            Slot::Parked(waker) => {
                *g = Slot::Given(h);
                drop(g);
                waker.wake();
                Ok(())
            }
            // Abandoned, or (never: one delivery per waiter) delivered already.
            other => {
                *g = other;
                Err(h)
            }
        }
    }

    /// Waits for a handoff until `deadline` (forever if `None`); `None` on timeout.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Option<Handoff<R>> {
        let mut g = lock(&self.slot);
        loop {
            if matches!(*g, Slot::Given(_))
                && let Slot::Given(h) = std::mem::replace(&mut *g, Slot::Empty)
            {
                return Some(h);
            }
            match deadline {
                None => {
                    g = match self.cv.wait(g) {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    }
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    g = match self.cv.wait_timeout(g, d - now) {
                        Ok((g, _)) => g,
                        Err(p) => p.into_inner().0,
                    }
                }
            }
        }
    }

    /// Takes the handoff if it has come; otherwise leaves `waker` to be woken when it does.
    pub(crate) fn poll_take(&self, waker: &Waker) -> Option<Handoff<R>> {
        let mut g = lock(&self.slot);
        match std::mem::replace(&mut *g, Slot::Empty) {
            Slot::Given(h) => Some(h),
            Slot::Parked(old) if old.will_wake(waker) => {
                *g = Slot::Parked(old);
                None
            }
            _ => {
                *g = Slot::Parked(waker.clone());
                None
            }
        }
    }

    /// Gives up a wait that is off the queue already: the handoff if it has come (the caller
    /// passes it on), else the deliverer will keep what it brings.
    pub(crate) fn abandon(&self) -> Option<Handoff<R>> {
        let mut g = lock(&self.slot);
        match std::mem::replace(&mut *g, Slot::Abandoned) {
            Slot::Given(h) => Some(h),
            _ => None,
        }
    }
}

/// The FIFO of waiters; `waiting` mirrors its length for the lock-free fast path.
pub(crate) struct Waiters<R> {
    q: Mutex<VecDeque<Arc<Waiter<R>>>>,
}

impl<R> Waiters<R> {
    pub(crate) fn new() -> Self {
        Waiters { q: Mutex::new(VecDeque::new()) }
    }

    /// Queues `w` unless the pool is shut down.
    pub(crate) fn register(&self, w: &Arc<Waiter<R>>, waiting: &AtomicUsize, shutdown: &AtomicBool) -> bool {
        let mut q = lock(&self.q);
        if shutdown.load(Ordering::SeqCst) {
            return false;
        }
        q.push_back(Arc::clone(w));
        waiting.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Takes the oldest waiter.
    pub(crate) fn pop_front(&self, waiting: &AtomicUsize) -> Option<Arc<Waiter<R>>> {
        let mut q = lock(&self.q);
        let w = q.pop_front();
        if w.is_some() {
            waiting.fetch_sub(1, Ordering::SeqCst);
        }
        w
    }

    /// Removes `w` if still queued; `false` means someone took it and is delivering to it.
    pub(crate) fn remove(&self, w: &Arc<Waiter<R>>, waiting: &AtomicUsize) -> bool {
        let mut q = lock(&self.q);
        match q.iter().position(|x| Arc::ptr_eq(x, w)) {
            Some(i) => {
                q.remove(i);
                waiting.fetch_sub(1, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// Takes every waiter (shutdown).
    pub(crate) fn take_all(&self, waiting: &AtomicUsize) -> Vec<Arc<Waiter<R>>> {
        let mut q = lock(&self.q);
        let all: Vec<_> = q.drain(..).collect();
        waiting.fetch_sub(all.len(), Ordering::SeqCst);
        all
    }
}
