//! [`Local`] and [`Shard`]: the per-thread layer in front of the idle ring.
//!
//! Each thread that uses a pool gets a [`Local`] (per-pool thread-local storage): its own
//! magazine, a short LIFO work-stealing deque of idle resources, and its own hit counter.
//! The owner pushes and pops its magazine with plain loads and stores plus one fence per
//! pop (Chase-Lev), and bumps its counter with a plain store: a round trip touches no
//! cache line another thread writes. LIFO keeps the most recently used resource hot.
//!
//! Every `Local` has a [`Shard`], its shared face, listed in the pool's registry: other
//! threads steal from it (oldest first) when their magazine and the central ring are empty,
//! and the sweeper steals from it to examine and drain. A resource the sweeper keeps goes
//! to the shard's inbox, a small bounded ring the owner pops when its magazine is empty
//! (nobody but the owner may push to a magazine). Magazine plus inbox hold at most `cap`
//! entries. A pool makes its `shards` shards up front and a thread claims a free one on
//! first use; threads beyond that get no magazine and use the central ring. So idle
//! resources never exceed `max_idle`, and the sweeper can fill unclaimed inboxes.

use super::idle::Idle;
use super::sync::{Arc, AtomicU64, AtomicUsize, CachePadded, Mutex, Ordering, Ring, Steal, Stealer, Worker, lock};

/// The words the owner reads or writes on every acquire and release, on one cache line.
#[derive(Default)]
pub(crate) struct OwnerLine {
    /// Acquires this thread served from idle. Only the owning thread writes it (a load
    /// and a store, no read-modify-write); `stats` reads it.
    pub(crate) hits: AtomicU64,
    /// Entries in the inbox, counted up before a push and down after a pop, so it never
    /// reads low (a release checks it instead of the inbox's own two cache lines).
    inbox_len: AtomicUsize,
}

/// The shared face of one thread's [`Local`].
pub(crate) struct Shard<R> {
    pub(crate) line: CachePadded<OwnerLine>,
    stealer: Option<Stealer<Idle<R>>>,
    inbox: Option<Ring<Idle<R>>>,
    cap: usize,
    /// The owner end of the magazine until a thread claims it.
    unclaimed: Mutex<Option<Worker<Idle<R>>>>,
}

impl<R> Shard<R> {
    /// A shard with a magazine of `cap` entries (`cap > 0`), waiting for a thread.
    pub(crate) fn with_magazine(cap: usize) -> Self {
        let worker = Worker::new_lifo();
        Shard {
            line: CachePadded::new(OwnerLine::default()),
            stealer: Some(worker.stealer()),
            inbox: Some(Ring::new(cap)),
            cap,
            unclaimed: Mutex::new(Some(worker)),
        }
    }

    /// A shard of a thread that got no magazine: only its hit counter.
    fn counters_only() -> Self {
        Shard {
            line: CachePadded::new(OwnerLine::default()),
            stealer: None,
            inbox: None,
            cap: 0,
            unclaimed: Mutex::new(None),
        }
    }

    /// Takes the owner end of this shard's magazine, if no thread has yet.
    pub(crate) fn claim(shard: &Arc<Self>) -> Option<Local<R>> {
        let magazine = lock(&shard.unclaimed).take()?;
        Some(Local { magazine: Some(magazine), shard: Arc::clone(shard) })
    }

    /// Idle resources in the magazine and the inbox.
    pub(crate) fn idle_len(&self) -> usize {
        self.magazine_entries() + self.inbox_entries()
    }

    /// Entries in the inbox (never reads low, see [`OwnerLine::inbox_len`]).
    #[inline]
    pub(crate) fn inbox_entries(&self) -> usize {
        self.line.inbox_len.load(Ordering::Relaxed)
    }

    /// Entries in the magazine.
    pub(crate) fn magazine_entries(&self) -> usize {
        self.stealer.as_ref().map_or(0, |s| s.len())
    }

    /// Steals the oldest magazine entry (the inbox last).
    pub(crate) fn steal(&self) -> Option<Idle<R>> {
        self.steal_magazine().or_else(|| self.pop_inbox())
    }

    /// Steals the oldest entry of the magazine only.
    pub(crate) fn steal_magazine(&self) -> Option<Idle<R>> {
        let stealer = self.stealer.as_ref()?;
        loop {
            match stealer.steal() {
                Steal::Success(idle) => return Some(idle),
                Steal::Empty => return None,
                Steal::Retry => std::hint::spin_loop(),
            }
        }
    }

    /// Pops one inbox entry.
    pub(crate) fn pop_inbox(&self) -> Option<Idle<R>> {
        let idle = self.inbox.as_ref()?.pop()?;
        self.line.inbox_len.fetch_sub(1, Ordering::Relaxed);
        Some(idle)
    }

    /// Puts a resource in the inbox if magazine plus inbox are below `cap` (the sweeper's
    /// way back into a magazine it stole from). A release racing this can leave one more
    /// than `cap` until the owner's next acquire.
    pub(crate) fn push_inbox(&self, idle: Idle<R>) -> Result<(), Idle<R>> {
        match &self.inbox {
            Some(inbox) if self.idle_len() < self.cap => {
                self.line.inbox_len.fetch_add(1, Ordering::Relaxed);
                inbox.push(idle).inspect_err(|_| {
                    self.line.inbox_len.fetch_sub(1, Ordering::Relaxed);
                })
            }
            _ => Err(idle),
        }
    }
}

/// One thread's view of a pool: its magazine (owner end) and its shard.
pub(crate) struct Local<R> {
    magazine: Option<Worker<Idle<R>>>,
    pub(crate) shard: Arc<Shard<R>>,
}

impl<R> Local<R> {
    /// A local without a magazine (every magazine is taken).
    pub(crate) fn without_magazine() -> Self {
        Local { magazine: None, shard: Arc::new(Shard::counters_only()) }
    }

    /// Pops the most recently pushed magazine entry, else an inbox entry.
    #[inline]
    pub(crate) fn pop(&self) -> Option<Idle<R>> {
        match &self.magazine {
            Some(m) => m.pop().or_else(|| self.empty_inbox(m)),
            None => None,
        }
    }

    /// Takes one inbox entry and moves the rest into the (empty) magazine, so the next
    /// pops find it there: a pop that leaves a deque empty costs a compare-and-swap more.
    #[cold]
    fn empty_inbox(&self, magazine: &Worker<Idle<R>>) -> Option<Idle<R>> {
        let first = self.shard.pop_inbox()?;
        while let Some(idle) = self.shard.pop_inbox() {
            magazine.push(idle);
        }
        Some(first)
    }

    /// Pushes to the magazine if it has room; hands the resource back otherwise.
    #[inline]
    pub(crate) fn push(&self, idle: Idle<R>) -> Result<(), Idle<R>> {
        match &self.magazine {
            Some(m) if m.len() + self.shard.inbox_entries() < self.shard.cap => {
                m.push(idle);
                Ok(())
            }
            _ => Err(idle),
        }
    }

    /// Counts one hit (single writer: this thread).
    #[inline]
    pub(crate) fn count_hit(&self) {
        let hits = &self.shard.line.hits;
        hits.store(hits.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}
