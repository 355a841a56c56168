//! Arbitrary sequences of pool operations on a mock manager, checked step by step against
//! a reference model: counts, no double hand-out, `max_size`/`max_idle`, every destroy
//! legitimate, and `stats()` equal to the model's books.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run pool_ops -- -max_total_time=60` (in the crate root).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sandpool::pool::{Lease, Manager, Pool, PoolConfig, PoolError, RecycleMode};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Arbitrary, Debug)]
struct Input {
    cfg: Cfg,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
struct Cfg {
    max_size: u8,
    max_idle: u8,
    min_idle: u8,
    max_uses: u8,
    idle_age: u8,
    lifetime: u8,
    background: bool,
    shards: u8,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Acquire,
    TryAcquire,
    Release(u8),
    Discard(u8),
    Sweep,
    FailNextCreate,
    FailNextRecycle,
    FailNextCheck,
    AdvanceEpoch(u8),
}

#[derive(Debug)]
struct MockError;
impl std::fmt::Display for MockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected failure")
    }
}
impl std::error::Error for MockError {}

/// What the mock did during one step.
#[derive(Default)]
struct Log {
    next: u64,
    fail_create: bool,
    fail_recycle: bool,
    fail_check: bool,
    created: Vec<u64>,
    destroyed: Vec<u64>,
    recycled: Vec<(u64, bool)>,
    checked: Vec<(u64, bool)>,
    alive: BTreeSet<u64>,
}

#[derive(Clone, Default)]
struct Mock(Arc<Mutex<Log>>);

impl Manager for Mock {
    type Resource = u64;
    type Error = MockError;
    fn create(&self) -> Result<u64, MockError> {
        let mut l = self.0.lock().unwrap();
        if std::mem::take(&mut l.fail_create) {
            return Err(MockError);
        }
        let id = l.next;
        l.next += 1;
        l.created.push(id);
        l.alive.insert(id);
        Ok(id)
    }
    fn recycle(&self, r: &mut u64) -> Result<(), MockError> {
        let mut l = self.0.lock().unwrap();
        let ok = !std::mem::take(&mut l.fail_recycle);
        l.recycled.push((*r, ok));
        if ok { Ok(()) } else { Err(MockError) }
    }
    fn check(&self, r: &mut u64) -> Result<(), MockError> {
        let mut l = self.0.lock().unwrap();
        let ok = !std::mem::take(&mut l.fail_check);
        l.checked.push((*r, ok));
        if ok { Ok(()) } else { Err(MockError) }
    }
    fn destroy(&self, r: u64) {
        let mut l = self.0.lock().unwrap();
        assert!(l.alive.remove(&r), "destroyed {r}, which is not alive");
        l.destroyed.push(r);
    }
}

#[derive(Clone, Copy)]
struct Meta {
    created: u64,
    idle_since: u64,
    uses: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Why {
    IdleAge,
    Lifetime,
    MaxUses,
    Check,
    Surplus,
}

#[derive(Default, Debug, PartialEq, Eq)]
struct Books {
    hits: u64,
    misses: u64,
    waits: u64,
    wait_timeouts: u64,
    created: u64,
    create_failures: u64,
    destroyed: u64,
    discarded: u64,
    recycle_failures: u64,
    ev_idle_age: u64,
    ev_lifetime: u64,
    ev_max_uses: u64,
    ev_check: u64,
    ev_surplus: u64,
}

struct Model {
    max_size: usize,
    max_idle: usize,
    min_idle: usize,
    max_uses: u64,
    idle_age_ms: u64,
    lifetime_ms: u64,
    background: bool,
    now: u64,
    meta: HashMap<u64, Meta>,
    idle: BTreeSet<u64>,
    recycling: BTreeSet<u64>,
    books: Books,
}

impl Model {
    fn live(&self) -> usize {
        self.meta.len()
    }
    fn stale(&self, id: u64) -> Option<Why> {
        let m = self.meta[&id];
        if self.now - m.created >= self.lifetime_ms {
            Some(Why::Lifetime)
        } else if self.now - m.idle_since >= self.idle_age_ms {
            Some(Why::IdleAge)
        } else {
            None
        }
    }
    fn spent(&self, id: u64) -> Option<Why> {
        let m = self.meta[&id];
        if m.uses >= self.max_uses {
            Some(Why::MaxUses)
        } else if self.now - m.created >= self.lifetime_ms {
            Some(Why::Lifetime)
        } else {
            None
        }
    }
    fn evicted(&mut self, id: u64, why: Why) {
        match why {
            Why::IdleAge => self.books.ev_idle_age += 1,
            Why::Lifetime => self.books.ev_lifetime += 1,
            Why::MaxUses => self.books.ev_max_uses += 1,
            Why::Check => self.books.ev_check += 1,
            Why::Surplus => self.books.ev_surplus += 1,
        }
        self.gone(id);
    }
    fn gone(&mut self, id: u64) {
        assert!(self.meta.remove(&id).is_some());
        self.idle.remove(&id);
        self.recycling.remove(&id);
        self.books.destroyed += 1;
    }
    fn born(&mut self, id: u64) {
        let now = self.now;
        self.meta.insert(id, Meta { created: now, idle_since: now, uses: 0 });
        self.books.created += 1;
    }
    fn go_idle(&mut self, id: u64) {
        self.meta.get_mut(&id).unwrap().idle_since = self.now;
        self.idle.insert(id);
    }
}

fn secs(v: u8, modulo: u8) -> Option<Duration> {
    match v % modulo {
        0 => None,
        n => Some(Duration::from_secs(n as u64)),
    }
}

fn ms(d: Option<Duration>) -> u64 {
    d.map_or(u64::MAX, |d| d.as_millis() as u64)
}

fuzz_target!(|input: Input| {
    let c = &input.cfg;
    let max_size = 1 + (c.max_size % 6) as usize;
    let max_idle = (c.max_idle as usize) % (max_size + 1);
    let min_idle = (c.min_idle as usize) % (max_idle + 1);
    let max_uses = match c.max_uses % 5 {
        0 => None,
        n => Some(n as u64),
    };
    let idle_age = secs(c.idle_age, 6);
    let lifetime = secs(c.lifetime, 11);
    let cfg = PoolConfig::builder()
        .max_size(max_size)
        .max_idle(max_idle)
        .min_idle(min_idle)
        .max_uses(max_uses)
        .max_idle_age(idle_age)
        .max_lifetime(lifetime)
        .acquire_timeout(Some(Duration::ZERO))
        .sweep_interval(None)
        .recycle(if c.background { RecycleMode::Background } else { RecycleMode::Inline })
        .shards(1 << (c.shards % 3))
        .build()
        .expect("valid by construction");
    let mock = Mock::default();
    let log = Arc::clone(&mock.0);
    let pool = Pool::new(mock, cfg).unwrap();
    let mut m = Model {
        max_size,
        max_idle,
        min_idle,
        max_uses: max_uses.unwrap_or(u64::MAX),
        idle_age_ms: ms(idle_age),
        lifetime_ms: ms(lifetime),
        background: c.background,
        now: 0,
        meta: HashMap::new(),
        idle: BTreeSet::new(),
        recycling: BTreeSet::new(),
        books: Books::default(),
    };
    let mut leases: Vec<Lease<'static, Mock>> = Vec::new();
    let (mut pend_create, mut pend_recycle, mut pend_check) = (false, false, false);

    for op in input.ops.iter().take(256) {
        {
            let mut l = log.lock().unwrap();
            l.created.clear();
            l.destroyed.clear();
            l.recycled.clear();
            l.checked.clear();
        }
        match op {
            Op::FailNextCreate => {
                pend_create = true;
                log.lock().unwrap().fail_create = true;
            }
            Op::FailNextRecycle => {
                pend_recycle = true;
                log.lock().unwrap().fail_recycle = true;
            }
            Op::FailNextCheck => {
                pend_check = true;
                log.lock().unwrap().fail_check = true;
            }
            Op::AdvanceEpoch(s) => {
                let d = Duration::from_millis(*s as u64 * 100);
                pool.advance_epoch(d);
                m.now += d.as_millis() as u64;
                assert_eq!(pool.epoch(), m.now);
            }
            Op::Acquire | Op::TryAcquire => {
                let waits = matches!(op, Op::Acquire);
                let r = if waits { pool.acquire() } else { pool.try_acquire() }.map(Lease::into_owned);
                let (created, destroyed) = {
                    let l = log.lock().unwrap();
                    (l.created.clone(), l.destroyed.clone())
                };
                let stale: BTreeSet<u64> = m.idle.iter().copied().filter(|&i| m.stale(i).is_some()).collect();
                let fresh: BTreeSet<u64> = m.idle.difference(&stale).copied().collect();
                for &d in &destroyed {
                    assert!(stale.contains(&d), "acquire destroyed {d}, not a stale idle one");
                    let why = m.stale(d).unwrap();
                    m.evicted(d, why);
                }
                let all_stale_gone = destroyed.len() == stale.len();
                match r {
                    Ok(l) => {
                        let id = *l;
                        assert!(!leases.iter().any(|x| **x == id), "{id} handed out twice");
                        if fresh.contains(&id) {
                            assert!(created.is_empty());
                            m.books.hits += 1;
                            m.idle.remove(&id);
                        } else {
                            assert_eq!(created, vec![id], "lease {id} neither idle nor new");
                            assert!(fresh.is_empty() && all_stale_gone);
                            assert!(m.live() < m.max_size);
                            m.books.misses += 1;
                            m.born(id);
                        }
                        m.meta.get_mut(&id).unwrap().uses += 1;
                        assert_eq!(Lease::uses(&l), m.meta[&id].uses);
                        leases.push(l);
                    }
                    Err(PoolError::Exhausted { .. }) => {
                        assert!(created.is_empty() && fresh.is_empty() && all_stale_gone);
                        assert_eq!(m.live(), m.max_size);
                        m.books.misses += 1;
                        if waits {
                            m.books.waits += 1;
                            m.books.wait_timeouts += 1;
                        }
                    }
                    Err(PoolError::Create(_)) => {
                        assert!(pend_create && created.is_empty());
                        assert!(fresh.is_empty() && all_stale_gone);
                        assert!(m.live() < m.max_size);
                        pend_create = false;
                        m.books.misses += 1;
                        m.books.create_failures += 1;
                    }
                    Err(e) => panic!("unexpected error {e:?}"),
                }
            }
            Op::Release(i) | Op::Discard(i) => {
                if leases.is_empty() {
                    continue;
                }
                let l = leases.swap_remove(*i as usize % leases.len());
                let id = *l;
                let discard = matches!(op, Op::Discard(_));
                if discard {
                    Lease::discard(l);
                } else {
                    drop(l);
                }
                let (destroyed, recycled) = {
                    let l = log.lock().unwrap();
                    (l.destroyed.clone(), l.recycled.clone())
                };
                if discard {
                    assert_eq!(destroyed, vec![id]);
                    assert!(recycled.is_empty());
                    m.books.discarded += 1;
                    m.gone(id);
                } else if let Some(why) = m.spent(id) {
                    assert_eq!(destroyed, vec![id]);
                    m.evicted(id, why);
                } else if m.background {
                    assert!(destroyed.is_empty() && recycled.is_empty());
                    m.recycling.insert(id);
                } else {
                    assert_eq!(recycled.len(), 1);
                    let (rid, ok) = recycled[0];
                    assert_eq!(rid, id);
                    if !ok {
                        assert!(pend_recycle);
                        pend_recycle = false;
                        assert_eq!(destroyed, vec![id]);
                        m.books.recycle_failures += 1;
                        m.gone(id);
                    } else if destroyed == vec![id] {
                        // Surplus: allowed when its shard's magazine and the ring are full,
                        // which needs at least one idle resource (or max_idle = 0).
                        assert!(m.max_idle == 0 || !m.idle.is_empty());
                        m.evicted(id, Why::Surplus);
                    } else {
                        assert!(destroyed.is_empty());
                        assert!(m.idle.len() < m.max_idle, "idle above max_idle");
                        m.go_idle(id);
                    }
                }
            }
            Op::Sweep => {
                let pre_live = m.live();
                pool.sweep_once();
                let (created, destroyed, recycled, checked) = {
                    let l = log.lock().unwrap();
                    (l.created.clone(), l.destroyed.clone(), l.recycled.clone(), l.checked.clone())
                };
                let destroyed: BTreeSet<u64> = destroyed.into_iter().collect();
                // 1. Background recycles: every pending one, exactly once, except those
                //    past their lifetime, which are evicted without a recycle.
                let expired: Vec<u64> =
                    m.recycling.iter().copied().filter(|&i| m.now - m.meta[&i].created >= m.lifetime_ms).collect();
                for id in expired {
                    assert!(destroyed.contains(&id), "expired {id} was not evicted");
                    m.evicted(id, Why::Lifetime);
                }
                let attempted: BTreeSet<u64> = recycled.iter().map(|r| r.0).collect();
                assert_eq!(attempted, m.recycling, "sweep must recycle every pending one");
                assert_eq!(attempted.len(), recycled.len());
                for &(id, ok) in &recycled {
                    m.recycling.remove(&id);
                    if !ok {
                        assert!(pend_recycle && destroyed.contains(&id));
                        pend_recycle = false;
                        m.books.recycle_failures += 1;
                        m.gone(id);
                    } else if destroyed.contains(&id) && !checked.iter().any(|c| c.0 == id) {
                        // Destroyed without being checked: the ring was full.
                        m.evicted(id, Why::Surplus);
                    } else {
                        m.go_idle(id);
                    }
                }
                // 2. Stale idle all evicted; a failed check evicts the checked one.
                let stale: Vec<u64> = m.idle.iter().copied().filter(|&i| m.stale(i).is_some()).collect();
                for id in stale {
                    assert!(destroyed.contains(&id), "stale idle {id} survived the sweep");
                    let why = m.stale(id).unwrap();
                    m.evicted(id, why);
                }
                for &(id, ok) in &checked {
                    assert!(m.idle.contains(&id), "checked {id}, not idle");
                    if !ok {
                        assert!(pend_check && destroyed.contains(&id));
                        pend_check = false;
                        m.evicted(id, Why::Check);
                    }
                }
                // Every surviving idle resource was checked once.
                let checked_ok: BTreeSet<u64> = checked.iter().filter(|c| c.1).map(|c| c.0).collect();
                assert_eq!(checked_ok, m.idle);
                // 3. Refill to min_idle within max_size.
                let want = m.min_idle.saturating_sub(m.idle.len()).min(m.max_size - m.live());
                if pend_create && want > 0 {
                    assert!(created.is_empty());
                    pend_create = false;
                    m.books.create_failures += 1;
                } else {
                    assert_eq!(created.len(), want, "refill made the wrong number");
                }
                for &id in &created {
                    m.born(id);
                    m.idle.insert(id);
                }
                let accounted = destroyed.iter().all(|d| !m.meta.contains_key(d));
                assert!(accounted, "sweep destroyed something the model kept");
                assert!(m.live() <= pre_live.max(m.max_size));
            }
        }
        // Invariants and the books.
        assert!(m.live() <= m.max_size);
        assert!(m.idle.len() <= m.max_idle);
        let s = pool.stats();
        assert_eq!(s.live, m.live());
        assert_eq!(s.idle, m.idle.len());
        assert_eq!(s.leased, leases.len());
        assert_eq!(s.recycling, m.recycling.len());
        assert_eq!((s.being_made, s.waiting), (0, 0));
        let got = Books {
            hits: s.hits,
            misses: s.misses,
            waits: s.waits,
            wait_timeouts: s.wait_timeouts,
            created: s.created,
            create_failures: s.create_failures,
            destroyed: s.destroyed,
            discarded: s.discarded,
            recycle_failures: s.recycle_failures,
            ev_idle_age: s.evictions.idle_age,
            ev_lifetime: s.evictions.lifetime,
            ev_max_uses: s.evictions.max_uses,
            ev_check: s.evictions.check_failed,
            ev_surplus: s.evictions.surplus,
        };
        assert_eq!(got, m.books);
        assert_eq!(s.created - s.destroyed, s.live as u64);
        assert_eq!(log.lock().unwrap().alive.len(), m.live());
    }
    // Drop the pool with some leases out, then return them: nothing may survive.
    let keep = leases.split_off(leases.len() / 2);
    drop(leases);
    drop(pool);
    drop(keep);
    assert!(log.lock().unwrap().alive.is_empty(), "resources left alive after drop");
});
