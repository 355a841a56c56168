//! Multi-threaded stress of the pool engine on a mock manager, checking the invariants:
//! no resource handed out twice, none lost, never above `max_size`, waiters always woken.

use sandpool::pool::{Lease, Manager, Pool, PoolConfig, PoolError, RecycleMode};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("mock failure")]
struct MockError;

const MAX_SIZE: usize = 4;

#[derive(Default)]
struct Tally {
    next: AtomicU64,
    created: AtomicU64,
    destroyed: AtomicU64,
    live: AtomicUsize,
    max_live_seen: AtomicUsize,
    alive: Mutex<HashSet<u64>>,
    leased: Mutex<HashSet<u64>>,
    calls: AtomicU64,
}

#[derive(Clone, Default)]
struct Mock(Arc<Tally>);

impl Manager for Mock {
    type Resource = u64;
    type Error = MockError;
    fn create(&self) -> Result<u64, MockError> {
        // Every 7th create fails.
        if self.0.calls.fetch_add(1, SeqCst) % 7 == 6 {
            return Err(MockError);
        }
        let live = self.0.live.fetch_add(1, SeqCst) + 1;
        self.0.max_live_seen.fetch_max(live, SeqCst);
        assert!(live <= MAX_SIZE, "max_size exceeded: {live}");
        let id = self.0.next.fetch_add(1, SeqCst);
        self.0.created.fetch_add(1, SeqCst);
        self.0.alive.lock().unwrap().insert(id);
        Ok(id)
    }
    fn recycle(&self, r: &mut u64) -> Result<(), MockError> {
        if *r % 11 == 10 {
            return Err(MockError);
        }
        Ok(())
    }
    fn destroy(&self, r: u64) {
        assert!(self.0.alive.lock().unwrap().remove(&r), "destroyed {r} twice");
        assert!(!self.0.leased.lock().unwrap().contains(&r), "destroyed {r} while leased");
        self.0.destroyed.fetch_add(1, SeqCst);
        self.0.live.fetch_sub(1, SeqCst);
    }
}

/// Marks a lease as held, failing if its resource is already out on another lease.
fn hold(t: &Tally, l: &Lease<Mock>) {
    assert!(t.leased.lock().unwrap().insert(**l), "resource {} handed out twice", **l);
}
fn unhold(t: &Tally, l: &Lease<Mock>) {
    assert!(t.leased.lock().unwrap().remove(&**l));
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn check_quiescent(p: &Pool<Mock>, t: &Tally) {
    let s = p.stats();
    let created = t.created.load(SeqCst);
    let destroyed = t.destroyed.load(SeqCst);
    assert_eq!(s.created, created);
    assert_eq!(s.destroyed, destroyed);
    assert_eq!(s.live as u64, created - destroyed, "{s:?}");
    assert_eq!(s.live, s.idle + s.leased + s.being_made + s.recycling, "{s:?}");
    assert_eq!(s.leased, 0);
    assert_eq!(s.waiting, 0);
    assert!(s.live <= MAX_SIZE);
    assert_eq!(t.live.load(SeqCst), s.live);
}

fn stress(mode: RecycleMode) {
    let m = Mock::default();
    let t = Arc::clone(&m.0);
    let cfg = PoolConfig::builder()
        .max_size(MAX_SIZE)
        .max_idle(3)
        .min_idle(1)
        .max_uses(Some(5))
        .max_idle_age(Some(Duration::from_millis(50)))
        .acquire_timeout(None)
        .sweep_interval(None)
        .recycle(mode)
        .shards(4)
        .build()
        .unwrap();
    let p = Arc::new(Pool::new(m, cfg).unwrap());
    for round in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        // A sweeper thread of our own, moving the clock and sweeping as fast as it can.
        let sweeper = {
            let (p, stop) = (Arc::clone(&p), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(SeqCst) {
                    p.advance_epoch(Duration::from_millis(1));
                    p.sweep_once();
                    thread::yield_now();
                }
            })
        };
        let workers: Vec<_> = (0..8u64)
            .map(|i| {
                let (p, t) = (Arc::clone(&p), Arc::clone(&t));
                thread::spawn(move || {
                    let mut seed = 0x9E37_79B9_7F4A_7C15 ^ (i + 1) ^ (round << 8);
                    for _ in 0..3000 {
                        let r = xorshift(&mut seed);
                        let got = if r.is_multiple_of(4) { p.try_acquire() } else { p.acquire() };
                        match got {
                            Ok(l) => {
                                hold(&t, &l);
                                if r.is_multiple_of(3) {
                                    thread::yield_now();
                                }
                                unhold(&t, &l);
                                if r.is_multiple_of(10) {
                                    Lease::discard(l);
                                } else {
                                    drop(l);
                                }
                            }
                            Err(PoolError::Exhausted { .. }) | Err(PoolError::Create(_)) => {}
                            Err(e) => panic!("unexpected error {e:?}"),
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, SeqCst);
        sweeper.join().unwrap();
        // Background mode: finish pending recycles so the books balance.
        p.sweep_once();
        check_quiescent(&p, &t);
    }
    assert!(t.max_live_seen.load(SeqCst) <= MAX_SIZE);
    let s = p.stats();
    assert!(s.waits > 0, "the stress never made anyone wait: {s:?}");
    assert!(s.hits > 0 && s.misses > 0);
    drop(p);
    assert_eq!(t.live.load(SeqCst), 0);
    assert!(t.alive.lock().unwrap().is_empty());
}

#[test]
fn stress_inline_recycle() {
    stress(RecycleMode::Inline);
}

#[test]
fn stress_background_recycle() {
    stress(RecycleMode::Background);
}

/// Leases held across the pool's drop are destroyed when they come back, from many threads.
#[test]
fn leases_returned_after_drop_are_destroyed() {
    let m = Mock::default();
    let t = Arc::clone(&m.0);
    let cfg = PoolConfig::builder().max_size(MAX_SIZE).sweep_interval(Some(Duration::from_millis(1))).build().unwrap();
    let p = Pool::new(m, cfg).unwrap();
    let mut leases = Vec::new();
    while leases.len() < 3 {
        if let Ok(l) = p.acquire_owned() {
            leases.push(l);
        }
    }
    drop(p);
    let hs: Vec<_> = leases.into_iter().map(|l| thread::spawn(move || drop(l))).collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(t.live.load(SeqCst), 0);
    assert!(t.alive.lock().unwrap().is_empty());
}
