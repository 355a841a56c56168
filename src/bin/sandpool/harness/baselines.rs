//! The pools the engine is measured against, and the engine itself, behind one trait.
//!
//! Self-contained (it uses only the library, `crossbeam` and `parking_lot`) so that the
//! criterion bench `benches/engine.rs` can include this file alone.

use crossbeam::queue::ArrayQueue;
use sandpool::pool::{Manager, Pool, PoolConfig, PoolError};
use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Mutex;

/// Name of the engine mode.
pub(crate) const ENGINE: &str = "engine";
/// Names of the baseline modes, in table order.
pub(crate) const BASELINES: [&str; 3] = ["mutex-vecdeque", "parking-lot", "array-queue"];

/// Something whose acquire+release round trip is measured.
pub(crate) trait BenchPool: Sync {
    /// Acquires one item, touches it and releases it; `Err` if none could be had.
    fn round_trip(&self) -> Result<(), &'static str>;
}

/// `std::sync::Mutex<VecDeque>`: the original design.
struct MutexVecDequePool(Mutex<VecDeque<u64>>);
/// `parking_lot::Mutex<Vec>`.
struct ParkingLotPool(parking_lot::Mutex<Vec<u64>>);
/// A bare `crossbeam` `ArrayQueue`.
struct ArrayQueuePool(ArrayQueue<u64>);

impl MutexVecDequePool {
    /// Pre-filled with `size` items.
    fn new(size: usize) -> Self {
        MutexVecDequePool(Mutex::new((0..size as u64).collect()))
    }
}
impl ParkingLotPool {
    /// Pre-filled with `size` items.
    fn new(size: usize) -> Self {
        ParkingLotPool(parking_lot::Mutex::new((0..size as u64).collect()))
    }
}
impl ArrayQueuePool {
    /// Pre-filled with `size` items.
    fn new(size: usize) -> Self {
        let q = ArrayQueue::new(size.max(1));
        for i in 0..size as u64 {
            let _ = q.push(i);
        }
        ArrayQueuePool(q)
    }
}

impl BenchPool for MutexVecDequePool {
    #[inline]
    fn round_trip(&self) -> Result<(), &'static str> {
        let item = self.0.lock().unwrap().pop_front().ok_or("empty")?;
        black_box(item);
        self.0.lock().unwrap().push_back(item);
        Ok(())
    }
}
impl BenchPool for ParkingLotPool {
    #[inline]
    fn round_trip(&self) -> Result<(), &'static str> {
        let item = self.0.lock().pop().ok_or("empty")?;
        black_box(item);
        self.0.lock().push(item);
        Ok(())
    }
}
impl BenchPool for ArrayQueuePool {
    #[inline]
    fn round_trip(&self) -> Result<(), &'static str> {
        let item = self.0.pop().ok_or("empty")?;
        black_box(item);
        self.0.push(item).map_err(|_| "full")
    }
}

/// A manager of plain numbers, for measuring the engine alone.
struct Tokens(std::sync::atomic::AtomicU64);

impl Manager for Tokens {
    type Resource = u64;
    type Error = std::convert::Infallible;
    fn create(&self) -> Result<u64, Self::Error> {
        Ok(self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

/// The engine, warm, with `size` resources and no sweeper running.
struct EnginePool(Pool<Tokens>);

impl EnginePool {
    /// A warm engine pool of `size` resources.
    fn new(size: usize) -> Self {
        let size = size.max(1);
        let cfg = PoolConfig::builder()
            .max_size(size)
            .min_idle(size)
            .max_idle_age(None)
            .acquire_timeout(None)
            .sweep_interval(None)
            .build()
            .expect("valid bench config");
        let pool = Pool::new(Tokens(Default::default()), cfg).expect("no sweeper to spawn");
        pool.sweep_once();
        EnginePool(pool)
    }
}

impl BenchPool for EnginePool {
    #[inline]
    fn round_trip(&self) -> Result<(), &'static str> {
        match self.0.acquire() {
            Ok(l) => {
                black_box(*l);
                Ok(())
            }
            Err(PoolError::Exhausted { .. }) => Err("exhausted"),
            Err(_) => Err("error"),
        }
    }
}

/// A fresh, warm pool of `size` items for engine mode `name` ([`ENGINE`] or one of
/// [`BASELINES`]).
pub(crate) fn subject_for(name: &str, size: usize) -> Option<Box<dyn BenchPool>> {
    Some(match name {
        ENGINE => Box::new(EnginePool::new(size)),
        "mutex-vecdeque" => Box::new(MutexVecDequePool::new(size)),
        "parking-lot" => Box::new(ParkingLotPool::new(size)),
        "array-queue" => Box::new(ArrayQueuePool::new(size)),
        _ => return None,
    })
}
