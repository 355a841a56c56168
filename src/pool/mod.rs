//! The generic pool engine: [`Pool`], driven by a [`Manager`], handing out [`Lease`]s.
//!
//! Hot path: an acquire pops the most recently released resource from the calling thread's
//! magazine (a short LIFO work-stealing deque only that thread pushes to), else takes one
//! from the central idle ring (a `crossbeam` `ArrayQueue`), else steals the oldest entry of
//! another thread's magazine; a release pushes it back to the releasing thread's magazine.
//! No lock, no system call, no clock read (idle entries are stamped with a coarse epoch
//! that the sweeper advances). Only when nothing is idle does the caller make a resource
//! (reserving a unit of `max_size` by compare-and-swap first) or wait, FIFO, for a release.
//!
//! A warm round trip costs one memory fence (the deque's pop) and writes only cache lines
//! of the calling thread: the resource travels as one pointer, the hit counter has a single
//! writer, and [`Pool::acquire`] returns a [`Lease`] that borrows the pool instead of
//! counting a reference ([`Lease::into_owned`] makes one that may outlive it). A release
//! must still see a waiter that registered meanwhile; it does so through an asymmetric
//! barrier: a compiler fence on the release, `membarrier(2)` on the rare waiter (a full
//! fence on both sides where `membarrier` is unavailable).
//!
//! The sweeper thread (every `sweep_interval`) evicts stale and unhealthy idle resources
//! (the magazines' too), recycles released ones in [`RecycleMode::Background`], and
//! refills to `min_idle`, so a warm pool never makes a resource on the caller's path. Its
//! logic is [`Pool::sweep_once`], which tests and models call directly.
//!
//! # Example
//!
//! ```
//! use sandpool::pool::{Manager, Pool, PoolConfig};
//! use std::time::Duration;
//!
//! struct Buffers;
//! impl Manager for Buffers {
//!     type Resource = Vec<u8>;
//!     type Error = std::io::Error;
//!     fn create(&self) -> Result<Vec<u8>, std::io::Error> {
//!         Ok(Vec::with_capacity(4096))
//!     }
//!     fn recycle(&self, buf: &mut Vec<u8>) -> Result<(), std::io::Error> {
//!         buf.clear();
//!         Ok(())
//!     }
//! }
//!
//! let config = PoolConfig::builder()
//!     .max_size(8)
//!     .min_idle(2)
//!     .acquire_timeout(Some(Duration::from_secs(1)))
//!     .build()?;
//! let pool = Pool::new(Buffers, config)?;
//! {
//!     let mut buf = pool.acquire()?;
//!     buf.extend_from_slice(b"hello");
//! } // back to the pool, cleared
//! assert_eq!(pool.stats().leased, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod acquire_async;
mod config;
mod core;
mod engine;
mod error;
mod idle;
mod lease;
mod magazine;
mod manager;
mod stats;
mod sweeper;
mod sync;
mod waiters;

pub use acquire_async::{AcquireFuture, Granted, Reservation};
pub use config::{ConfigError, PoolConfig, PoolConfigBuilder, RecycleMode};
pub use engine::Pool;
pub use error::PoolError;
pub use lease::Lease;
pub use manager::{Manager, PoolEvent};
pub use stats::{Evictions, Stats};
pub use sweeper::SweepReport;
