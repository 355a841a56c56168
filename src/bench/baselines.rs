//! The pools the engine is measured against, and the engine itself, behind one trait.

use crate::pool::{Manager, Pool, PoolConfig, PoolError};
use crossbeam::queue::ArrayQueue;
use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Mutex;

/// Something whose acquire+release round trip is measured.
pub trait BenchPool: Sync {
    /// Acquires one item, touches it and releases it; `Err` if none could be had.
    fn round_trip(&self) -> Result<(), &'static str>;
}

/// `std::sync::Mutex<VecDeque>`: the original design.
pub struct MutexVecDequePool(Mutex<VecDeque<u64>>);
/// `parking_lot::Mutex<Vec>`.
pub struct ParkingLotPool(parking_lot::Mutex<Vec<u64>>);
/// A bare `crossbeam` `ArrayQueue`.
pub struct ArrayQueuePool(ArrayQueue<u64>);

impl MutexVecDequePool {
    /// Pre-filled with `size` items.
    pub fn new(size: usize) -> Self {
        MutexVecDequePool(Mutex::new((0..size as u64).collect()))
    }
}
impl ParkingLotPool {
    /// Pre-filled with `size` items.
    pub fn new(size: usize) -> Self {
        ParkingLotPool(parking_lot::Mutex::new((0..size as u64).collect()))
    }
}
impl ArrayQueuePool {
    /// Pre-filled with `size` items.
    pub fn new(size: usize) -> Self {
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
pub struct Tokens(std::sync::atomic::AtomicU64);

impl Manager for Tokens {
    type Resource = u64;
    type Error = std::convert::Infallible;
    fn create(&self) -> Result<u64, Self::Error> {
        Ok(self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

/// The engine, warm, with `size` resources and no sweeper running.
pub struct EnginePool(Pool<Tokens>);

impl EnginePool {
    /// A warm engine pool of `size` resources.
    pub fn new(size: usize) -> Self {
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

    /// The pool.
    pub fn pool(&self) -> &Pool<Tokens> {
        &self.0
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
