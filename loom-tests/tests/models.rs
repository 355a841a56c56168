//! loom models of the pool engine's concurrency.
//!
//! Run (from this directory):
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release`
//!
//! The engine routes every atomic, lock and its idle ring through its `sync` facade, so
//! under `cfg(loom)` all of it is explored by loom. The mock manager's bookkeeping uses
//! plain `std` atomics: loom runs every modelled thread on one OS thread, so they are only
//! observers, never a synchronisation the engine could lean on.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use sandpool::pool::{Lease, Manager, Pool, PoolConfig, PoolError};
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

#[derive(Debug)]
struct MockError;
impl std::fmt::Display for MockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mock failure")
    }
}
impl std::error::Error for MockError {}

#[derive(Default)]
struct Tally {
    next: AtomicU64,
    live: AtomicUsize,
    max_live: AtomicUsize,
    created: AtomicU64,
    destroyed: AtomicU64,
    leased: StdMutex<Vec<u64>>,
}

#[derive(Clone, Default)]
struct Mock(std::sync::Arc<Tally>);

impl Manager for Mock {
    type Resource = u64;
    type Error = MockError;
    fn create(&self) -> Result<u64, MockError> {
        let live = self.0.live.fetch_add(1, SeqCst) + 1;
        self.0.max_live.fetch_max(live, SeqCst);
        self.0.created.fetch_add(1, SeqCst);
        Ok(self.0.next.fetch_add(1, SeqCst))
    }
    fn destroy(&self, r: u64) {
        assert!(!self.0.leased.lock().unwrap().contains(&r), "destroyed while leased");
        self.0.live.fetch_sub(1, SeqCst);
        self.0.destroyed.fetch_add(1, SeqCst);
    }
}

fn hold(t: &Tally, l: &Lease<Mock>) {
    let mut v = t.leased.lock().unwrap();
    assert!(!v.contains(&**l), "resource {} handed out twice", **l);
    v.push(**l);
}
fn unhold(t: &Tally, l: &Lease<Mock>) {
    t.leased.lock().unwrap().retain(|x| *x != **l);
}

fn new_pool(max_size: usize, min_idle: usize, shards: usize) -> (Arc<Pool<Mock>>, Mock) {
    let m = Mock::default();
    let cfg = PoolConfig::builder()
        .max_size(max_size)
        .min_idle(min_idle)
        .max_idle_age(Some(Duration::from_secs(1)))
        .acquire_timeout(None)
        .sweep_interval(None)
        .shards(shards)
        .build()
        .unwrap();
    (Arc::new(Pool::new(m.clone(), cfg).unwrap()), m)
}

fn quiescent(p: &Pool<Mock>, m: &Mock) {
    let s = p.stats();
    let t = &m.0;
    assert_eq!(s.live as u64, t.created.load(SeqCst) - t.destroyed.load(SeqCst));
    assert_eq!(s.live, t.live.load(SeqCst));
    assert_eq!(s.live, s.idle + s.leased + s.being_made + s.recycling, "{s:?}");
    assert_eq!((s.leased, s.waiting), (0, 0));
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let r = std::sync::Arc::clone(&runs);
    b.check(move || {
        r.fetch_add(1, SeqCst);
        f()
    });
    eprintln!("explored {} executions", runs.load(SeqCst));
}

/// Two threads acquire and release while the sweeper evicts (the clock moved past
/// `max_idle_age`) and refills to `min_idle`.
#[test]
fn acquire_release_while_sweeping() {
    model(|| {
        let (p, m) = new_pool(2, 1, 1);
        p.sweep_once(); // warm: one idle
        p.advance_epoch(Duration::from_secs(2)); // ...and now stale
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (p, m) = (Arc::clone(&p), m.clone());
                thread::spawn(move || {
                    let l = p.acquire().unwrap();
                    hold(&m.0, &l);
                    unhold(&m.0, &l);
                    drop(l);
                })
            })
            .collect();
        p.sweep_once();
        for h in hs {
            h.join().unwrap();
        }
        assert!(m.0.max_live.load(SeqCst) <= 2);
        quiescent(&p, &m);
        drop(p);
        assert_eq!(m.0.live.load(SeqCst), 0);
    });
}

/// A caller blocked in `acquire` at `max_size` is woken by a release on another thread
/// (loom reports a deadlock if the wake-up can be lost).
#[test]
fn blocked_acquire_is_woken_by_release() {
    model(|| {
        let (p, m) = new_pool(1, 0, 2);
        let held = p.acquire().unwrap();
        let p2 = Arc::clone(&p);
        let waiter = thread::spawn(move || {
            let l = p2.acquire().unwrap();
            *l
        });
        drop(held);
        waiter.join().unwrap();
        assert_eq!(m.0.created.load(SeqCst), 1);
        quiescent(&p, &m);
    });
}

/// Same, when the holder discards: the freed capacity goes to the waiter.
#[test]
fn blocked_acquire_is_woken_by_discard() {
    model(|| {
        let (p, m) = new_pool(1, 0, 1);
        let held = p.acquire().unwrap();
        let p2 = Arc::clone(&p);
        let waiter = thread::spawn(move || p2.acquire().map(|l| *l).unwrap());
        Lease::discard(held);
        waiter.join().unwrap();
        assert_eq!(m.0.created.load(SeqCst), 2);
        assert!(m.0.max_live.load(SeqCst) <= 1);
        quiescent(&p, &m);
    });
}

/// The pool is dropped while a lease is outstanding and returned on another thread:
/// every resource is destroyed, whichever happens first.
#[test]
fn shutdown_with_a_lease_outstanding() {
    model(|| {
        let (p, m) = new_pool(2, 0, 1);
        let a = p.acquire_owned().unwrap();
        drop(p.acquire().unwrap()); // one idle
        let t = thread::spawn(move || drop(a));
        drop(p); // the only handle: drops the pool
        t.join().unwrap();
        assert_eq!(m.0.live.load(SeqCst), 0);
        assert_eq!(m.0.created.load(SeqCst), m.0.destroyed.load(SeqCst));
    });
}

/// `close` while another thread waits in `acquire`: the waiter gets a resource or
/// `ShutDown`, never hangs, and nothing is left alive once the lease ends.
#[test]
fn close_wakes_a_waiter() {
    model(|| {
        let (p, m) = new_pool(1, 0, 1);
        let held = p.acquire().unwrap();
        let p2 = Arc::clone(&p);
        let waiter = thread::spawn(move || match p2.acquire() {
            Ok(l) => drop(l),
            Err(PoolError::ShutDown) => {}
            Err(e) => panic!("unexpected {e:?}"),
        });
        p.close();
        drop(held);
        waiter.join().unwrap();
        assert_eq!(m.0.live.load(SeqCst), 0);
    });
}

/// Racing creates never exceed `max_size` (the CAS reservation).
#[test]
fn max_size_reservation_under_races() {
    model(|| {
        let (p, m) = new_pool(1, 0, 2);
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (p, m) = (Arc::clone(&p), m.clone());
                thread::spawn(move || match p.try_acquire() {
                    Ok(l) => {
                        hold(&m.0, &l);
                        unhold(&m.0, &l);
                        true
                    }
                    Err(PoolError::Exhausted { .. }) => false,
                    Err(e) => panic!("unexpected {e:?}"),
                })
            })
            .collect();
        let ok: usize = hs.into_iter().map(|h| h.join().unwrap() as usize).sum();
        assert!(ok >= 1);
        assert_eq!(m.0.max_live.load(SeqCst), 1);
        assert_eq!(m.0.created.load(SeqCst), 1);
        quiescent(&p, &m);
    });
}

/// With magazines (two shards, `max_size` 4): a release lands in the releaser's magazine and
/// must still reach a waiter on the other shard.
#[test]
fn release_into_a_magazine_wakes_a_waiter() {
    model(|| {
        let (p, m) = new_pool(4, 0, 2);
        let mut held: Vec<_> = (0..4).map(|_| p.acquire().unwrap()).collect();
        let p2 = Arc::clone(&p);
        let waiter = thread::spawn(move || *p2.acquire().unwrap());
        drop(held.pop());
        waiter.join().unwrap();
        drop(held);
        assert_eq!(m.0.created.load(SeqCst), 4);
        quiescent(&p, &m);
    });
}

/// Two threads on (possibly) different shards acquire and release twice each: stealing
/// between magazines never hands a resource out twice.
#[test]
fn stealing_between_magazines() {
    model(|| {
        let (p, m) = new_pool(4, 0, 2);
        drop(p.acquire().unwrap());
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (p, m) = (Arc::clone(&p), m.clone());
                thread::spawn(move || {
                    for _ in 0..2 {
                        let l = p.acquire().unwrap();
                        hold(&m.0, &l);
                        unhold(&m.0, &l);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(m.0.max_live.load(SeqCst) <= 3);
        quiescent(&p, &m);
    });
}

/// A sweep that examines a magazine (and puts what it keeps in its shard's inbox) races
/// `close` on another thread: whichever goes first, nothing is left alive.
#[test]
fn sweep_racing_close_leaves_nothing_alive() {
    model(|| {
        let (p, m) = new_pool(4, 0, 2);
        drop(p.acquire().unwrap()); // one idle, in this thread's magazine
        let p2 = Arc::clone(&p);
        let sweeper = thread::spawn(move || {
            p2.sweep_once();
        });
        p.close();
        sweeper.join().unwrap();
        assert_eq!(m.0.live.load(SeqCst), 0, "closed with a resource alive");
        assert_eq!(m.0.created.load(SeqCst), m.0.destroyed.load(SeqCst));
    });
}

/// A task waiting in `acquire_async` at `max_size` is woken by a release on another thread and
/// gets the resource (loom's `block_on` reports a deadlock if the wake-up can be lost).
#[test]
fn async_waiter_is_woken_by_release() {
    model(|| {
        let (p, m) = new_pool(1, 0, 2);
        let held = p.acquire_owned().unwrap();
        let p2 = Arc::clone(&p);
        let t = thread::spawn(move || {
            let lease = loom::future::block_on(p2.acquire_async()).unwrap().into_lease().unwrap();
            assert_eq!(*lease, 0, "the released resource, not a new one");
        });
        drop(held);
        t.join().unwrap();
        quiescent(&p, &m);
        assert_eq!(p.stats().live, 1);
    });
}

/// A task that polled `acquire_async` once (queued) is cancelled while another thread
/// releases: whatever the order (cancelled before the release saw it, after the release took
/// it off the queue, after the handoff arrived), the resource ends idle, nothing waits, and it
/// serves again.
#[test]
fn async_waiter_cancelled_while_a_release_hands_it_the_resource() {
    use std::future::Future;
    use std::task::{Context, Waker};
    model(|| {
        let (p, m) = new_pool(1, 0, 1);
        let held = p.acquire_owned().unwrap();
        let mut fut = p.acquire_async();
        let pending = std::pin::Pin::new(&mut fut).poll(&mut Context::from_waker(Waker::noop())).is_pending();
        assert!(pending, "the only resource is leased");
        let t = thread::spawn(move || drop(held));
        drop(fut);
        t.join().unwrap();
        quiescent(&p, &m);
        let s = p.stats();
        assert_eq!((s.live, s.idle, s.acquires_cancelled), (1, 1, 1), "{s:?}");
        assert_eq!(*p.try_acquire().unwrap(), 0);
    });
}
