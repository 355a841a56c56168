//! The sweeper: the pure [`Pool::sweep_once`] logic and the thread that runs it.

use super::core::Core;
use super::engine::Pool;
use super::idle::Idle;
use super::magazine::Shard;
use super::manager::Manager;
use super::stats::Reason;
use super::sync::{Arc, Ordering};

/// What one [`Pool::sweep_once`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Released resources recycled in the background and put back to idle.
    pub recycled: u64,
    /// Background recycles that failed (the resource was destroyed).
    pub recycle_failures: u64,
    /// Idle resources evicted (age, lifetime, failed check).
    pub evicted: u64,
    /// Resources made to refill to `min_idle`.
    pub created: u64,
    /// Refill creates that failed.
    pub create_failures: u64,
}

impl<M: Manager> Pool<M> {
    /// Runs one sweep on the calling thread: recycles released resources (background
    /// mode), evicts idle resources past `max_idle_age`/`max_lifetime` or failing
    /// [`Manager::check`], and refills to `min_idle`. The sweeper thread calls this every
    /// `sweep_interval`; tests and models call it directly.
    pub fn sweep_once(&self) -> SweepReport {
        sweep(&self.core)
    }
}

/// One sweep over the central ring and every thread's shard.
pub(crate) fn sweep<M: Manager>(core: &Core<M>) -> SweepReport {
    let mut rep = SweepReport::default();
    if core.is_shut_down() {
        return rep;
    }
    // 1. Background recycling.
    for _ in 0..core.recycle_q.len() {
        let Some(idle) = core.recycle_q.pop() else {
            break;
        };
        core.counters.recycling.fetch_sub(1, Ordering::Relaxed);
        if core.past_lifetime(&idle) {
            rep.evicted += 1;
            core.evict(idle, Reason::Lifetime, None);
            continue;
        }
        match core.recycle(idle, None) {
            Some(idle) => {
                rep.recycled += 1;
                core.put_idle(None, idle);
            }
            None => rep.recycle_failures += 1,
        }
    }
    // 2. Eviction and health checks, one resource at a time so the rest stay available.
    // Magazines can only be pushed by their owner, so what is kept from one goes to its
    // shard's inbox (the owner pops it when its magazine runs dry).
    let now = core.now();
    let mut examine = |mut idle: Idle<M::Resource>| -> Option<Idle<M::Resource>> {
        if let Some(reason) = core.stale(&idle, now) {
            rep.evicted += 1;
            core.evict(idle, reason, None);
            return None;
        }
        if let Err(e) = core.manager.check(&mut idle.res) {
            tracing::warn!(error = %e, "sandpool: health check failed; evicting");
            rep.evicted += 1;
            core.evict(idle, Reason::CheckFailed, None);
            return None;
        }
        Some(idle)
    };
    core.shards.with(|shards| {
        for shard in shards {
            for _ in 0..shard.inbox_entries() {
                let Some(idle) = shard.pop_inbox() else { break };
                if let Some(idle) = examine(idle) {
                    keep(core, shard, idle);
                }
            }
            for _ in 0..shard.magazine_entries() {
                let Some(idle) = shard.steal_magazine() else { break };
                if let Some(idle) = examine(idle) {
                    keep(core, shard, idle);
                }
            }
        }
    });
    for _ in 0..core.ring.len() {
        let Some(idle) = core.ring.pop() else { break };
        if let Some(idle) = examine(idle) {
            core.store_idle(None, idle);
        }
    }
    // 3. Refill to min_idle in the background.
    let min = core.config.min_idle;
    for _ in core.idle_len()..min {
        if core.is_shut_down() || !core.try_reserve() {
            break;
        }
        match core.create(None) {
            Ok(idle) => {
                rep.created += 1;
                store_anywhere(core, idle);
            }
            Err(e) => {
                rep.create_failures += 1;
                tracing::warn!(error = %e, "sandpool: refill create failed");
                break;
            }
        }
    }
    rep
}

/// Puts a resource the sweeper examined back where it came from (the shard's inbox), else
/// in the central ring.
fn keep<M: Manager>(core: &Core<M>, shard: &Shard<M::Resource>, idle: Idle<M::Resource>) {
    match shard.push_inbox(idle) {
        Ok(()) => core.after_push(None),
        Err(idle) => core.store_idle(None, idle),
    }
}

/// Puts a fresh resource where any idle one goes (the central ring, or any shard's inbox
/// with room).
fn store_anywhere<M: Manager>(core: &Core<M>, idle: Idle<M::Resource>) {
    core.store_idle(None, idle);
}

/// The sweeper thread's handle.
pub(crate) struct Sweeper {
    #[cfg(not(loom))]
    stop: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    #[cfg(not(loom))]
    thread: std::thread::JoinHandle<()>,
}

impl Sweeper {
    /// Starts the thread (under `cfg(loom)` no thread is started: models sweep by hand).
    #[cfg(not(loom))]
    pub(crate) fn spawn<M: Manager>(
        core: Arc<Core<M>>,
        every: std::time::Duration,
    ) -> std::io::Result<Option<Sweeper>> {
        let stop = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let stop2 = std::sync::Arc::clone(&stop);
        let start = std::time::Instant::now();
        let thread = std::thread::Builder::new().name("sandpool-sweeper".into()).spawn(move || {
            let (lock, cv) = &*stop2;
            let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                let (g, _) = cv.wait_timeout(stopped, every).unwrap_or_else(|p| p.into_inner());
                stopped = g;
                if *stopped {
                    return;
                }
                drop(stopped);
                let now = start.elapsed().as_millis() as u64 + core.skew.load(Ordering::Relaxed);
                core.hot.epoch.fetch_max(now, Ordering::Relaxed);
                sweep(&core);
                stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
            }
        })?;
        Ok(Some(Sweeper { stop, thread }))
    }

    /// Under `cfg(loom)` no thread is started.
    #[cfg(loom)]
    pub(crate) fn spawn<M: Manager>(
        _core: Arc<Core<M>>,
        _every: std::time::Duration,
    ) -> std::io::Result<Option<Sweeper>> {
        Ok(None)
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(self) {
        #[cfg(not(loom))]
        {
            let (lock, cv) = &*self.stop;
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cv.notify_all();
            let _ = self.thread.join();
        }
    }
}
