//! [`AcquireFuture`]: acquiring without holding a thread, for asynchronous hosts.
//!
//! The future takes the same paths as [`Pool::acquire`](super::Pool::acquire) (idle first,
//! then a unit of `max_size`, then the one FIFO of waiters, shared with blocked threads), but
//! waits by leaving its task's waker where a release finds it. It needs no particular
//! executor and no timer: a host applies its own timeout (or uses
//! [`AcquireFuture::time_out`] after its timer fires), and makes a resource where it sees fit
//! (a [`Reservation`], since making one may block).
//!
//! Cancellation: the future may be dropped at any point. Dropped while it waits, it leaves
//! the queue; if a release had already taken it off the queue to hand it a resource (or a unit
//! of capacity), whichever of the two comes second passes that on to the next waiter or back
//! to idle. Nothing is lost and no resource is destroyed for it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use super::core::{Core, Queued};
use super::error::PoolError;
use super::lease::Lease;
use super::manager::{Manager, PoolEvent};
use super::sync::{Arc, Ordering};
use super::waiters::{Handoff, Waiter};

/// What an asynchronous acquire is granted: a ready resource, or a unit of `max_size` to make
/// one with (making one may block for as long as [`Manager::create`] takes, so it is the
/// caller's to run where blocking is allowed).
#[must_use = "a grant holds a resource or a unit of the pool's capacity"]
pub enum Granted<M: Manager> {
    /// A resource that was idle (or just released).
    Lease(Lease<'static, M>),
    /// Room to make one.
    Capacity(Reservation<M>),
}

impl<M: Manager> Granted<M> {
    /// The lease, making the resource on this thread if the grant was capacity.
    pub fn into_lease(self) -> Result<Lease<'static, M>, PoolError<M::Error>> {
        match self {
            Granted::Lease(lease) => Ok(lease),
            Granted::Capacity(reservation) => reservation.make(),
        }
    }
}

impl<M: Manager> fmt::Debug for Granted<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Granted::Lease(_) => "Granted::Lease",
            Granted::Capacity(_) => "Granted::Capacity",
        })
    }
}

/// One unit of a pool's `max_size`, held for a resource about to be made. Dropped unused, it
/// goes back to the pool (to the oldest waiter, if any).
#[must_use = "a reservation holds a unit of the pool's capacity until it is used or dropped"]
pub struct Reservation<M: Manager> {
    core: Option<Arc<Core<M>>>,
    /// When the acquire missed, for [`PoolEvent::Acquired`].
    missed_at: Instant,
}

impl<M: Manager> Reservation<M> {
    /// Makes the resource ([`Manager::create`], on this thread) and leases it.
    pub fn make(mut self) -> Result<Lease<'static, M>, PoolError<M::Error>> {
        let core = self.core.take().expect("a reservation is used once");
        let local = core.local();
        if core.is_shut_down() {
            core.unreserve(Some(local));
            return Err(PoolError::ShutDown);
        }
        // On failure `create` gives the unit back.
        let idle = core.create(Some(local)).map_err(PoolError::Create)?;
        core.manager.observe(PoolEvent::Acquired { waited: self.missed_at.elapsed() });
        Ok(Lease::owned(core, idle))
    }
}

impl<M: Manager> Drop for Reservation<M> {
    fn drop(&mut self) {
        if let Some(core) = self.core.take() {
            core.unreserve(None);
        }
    }
}

impl<M: Manager> fmt::Debug for Reservation<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation").finish_non_exhaustive()
    }
}

enum State<R> {
    /// Not polled yet.
    Start,
    /// Queued among the waiters.
    Waiting(Arc<Waiter<R>>),
    /// Returned its result (or gave up).
    Done,
}

/// The future of [`Pool::acquire_async`](super::Pool::acquire_async): resolves to a
/// [`Granted`] lease or unit of capacity. `Unpin`, so a host can poll it by `&mut` under its
/// own timer and then call [`time_out`](AcquireFuture::time_out).
#[must_use = "futures do nothing unless polled"]
pub struct AcquireFuture<M: Manager> {
    core: Arc<Core<M>>,
    state: State<M::Resource>,
    /// When the fast path failed.
    missed_at: Option<Instant>,
}

impl<M: Manager> AcquireFuture<M> {
    pub(crate) fn new(core: Arc<Core<M>>) -> Self {
        AcquireFuture { core, state: State::Start, missed_at: None }
    }

    /// The first poll: the fast path, else a unit of capacity, else the queue. `None` once
    /// queued.
    fn start(&mut self) -> Option<Result<Granted<M>, PoolError<M::Error>>> {
        let core = &*self.core;
        if core.is_shut_down() {
            return Some(Err(PoolError::ShutDown));
        }
        let local = core.local();
        let nobody_waits = core.hot.waiting.load(Ordering::Relaxed) == 0;
        if nobody_waits && let Some(idle) = core.take_idle(local) {
            local.count_hit();
            return Some(Ok(Granted::Lease(Lease::owned(Arc::clone(&self.core), idle))));
        }
        core.counters.misses.fetch_add(1, Ordering::Relaxed);
        self.missed_at = Some(Instant::now());
        if nobody_waits && core.try_reserve() {
            return Some(self.granted(Handoff::Capacity));
        }
        match core.queue_up(local) {
            None => Some(Err(PoolError::ShutDown)),
            Some(Queued::Found(gift)) => Some(self.granted(gift)),
            Some(Queued::Waiting(me)) => {
                self.state = State::Waiting(me);
                None
            }
        }
    }

    /// What a handoff grants.
    fn granted(&self, handoff: Handoff<M::Resource>) -> Result<Granted<M>, PoolError<M::Error>> {
        let core = &self.core;
        let missed_at = self.missed_at.unwrap_or_else(Instant::now);
        match handoff {
            Handoff::Resource(idle) => {
                core.manager.observe(PoolEvent::Acquired { waited: missed_at.elapsed() });
                Ok(Granted::Lease(Lease::owned(Arc::clone(core), idle)))
            }
            Handoff::Capacity => Ok(Granted::Capacity(Reservation { core: Some(Arc::clone(core)), missed_at })),
            Handoff::ShutDown => Err(PoolError::ShutDown),
        }
    }

    /// Gives the wait up because the host's timer fired: `Some` with what was handed to it
    /// meanwhile (a release that raced the timer), which the caller then owns; `None` if
    /// nothing was (counted in [`Stats::wait_timeouts`](super::Stats::wait_timeouts)). Not
    /// counted as a cancellation. After it, the future must not be polled again.
    pub fn time_out(&mut self) -> Option<Result<Granted<M>, PoolError<M::Error>>> {
        let State::Waiting(me) = std::mem::replace(&mut self.state, State::Done) else {
            return None;
        };
        let core = &*self.core;
        if !core.waiters.remove(&me, &core.hot.waiting)
            && let Some(handoff) = me.abandon()
        {
            return Some(self.granted(handoff));
        }
        // Nothing came (what comes now, its deliverer passes on).
        core.counters.wait_timeouts.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// How long it has waited since it missed (zero if it has not).
    pub fn waited(&self) -> std::time::Duration {
        self.missed_at.map_or(std::time::Duration::ZERO, |t| t.elapsed())
    }
}

impl<M: Manager> Future for AcquireFuture<M> {
    type Output = Result<Granted<M>, PoolError<M::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let State::Start = this.state
            && let Some(result) = this.start()
        {
            this.state = State::Done;
            return Poll::Ready(result);
        }
        let State::Waiting(me) = &this.state else {
            panic!("AcquireFuture polled after it completed");
        };
        match me.poll_take(cx.waker()) {
            None => Poll::Pending,
            Some(handoff) => {
                this.state = State::Done;
                Poll::Ready(this.granted(handoff))
            }
        }
    }
}

impl<M: Manager> Drop for AcquireFuture<M> {
    /// A wait given up: off the queue, and anything already handed to it passed on.
    fn drop(&mut self) {
        if let State::Waiting(me) = std::mem::replace(&mut self.state, State::Done) {
            let core = &*self.core;
            core.counters.acquires_cancelled.fetch_add(1, Ordering::Relaxed);
            core.leave_queue(core.local(), &me);
        }
    }
}

impl<M: Manager> fmt::Debug for AcquireFuture<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Start => "start",
            State::Waiting(_) => "waiting",
            State::Done => "done",
        };
        f.debug_struct("AcquireFuture").field("state", &state).finish_non_exhaustive()
    }
}

/// Each interleaving of an asynchronous waiter with a release and a cancellation, driven one
/// step at a time through the engine's own parts (a release's steps are `pop_front` then
/// `deliver`; a cancellation is the future's drop).
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::pool::{Pool, PoolConfig};
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    struct Numbers(AtomicUsize);
    impl Manager for Numbers {
        type Resource = usize;
        type Error = std::io::Error;
        fn create(&self) -> Result<usize, std::io::Error> {
            Ok(self.0.fetch_add(1, Ordering::SeqCst))
        }
    }

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Wakes(AtomicUsize);
    impl Wake for Wakes {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A pool of one, its resource leased (so an acquire must wait), and a waiting future.
    fn one_leased_one_waiting()
    -> (Pool<Numbers>, Lease<'static, Numbers>, AcquireFuture<Numbers>, std::sync::Arc<Wakes>) {
        let config = PoolConfig::builder().max_size(1).min_idle(0).sweep_interval(None).build().unwrap();
        let pool = Pool::new(Numbers(AtomicUsize::new(0)), config).unwrap();
        let held = pool.acquire_owned().unwrap();
        let mut fut = pool.acquire_async();
        let wakes = std::sync::Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        assert!(Pin::new(&mut fut).poll(&mut Context::from_waker(&waker)).is_pending());
        assert_eq!(pool.stats().waiting, 1);
        (pool, held, fut, wakes)
    }

    fn poll(
        fut: &mut AcquireFuture<Numbers>,
        wakes: &std::sync::Arc<Wakes>,
    ) -> Poll<Result<Granted<Numbers>, PoolError<std::io::Error>>> {
        let waker = Waker::from(wakes.clone());
        Pin::new(fut).poll(&mut Context::from_waker(&waker))
    }

    /// At quiescence: the pool's one resource idle, nobody waiting, and it serves again.
    fn quiescent(pool: &Pool<Numbers>) {
        let s = pool.stats();
        assert_eq!((s.live, s.idle, s.leased, s.waiting), (1, 1, 0, 0), "{s:?}");
        assert_eq!(*pool.try_acquire().unwrap(), 0, "the same resource serves again");
    }

    #[test]
    fn a_release_wakes_the_waiting_task_and_hands_it_the_resource() {
        let (pool, held, mut fut, wakes) = one_leased_one_waiting();
        drop(held);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        let Poll::Ready(Ok(Granted::Lease(lease))) = poll(&mut fut, &wakes) else { panic!("not served") };
        assert_eq!(*lease, 0);
        drop((lease, fut));
        assert_eq!(pool.stats().acquires_cancelled, 0);
        quiescent(&pool);
    }

    #[test]
    fn cancelled_while_queued_it_leaves_the_queue_and_the_release_goes_to_idle() {
        let (pool, held, fut, _wakes) = one_leased_one_waiting();
        drop(fut);
        assert_eq!(pool.stats().waiting, 0);
        drop(held);
        assert_eq!(pool.stats().acquires_cancelled, 1);
        quiescent(&pool);
    }

    #[test]
    fn cancelled_after_a_release_took_it_off_the_queue_the_releaser_passes_the_resource_on() {
        let (pool, held, fut, _wakes) = one_leased_one_waiting();
        let core = &pool.core;
        // The release's first step: it takes the waiter off the queue (and holds the resource).
        let waiter = core.waiters.pop_front(&core.hot.waiting).expect("queued");
        let idle = held_idle(held);
        // The cancellation comes in between.
        drop(fut);
        // The release's second step: the waiter is gone, the resource comes back.
        let Err(gift) = waiter.deliver(Handoff::Resource(idle)) else { panic!("delivered to a cancelled waiter") };
        core.take_back(gift, None);
        quiescent(&pool);
    }

    #[test]
    fn cancelled_after_the_handoff_arrived_the_future_passes_it_on() {
        let (pool, held, fut, wakes) = one_leased_one_waiting();
        drop(held); // delivered, not yet polled
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        drop(fut);
        quiescent(&pool);
    }

    #[test]
    fn a_cancelled_waiter_passes_a_handoff_to_the_next_waiter_in_line() {
        let (pool, held, first, wakes) = one_leased_one_waiting();
        let mut second = pool.acquire_async();
        assert!(poll(&mut second, &wakes).is_pending());
        drop(held); // to the first
        drop(first); // which passes it to the second
        let Poll::Ready(Ok(Granted::Lease(lease))) = poll(&mut second, &wakes) else { panic!("not passed on") };
        drop((lease, second));
        quiescent(&pool);
    }

    #[test]
    fn a_unit_of_capacity_handed_to_a_cancelled_waiter_is_given_back() {
        let (pool, held, fut, _wakes) = one_leased_one_waiting();
        Lease::discard(held); // frees a unit of max_size: to the waiter
        drop(fut);
        let s = pool.stats();
        assert_eq!((s.live, s.waiting), (0, 0), "{s:?}");
        assert!(pool.try_acquire().is_ok(), "the unit serves again");
    }

    #[test]
    fn time_out_returns_what_a_racing_release_handed_over_and_counts_a_timeout_otherwise() {
        let (pool, held, mut fut, _wakes) = one_leased_one_waiting();
        drop(held);
        let Some(Ok(Granted::Lease(lease))) = fut.time_out() else { panic!("the handoff was dropped") };
        drop((lease, fut));
        let (pool2, held2, mut fut2, _w) = one_leased_one_waiting();
        assert!(fut2.time_out().is_none());
        drop(fut2);
        let s = pool2.stats();
        assert_eq!((s.wait_timeouts, s.acquires_cancelled, s.waiting), (1, 0, 0), "{s:?}");
        drop(held2);
        quiescent(&pool2);
        quiescent(&pool);
    }

    /// The resource a lease holds, taken out of it without releasing it.
    fn held_idle(mut lease: Lease<'static, Numbers>) -> crate::pool::idle::Idle<usize> {
        lease.take_idle().expect("lease holds its resource")
    }
}
