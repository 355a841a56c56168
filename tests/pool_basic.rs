//! Single-threaded and small multi-threaded behaviour of the pool engine on a mock manager.

use sandpool::pool::{ConfigError, Lease, Manager, Pool, PoolConfig, PoolError, RecycleMode};
use std::collections::HashSet;
use std::error::Error as _;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("mock failure")]
struct MockError;

/// Shared view of what the mock manager did, alive after the pool is dropped.
#[derive(Default)]
struct Tally {
    next: AtomicU64,
    created: AtomicU64,
    destroyed: AtomicU64,
    recycled: AtomicU64,
    fail_creates: AtomicU64,
    fail_recycles: AtomicU64,
    fail_checks: AtomicU64,
    alive: Mutex<HashSet<u64>>,
}

impl Tally {
    fn live(&self) -> u64 {
        self.created.load(SeqCst) - self.destroyed.load(SeqCst)
    }
}

#[derive(Clone, Default)]
struct Mock(Arc<Tally>);

fn take_one(c: &AtomicU64) -> bool {
    c.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok()
}

impl Manager for Mock {
    type Resource = u64;
    type Error = MockError;
    fn create(&self) -> Result<u64, MockError> {
        if take_one(&self.0.fail_creates) {
            return Err(MockError);
        }
        let id = self.0.next.fetch_add(1, SeqCst);
        self.0.created.fetch_add(1, SeqCst);
        assert!(self.0.alive.lock().unwrap().insert(id));
        Ok(id)
    }
    fn recycle(&self, _r: &mut u64) -> Result<(), MockError> {
        if take_one(&self.0.fail_recycles) {
            return Err(MockError);
        }
        self.0.recycled.fetch_add(1, SeqCst);
        Ok(())
    }
    fn check(&self, _r: &mut u64) -> Result<(), MockError> {
        if take_one(&self.0.fail_checks) {
            return Err(MockError);
        }
        Ok(())
    }
    fn destroy(&self, r: u64) {
        assert!(self.0.alive.lock().unwrap().remove(&r), "destroyed {r} twice");
        self.0.destroyed.fetch_add(1, SeqCst);
    }
}

fn cfg() -> sandpool::pool::PoolConfigBuilder {
    PoolConfig::builder().sweep_interval(None).shards(2).max_size(4).acquire_timeout(None)
}

fn pool(b: sandpool::pool::PoolConfigBuilder) -> (Pool<Mock>, Arc<Tally>) {
    let m = Mock::default();
    let t = Arc::clone(&m.0);
    (Pool::new(m, b.build().unwrap()).unwrap(), t)
}

#[test]
fn config_defaults_are_valid_and_builder_rejects_bad_values() {
    let d = PoolConfig::default();
    assert_eq!(PoolConfig::builder().build().unwrap(), d);
    assert!(d.min_idle() <= d.max_idle() && d.max_idle() <= d.max_size());
    assert_eq!(PoolConfig::builder().max_size(0).build(), Err(ConfigError::ZeroMaxSize));
    assert!(matches!(
        PoolConfig::builder().max_size(2).max_idle(3).build(),
        Err(ConfigError::MaxIdleAboveMaxSize { .. })
    ));
    assert!(matches!(
        PoolConfig::builder().max_size(4).max_idle(2).min_idle(3).build(),
        Err(ConfigError::MinIdleAboveMaxIdle { .. })
    ));
    assert!(matches!(
        PoolConfig::builder().max_idle_age(Some(Duration::ZERO)).build(),
        Err(ConfigError::ZeroDuration("max_idle_age"))
    ));
    assert_eq!(PoolConfig::builder().max_uses(Some(0)).build(), Err(ConfigError::ZeroMaxUses));
    // max_idle follows max_size unless set.
    assert_eq!(PoolConfig::builder().max_size(3).build().unwrap().max_idle(), 3);
}

#[test]
fn miss_creates_then_release_makes_a_hit() {
    let (p, t) = pool(cfg());
    let a = p.acquire().unwrap();
    let id = *a;
    let s = p.stats();
    assert_eq!((s.live, s.leased, s.idle, s.misses, s.hits, s.created), (1, 1, 0, 1, 0, 1));
    drop(a);
    let s = p.stats();
    assert_eq!((s.live, s.leased, s.idle), (1, 0, 1));
    let b = p.acquire().unwrap();
    assert_eq!(*b, id, "the idle resource is reused");
    assert_eq!(p.stats().hits, 1);
    assert_eq!(t.created.load(SeqCst), 1);
    assert_eq!(t.recycled.load(SeqCst), 1);
}

#[test]
fn try_acquire_never_waits_and_max_size_holds() {
    let (p, t) = pool(cfg().max_size(2));
    let a = p.try_acquire().unwrap();
    let b = p.try_acquire().unwrap();
    assert_ne!(*a, *b);
    match p.try_acquire() {
        Err(PoolError::Exhausted { waited }) => assert_eq!(waited, Duration::ZERO),
        other => panic!("expected Exhausted, got {other:?}"),
    }
    assert_eq!(t.live(), 2);
    assert_eq!(p.stats().live, 2);
}

#[test]
fn acquire_times_out_with_a_typed_error() {
    let (p, _t) = pool(cfg().max_size(1));
    let _a = p.acquire().unwrap();
    let timeout = Duration::from_millis(20);
    match p.acquire_within(Some(timeout)) {
        Err(PoolError::Exhausted { waited }) => assert!(waited >= timeout),
        other => panic!("expected Exhausted, got {other:?}"),
    }
    let s = p.stats();
    assert_eq!((s.waits, s.wait_timeouts, s.waiting), (1, 1, 0));
}

#[test]
fn create_failure_is_reported_with_its_cause_and_frees_capacity() {
    let (p, t) = pool(cfg().max_size(1));
    t.fail_creates.store(1, SeqCst);
    match p.acquire() {
        Err(e @ PoolError::Create(_)) => assert!(e.source().is_some()),
        other => panic!("expected Create, got {other:?}"),
    }
    let s = p.stats();
    assert_eq!((s.live, s.create_failures, s.created), (0, 1, 0));
    // The reservation was given back: the next acquire can make one.
    assert!(p.try_acquire().is_ok());
}

#[test]
fn discard_destroys_and_frees_capacity() {
    let (p, t) = pool(cfg().max_size(1));
    let a = p.acquire().unwrap();
    sandpool::pool::Lease::discard(a);
    let s = p.stats();
    assert_eq!((s.live, s.idle, s.leased, s.discarded, s.destroyed), (0, 0, 0, 1, 1));
    assert_eq!(t.live(), 0);
    assert!(p.try_acquire().is_ok());
}

#[test]
fn failed_inline_recycle_destroys_and_counts() {
    let (p, t) = pool(cfg());
    t.fail_recycles.store(1, SeqCst);
    drop(p.acquire().unwrap());
    let s = p.stats();
    assert_eq!((s.live, s.idle, s.recycle_failures, s.destroyed), (0, 0, 1, 1));
}

#[test]
fn background_recycle_returns_to_idle_only_after_the_sweep() {
    let (p, t) = pool(cfg().recycle(RecycleMode::Background));
    let a = p.acquire().unwrap();
    let b = p.acquire().unwrap();
    drop(a);
    drop(b);
    let s = p.stats();
    assert_eq!((s.idle, s.recycling, s.live), (0, 2, 2));
    assert_eq!(t.recycled.load(SeqCst), 0);
    t.fail_recycles.store(1, SeqCst);
    let r = p.sweep_once();
    assert_eq!((r.recycled, r.recycle_failures), (1, 1));
    let s = p.stats();
    assert_eq!((s.idle, s.recycling, s.live, s.recycle_failures), (1, 0, 1, 1));
    assert_eq!(t.live(), 1);
}

#[test]
fn max_uses_destroys_on_release() {
    let (p, t) = pool(cfg().max_uses(Some(2)));
    let id = *p.acquire().unwrap();
    let l = p.acquire().unwrap();
    assert_eq!(*l, id);
    assert_eq!(sandpool::pool::Lease::uses(&l), 2);
    drop(l);
    let s = p.stats();
    assert_eq!((s.live, s.evictions.max_uses), (0, 1));
    assert_eq!(t.live(), 0);
}

#[test]
fn lifetime_is_checked_on_release_and_by_the_sweeper() {
    let (p, _t) = pool(cfg().max_lifetime(Some(Duration::from_secs(10))));
    let a = p.acquire().unwrap();
    let b = p.acquire().unwrap();
    drop(b); // idle
    p.advance_epoch(Duration::from_secs(11));
    drop(a); // past lifetime: destroyed on release
    assert_eq!(p.stats().evictions.lifetime, 1);
    assert_eq!(p.sweep_once().evicted, 1);
    let s = p.stats();
    assert_eq!((s.live, s.idle, s.evictions.lifetime), (0, 0, 2));
}

#[test]
fn idle_age_evicts_in_the_sweep_and_is_never_handed_out() {
    let (p, t) = pool(cfg().max_idle_age(Some(Duration::from_secs(5))));
    let old = *p.acquire().unwrap();
    p.advance_epoch(Duration::from_secs(4));
    assert_eq!(p.sweep_once().evicted, 0);
    p.advance_epoch(Duration::from_secs(2));
    // Not swept yet: acquire must still not hand the stale one out.
    let fresh = p.acquire().unwrap();
    assert_ne!(*fresh, old);
    assert_eq!(p.stats().evictions.idle_age, 1);
    drop(fresh);
    p.advance_epoch(Duration::from_secs(6));
    assert_eq!(p.sweep_once().evicted, 1);
    assert_eq!(p.stats().evictions.idle_age, 2);
    assert_eq!(t.live(), 0);
}

#[test]
fn failed_check_evicts_in_the_sweep() {
    let (p, t) = pool(cfg());
    drop(p.acquire().unwrap());
    t.fail_checks.store(1, SeqCst);
    assert_eq!(p.sweep_once().evicted, 1);
    let s = p.stats();
    assert_eq!((s.live, s.evictions.check_failed), (0, 1));
}

#[test]
fn sweep_refills_to_min_idle_so_acquire_never_creates() {
    let (p, t) = pool(cfg().min_idle(3));
    assert_eq!(p.stats().idle, 0);
    assert_eq!(p.sweep_once().created, 3);
    assert_eq!(p.stats().idle, 3);
    let a = p.acquire().unwrap();
    let b = p.acquire().unwrap();
    assert_eq!(t.created.load(SeqCst), 3, "a warm pool never creates on the caller's path");
    assert_eq!(p.stats().hits, 2);
    drop((a, b));
    t.fail_creates.store(1, SeqCst);
    p.advance_epoch(Duration::from_secs(3600)); // all stale
    let r = p.sweep_once();
    assert_eq!((r.evicted, r.create_failures), (3, 1));
    assert_eq!(p.stats().create_failures, 1);
    assert_eq!(p.sweep_once().created, 3);
}

#[test]
fn surplus_above_max_idle_is_destroyed() {
    let (p, _t) = pool(cfg().max_size(3).max_idle(1));
    let a = p.acquire().unwrap();
    let b = p.acquire().unwrap();
    drop(a);
    drop(b);
    let s = p.stats();
    assert_eq!((s.live, s.idle, s.evictions.surplus), (1, 1, 1));
}

#[test]
fn blocked_acquire_is_woken_by_a_release() {
    let (p, _t) = pool(cfg().max_size(1));
    let p = Arc::new(p);
    let held = p.acquire().unwrap();
    let id = *held;
    let p2 = Arc::clone(&p);
    let waiter = thread::spawn(move || *p2.acquire().unwrap());
    while p.stats().waiting == 0 {
        thread::yield_now();
    }
    drop(held);
    assert_eq!(waiter.join().unwrap(), id);
    assert_eq!(p.stats().waiting, 0);
}

#[test]
fn waiters_are_served_in_arrival_order() {
    let (p, _t) = pool(cfg().max_size(1));
    let p = Arc::new(p);
    let held = p.acquire().unwrap();
    let (tx, rx) = mpsc::channel();
    let mut hs = Vec::new();
    for tag in 0..3 {
        let (p2, tx) = (Arc::clone(&p), tx.clone());
        hs.push(thread::spawn(move || {
            let l = p2.acquire().unwrap();
            tx.send(tag).unwrap();
            // Hold it until the test says so: the next waiter must wait for us.
            thread::park();
            drop(l);
        }));
        while p.stats().waiting != tag + 1 {
            thread::yield_now();
        }
    }
    drop(held);
    for (expected, h) in hs.iter().enumerate() {
        assert_eq!(rx.recv().unwrap(), expected);
        h.thread().unpark();
    }
    for h in hs {
        h.join().unwrap();
    }
}

#[test]
fn discard_hands_capacity_to_a_waiter() {
    let (p, t) = pool(cfg().max_size(1));
    let p = Arc::new(p);
    let held = p.acquire().unwrap();
    let old = *held;
    let p2 = Arc::clone(&p);
    let waiter = thread::spawn(move || *p2.acquire().unwrap());
    while p.stats().waiting == 0 {
        thread::yield_now();
    }
    sandpool::pool::Lease::discard(held);
    assert_ne!(waiter.join().unwrap(), old);
    assert_eq!(t.created.load(SeqCst), 2);
}

#[test]
fn close_wakes_waiters_and_fails_later_acquires() {
    let (p, t) = pool(cfg().max_size(1));
    let p = Arc::new(p);
    let held = p.acquire().unwrap();
    let p2 = Arc::clone(&p);
    let waiter = thread::spawn(move || p2.acquire().map(|l| *l));
    while p.stats().waiting == 0 {
        thread::yield_now();
    }
    p.close();
    assert!(matches!(waiter.join().unwrap(), Err(PoolError::ShutDown)));
    assert!(matches!(p.try_acquire(), Err(PoolError::ShutDown)));
    assert!(p.is_closed());
    drop(held); // returned after close: destroyed
    assert_eq!(t.live(), 0);
    assert_eq!(p.stats().live, 0);
}

#[test]
fn dropping_the_pool_destroys_everything_including_late_leases() {
    let (p, t) = pool(cfg().max_size(4).min_idle(2));
    p.sweep_once();
    let a = p.acquire_owned().unwrap();
    let b = p.acquire().unwrap();
    drop(b);
    let c = Lease::into_owned(p.acquire().unwrap());
    assert_eq!(t.live(), 2);
    drop(p);
    assert_eq!(t.live(), 2, "leased resources live until their lease ends");
    drop(a);
    assert_eq!(t.live(), 1);
    drop(c);
    assert_eq!(t.live(), 0);
    assert!(t.alive.lock().unwrap().is_empty());
}

#[test]
fn the_sweeper_thread_refills_in_the_background() {
    let m = Mock::default();
    let t = Arc::clone(&m.0);
    let cfg =
        PoolConfig::builder().max_size(4).min_idle(2).sweep_interval(Some(Duration::from_millis(5))).build().unwrap();
    let p = Pool::new(m, cfg).unwrap();
    // No deadline on purpose (no timing thresholds): the test harness times out a hang.
    while p.stats().idle < 2 {
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(t.created.load(SeqCst), 2);
    let l = p.acquire().unwrap();
    assert_eq!(t.created.load(SeqCst), 2);
    drop(l);
    drop(p);
    assert_eq!(t.live(), 0);
}

#[test]
fn pool_and_lease_are_thread_safe() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Pool<Mock>>();
    send_sync::<sandpool::pool::Lease<Mock>>();
    send::<PoolError<MockError>>();
}

/// A thread gets back the resource it released last (its magazine is LIFO), before older ones.
#[test]
fn a_thread_reuses_what_it_released_last() {
    // 8 shards of 4 entries each: this thread's magazine takes all it releases.
    let (p, _t) = pool(cfg().max_size(64).shards(8));
    let (a, b, c) = (p.acquire().unwrap(), p.acquire().unwrap(), p.acquire().unwrap());
    let (ia, ib, ic) = (*a, *b, *c);
    drop(b);
    drop(a);
    drop(c);
    assert_eq!(*p.acquire().unwrap(), ic, "last released first");
    let first = p.acquire().unwrap();
    let second = p.acquire().unwrap();
    assert_eq!((*first, *second), (ic, ia), "then in reverse release order");
    drop((first, second));
    assert_ne!(ib, ia);
}

/// What a thread left in its magazine when it ended is still handed out to other threads,
/// and destroyed when the pool is dropped.
#[test]
fn resources_left_by_an_ended_thread_are_stolen_and_drained() {
    let (p, t) = pool(cfg().max_size(8).shards(2));
    // This thread takes its own shard first, so the helper's is a different one.
    let mine = p.acquire().unwrap();
    let ids: Vec<u64> = thread::scope(|s| {
        s.spawn(|| {
            let leases: Vec<_> = (0..4).map(|_| p.acquire().unwrap()).collect();
            leases.iter().map(|l| **l).collect()
        })
        .join()
        .unwrap()
    });
    assert_eq!(p.stats().idle, 4);
    // This thread has released nothing: whatever it gets comes from the ring or is stolen.
    let held: Vec<_> = (0..4).map(|_| p.acquire_owned().unwrap()).collect();
    let got: HashSet<u64> = held.iter().map(|l| **l).collect();
    assert_eq!(got, ids.iter().copied().collect(), "no resource made while idle ones exist");
    assert_eq!(t.created.load(SeqCst), 5);
    drop((held, mine));
    drop(p);
    assert_eq!(t.live(), 0);
}

/// The sweeper examines what sits in magazines too: stale entries are evicted, healthy
/// ones stay available (in the magazine's inbox) to their thread and to others.
#[test]
fn the_sweep_reaches_into_magazines() {
    let (p, t) = pool(cfg().max_size(8).shards(2).max_idle_age(Some(Duration::from_secs(5))));
    // One resource released 6 s before the sweep (stale), one 1 s before (fresh), both
    // into a helper thread's magazine.
    thread::scope(|s| {
        s.spawn(|| {
            let (old, young) = (p.acquire().unwrap(), p.acquire().unwrap());
            drop(old);
            p.advance_epoch(Duration::from_secs(5));
            drop(young);
            p.advance_epoch(Duration::from_secs(1));
        });
    });
    assert_eq!(p.stats().idle, 2);
    let r = p.sweep_once();
    assert_eq!(r.evicted, 1);
    let s = p.stats();
    assert_eq!((s.idle, s.live, s.evictions.idle_age), (1, 1, 1));
    // The survivor is stolen by this thread, not made anew.
    drop(p.acquire().unwrap());
    assert_eq!(t.created.load(SeqCst), 2);
}

/// However many threads release at once, idle resources never exceed `max_idle`; the rest
/// are destroyed as surplus.
#[test]
fn max_idle_holds_with_many_releasing_threads() {
    let (p, t) = pool(cfg().max_size(32).max_idle(10).shards(4));
    let leases: Vec<_> = (0..32).map(|_| p.acquire_owned().unwrap()).collect();
    let mut chunks: Vec<Vec<_>> = Vec::new();
    let mut it = leases.into_iter();
    for _ in 0..8 {
        chunks.push(it.by_ref().take(4).collect());
    }
    thread::scope(|s| {
        for chunk in chunks {
            s.spawn(move || drop(chunk));
        }
    });
    let st = p.stats();
    assert!(st.idle <= 10, "idle {} above max_idle", st.idle);
    assert_eq!(st.idle as u64 + st.evictions.surplus, 32);
    assert_eq!(t.live(), st.idle as u64);
}

/// One thread (an async runtime's worker, say) releasing every resource keeps all of them
/// idle up to `max_idle`: magazines no thread claimed still hold resources (through their
/// inboxes), none is destroyed as surplus.
#[test]
fn one_releasing_thread_fills_max_idle() {
    let (p, t) = pool(cfg().max_size(64).max_idle(64).shards(16));
    let leases: Vec<_> = (0..64).map(|_| p.acquire().unwrap()).collect();
    drop(leases);
    let st = p.stats();
    assert_eq!((st.idle, st.evictions.surplus), (64, 0), "{st:?}");
    assert_eq!(t.live(), 64);
}
