//! The warm sandbox pool: [`SandboxPool`], the engine ([`crate::pool`]) driving sandboxes
//! ([`crate::sandbox`]) through [`SandboxManager`].
//!
//! ```no_run
//! use sandpool::{SandboxPool, sandbox::{Command, Policy}};
//! let pool = SandboxPool::builder(Policy::default()).max_size(8).min_idle(4).build()?;
//! let mut sandbox = pool.acquire()?;            // a ready sandbox, in nanoseconds when warm
//! let out = sandbox.run(&Command::new("echo").arg("hi"))?;
//! assert_eq!(out.stdout, b"hi\n");
//! drop(sandbox);                                // wiped in the background, then reused
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A lease is a session: its `run`s share `/tmp`. When it ends having left something behind,
//! the releasing thread only asks the sandbox to reset (one `sendmsg`); the sandbox's init ends
//! the session and starts a fresh one while the caller goes on, and the pool's collector
//! thread, waiting on all resets at once with `epoll`, gives the sandbox back to the pool only
//! once its reset succeeded. A lease that left nothing goes back at once. A sandbox whose command timed out,
//! whose init died, or whose reset failed is destroyed, and the sweeper makes a new one to
//! keep `min_idle` ready. The sweeper also checks idle sandboxes (one `poll` of their
//! pidfds, never on the acquire path), so one killed from outside while idle is replaced.

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender};
use crossbeam::utils::CachePadded;
use thiserror::Error;

use crate::pool::{ConfigError, Lease, Manager, Pool, PoolConfig, PoolError, RecycleMode, Stats};
use crate::sandbox::{Command, Output, Policy, Readiness, ResetKind, Sandbox, SandboxError};

/// Counters of what happened to sandboxes, beyond the engine's [`Stats`].
#[derive(Debug, Default)]
struct SandboxCounters {
    resets: CachePadded<AtomicU64>,
    resets_made_ahead: AtomicU64,
    resets_in_place: AtomicU64,
    resets_skipped: AtomicU64,
    reset_failures: AtomicU64,
    deaths_detected: AtomicU64,
    destroy_failures: AtomicU64,
    broken_leases: AtomicU64,
    resetting: CachePadded<AtomicUsize>,
}

/// Plugs [`Sandbox`]es into the engine: make = [`Sandbox::spawn`], recycle = [`Sandbox::reset`]
/// (when the sandbox was used), check = is its init alive, destroy = kill through the pidfd.
#[derive(Debug)]
pub struct SandboxManager {
    policy: Policy,
    counters: Arc<SandboxCounters>,
    /// The pool's name, its `pool` label in metrics.
    name: Arc<str>,
}

impl SandboxManager {
    /// A manager making sandboxes with `policy`.
    pub fn new(policy: Policy) -> Self {
        SandboxManager { policy, counters: Arc::default(), name: Arc::from(DEFAULT_NAME) }
    }

    /// The policy sandboxes are made with.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The name of the pool it makes sandboxes for (see [`SandboxPoolBuilder::name`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn reset(&self, sandbox: &mut Sandbox) -> Result<(), SandboxError> {
        sandbox.start_reset(true).and_then(|()| self.finish_reset(sandbox))
    }

    /// Collects a started reset, counting it.
    fn finish_reset(&self, sandbox: &mut Sandbox) -> Result<(), SandboxError> {
        match sandbox.finish_reset() {
            Ok(kind) => {
                self.counters.resets.fetch_add(1, Ordering::Relaxed);
                match kind {
                    ResetKind::InPlace => self.counters.resets_in_place.fetch_add(1, Ordering::Relaxed),
                    ResetKind::MadeAhead => self.counters.resets_made_ahead.fetch_add(1, Ordering::Relaxed),
                    ResetKind::NewSession => 0,
                };
                Ok(())
            }
            Err(e) => {
                tracing::warn!(pid = sandbox.pid(), error = %e, "sandpool: sandbox reset failed; destroying it");
                self.counters.reset_failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

impl Manager for SandboxManager {
    type Resource = Sandbox;
    type Error = SandboxError;

    fn create(&self) -> Result<Sandbox, SandboxError> {
        Sandbox::spawn(&self.policy)
    }

    /// The pool's collector gives a used sandbox back to the engine only once its reset is
    /// done; this resets one that comes back some other way (never the hot path).
    fn recycle(&self, sandbox: &mut Sandbox) -> Result<(), SandboxError> {
        if sandbox.is_clean() { Ok(()) } else { self.reset(sandbox) }
    }

    fn check(&self, sandbox: &mut Sandbox) -> Result<(), SandboxError> {
        if sandbox.is_alive() {
            Ok(())
        } else {
            self.counters.deaths_detected.fetch_add(1, Ordering::Relaxed);
            Err(SandboxError::Dead)
        }
    }

    #[cfg(feature = "metrics")]
    fn observe(&self, event: crate::pool::PoolEvent) {
        use crate::pool::PoolEvent;
        match event {
            PoolEvent::Acquired { waited } => crate::metrics::observe(&self.name, crate::metrics::ACQUIRE_WAIT, waited),
            PoolEvent::Created { took } => crate::metrics::observe(&self.name, crate::metrics::CREATE_DURATION, took),
        }
    }

    fn destroy(&self, sandbox: Sandbox) {
        let pid = sandbox.pid();
        // Busy cgroups go to the background remover, which counts what it cannot remove
        // (`sandbox::cgroup_removal_failures`): this may run on a thread releasing a lease.
        if let Err(e) = sandbox.destroy_without_waiting() {
            self.counters.destroy_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(pid, error = %e, "sandpool: destroying a sandbox failed");
        }
    }
}

/// Why a [`SandboxPool`] could not be built.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SandboxPoolError {
    /// The pool configuration was refused.
    #[error("invalid pool configuration")]
    Config(#[from] ConfigError),
    /// The engine could not start (its sweeper thread).
    #[error("could not start the pool")]
    Start(#[source] PoolError<SandboxError>),
    /// The reset collector (its thread or its `epoll` set) could not be started.
    #[error("could not start the reset collector")]
    Collector(#[source] std::io::Error),
}

/// A snapshot of a [`SandboxPool`]: the engine's [`Stats`] plus what happened to sandboxes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SandboxPoolStats {
    /// The engine's counters (live, idle, leased, hits, created, destroyed, ...). Sandboxes
    /// being reset count as leased until their reset ends.
    pub pool: Stats,
    /// Successful resets.
    pub resets: u64,
    /// Of those, the resets that switched to a session made ahead of need (each sandbox keeps
    /// its next session ready once it has been reset: the reset only ends the old one).
    pub resets_made_ahead: u64,
    /// Of those, the resets in place: the lease's commands changed nothing but files in
    /// `/tmp` and `/dev/shm`, so the sandbox kept its session and got fresh file systems
    /// there (see [`Sandbox::reset`](crate::sandbox::Sandbox::reset)).
    pub resets_in_place: u64,
    /// Leases that ended with the session as a reset leaves it (their commands left nothing
    /// behind), so the sandbox went back to idle at once, without a reset.
    pub resets_skipped: u64,
    /// Failed resets (the sandbox was destroyed).
    pub reset_failures: u64,
    /// Idle sandboxes found dead by the sweeper, plus leased ones whose init was found dead.
    pub deaths_detected: u64,
    /// Sandboxes destroyed at the end of a lease because a command timed out or the sandbox
    /// broke.
    pub broken_leases: u64,
    /// Destroys that reported an error.
    pub destroy_failures: u64,
    /// Sandboxes waiting for or undergoing a reset right now.
    pub resetting: usize,
    /// Commands killed because the async caller watching them went away (a `run_async`
    /// future or an `AsyncChild` dropped before the command ended; feature `tokio`).
    pub runs_cancelled: u64,
}

/// A released lease on its way to the collector: its reset was started (`token` names it in
/// the readiness set), or it is to be destroyed.
struct Returned {
    lease: Lease<'static, SandboxManager>,
    token: u64,
    destroy: bool,
    /// When the releasing thread asked for the reset.
    asked: Instant,
}

struct Shared {
    counters: Arc<SandboxCounters>,
    /// The pool's name (its metrics' `pool` label).
    name: Arc<str>,
    /// How many hits the acquire-wait histogram holds (see `metrics::publish`).
    #[cfg(feature = "metrics")]
    hits_published: std::sync::Mutex<u64>,
    /// Commands killed because the async future or child watching them was dropped.
    runs_cancelled: Arc<AtomicU64>,
    shutdown: AtomicBool,
    returns: Sender<Returned>,
    readiness: Readiness,
}

/// Builds a [`SandboxPool`]; every setting has a documented default.
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct SandboxPoolBuilder {
    policy: Policy,
    name: String,
    max_size: usize,
    min_idle: Option<usize>,
    max_uses: Option<u64>,
    max_lifetime: Option<Duration>,
    max_idle_age: Option<Duration>,
    acquire_timeout: Option<Duration>,
    sweep_interval: Duration,
}

impl SandboxPoolBuilder {
    /// The pool's name: the `pool` label of its metrics (feature `metrics`), to tell several
    /// pools of one host apart. Default: `"default"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// Most sandboxes alive at once (idle + leased + being made or reset). Default: 16.
    pub fn max_size(mut self, n: usize) -> Self {
        self.max_size = n;
        self
    }
    /// Sandboxes kept ready, made in the background. Default: `max_size`, at most 4.
    pub fn min_idle(mut self, n: usize) -> Self {
        self.min_idle = Some(n);
        self
    }
    /// Leases a sandbox serves before it is replaced. Default: unlimited.
    pub fn max_uses(mut self, n: Option<u64>) -> Self {
        self.max_uses = n;
        self
    }
    /// Age after which a sandbox is replaced. Default: none.
    pub fn max_lifetime(mut self, d: Option<Duration>) -> Self {
        self.max_lifetime = d;
        self
    }
    /// Idle time after which a sandbox is destroyed (above `min_idle` it is not remade).
    /// Default: 10 minutes.
    pub fn max_idle_age(mut self, d: Option<Duration>) -> Self {
        self.max_idle_age = d;
        self
    }
    /// How long `acquire` waits when every sandbox is in use. Default: 30 s.
    pub fn acquire_timeout(mut self, d: Option<Duration>) -> Self {
        self.acquire_timeout = d;
        self
    }
    /// How often the sweeper checks idle sandboxes and refills. Default: 200 ms.
    pub fn sweep_interval(mut self, d: Duration) -> Self {
        self.sweep_interval = d;
        self
    }
    /// Starts the pool: the engine, its sweeper (which makes `min_idle` sandboxes in the
    /// background) and the reset collector thread.
    pub fn build(self) -> Result<SandboxPool, SandboxPoolError> {
        let config = PoolConfig::builder()
            .max_size(self.max_size)
            .min_idle(self.min_idle.unwrap_or(self.max_size.min(4)))
            .max_uses(self.max_uses)
            .max_lifetime(self.max_lifetime)
            .max_idle_age(self.max_idle_age)
            .acquire_timeout(self.acquire_timeout)
            .sweep_interval(Some(self.sweep_interval))
            .recycle(RecycleMode::Inline)
            .build()?;
        let name: Arc<str> = Arc::from(self.name.as_str());
        let manager = SandboxManager { name: Arc::clone(&name), ..SandboxManager::new(self.policy) };
        let counters = Arc::clone(&manager.counters);
        #[cfg(feature = "metrics")]
        crate::metrics::describe();
        let pool = Arc::new(Pool::new(manager, config).map_err(SandboxPoolError::Start)?);
        let (tx, rx) = crossbeam::channel::unbounded();
        let readiness = Readiness::new().map_err(SandboxPoolError::Collector)?;
        let shared = Arc::new(Shared {
            counters,
            name,
            #[cfg(feature = "metrics")]
            hits_published: std::sync::Mutex::new(0),
            runs_cancelled: Arc::default(),
            shutdown: AtomicBool::new(false),
            returns: tx,
            readiness,
        });
        let collector = {
            let shared = Arc::clone(&shared);
            let pool = Arc::clone(&pool);
            std::thread::Builder::new()
                .name("sandpool-resets".into())
                .spawn(move || collect_resets(&pool, &shared, &rx))
                .map_err(SandboxPoolError::Collector)?
        };
        Ok(SandboxPool { pool, shared, collector: Some(collector) })
    }
}

/// The name of a pool that was given none.
const DEFAULT_NAME: &str = "default";

/// How long a started reset may take before the sandbox is given up on.
const RESET_TIMEOUT: Duration = Duration::from_secs(30);

/// The collector: takes released sandboxes whose reset the releasing thread started, waits
/// (one `epoll` set for all of them) until each answers, and gives it back to the pool if the
/// reset succeeded or destroys it. Destroys the ones released broken.
fn collect_resets(pool: &Pool<SandboxManager>, shared: &Shared, rx: &Receiver<Returned>) {
    let manager = pool.manager();
    let counters = &shared.counters;
    let mut pending: HashMap<u64, (Lease<'static, SandboxManager>, Instant)> = HashMap::new();
    #[cfg(feature = "metrics")]
    let mut published = Instant::now();
    // Answers seen before their lease came out of the channel (the releasing thread arms the
    // readiness set before it sends the lease).
    let mut early: HashSet<u64> = HashSet::new();
    let mut ready = Vec::new();
    let finish = |mut lease: Lease<'static, SandboxManager>, asked: Instant| {
        if manager.finish_reset(&mut lease).is_ok() {
            #[cfg(feature = "metrics")]
            crate::metrics::observe(&shared.name, crate::metrics::RESET_DURATION, asked.elapsed());
            #[cfg(not(feature = "metrics"))]
            let _ = asked;
            drop(lease); // clean: back to idle
        } else {
            Lease::discard(lease);
        }
        counters.resetting.fetch_sub(1, Ordering::Relaxed);
    };
    let give_up = |lease: Lease<'static, SandboxManager>| {
        Lease::discard(lease);
        counters.resetting.fetch_sub(1, Ordering::Relaxed);
    };
    loop {
        ready.clear();
        if let Err(e) = shared.readiness.wait(&mut ready, Duration::from_millis(100)) {
            tracing::warn!(error = %e, "sandpool: waiting for resets failed");
            std::thread::sleep(Duration::from_millis(10));
        }
        let shutting_down = shared.shutdown.load(Ordering::Acquire);
        while let Ok(Returned { lease, token, destroy, asked }) = rx.try_recv() {
            if destroy || shutting_down {
                if destroy {
                    counters.broken_leases.fetch_add(1, Ordering::Relaxed);
                }
                give_up(lease);
            } else if early.remove(&token) {
                finish(lease, asked);
            } else {
                pending.insert(token, (lease, asked));
            }
        }
        for token in ready.drain(..) {
            match pending.remove(&token) {
                Some((lease, asked)) => finish(lease, asked),
                None => {
                    early.insert(token);
                }
            }
        }
        // A spawner that never answers (stopped, wedged): give the sandbox up.
        let stuck: Vec<u64> =
            pending.iter().filter(|(_, (_, since))| since.elapsed() > RESET_TIMEOUT).map(|(t, _)| *t).collect();
        for token in stuck {
            if let Some((lease, _)) = pending.remove(&token) {
                tracing::warn!(pid = lease.pid(), "sandpool: a reset did not answer; destroying the sandbox");
                counters.reset_failures.fetch_add(1, Ordering::Relaxed);
                give_up(lease);
            }
        }
        if shutting_down {
            pending.drain().for_each(|(_, (lease, _))| give_up(lease));
            return;
        }
        #[cfg(feature = "metrics")]
        if published.elapsed() >= crate::metrics::PUBLISH_INTERVAL {
            publish(pool, shared);
            published = Instant::now();
        }
    }
}

/// A snapshot of a pool: the engine's and the sandboxes' counters.
fn stats_of(pool: &Pool<SandboxManager>, shared: &Shared) -> SandboxPoolStats {
    let c = &shared.counters;
    SandboxPoolStats {
        pool: pool.stats(),
        resets: c.resets.load(Ordering::Relaxed),
        resets_skipped: c.resets_skipped.load(Ordering::Relaxed),
        resets_made_ahead: c.resets_made_ahead.load(Ordering::Relaxed),
        resets_in_place: c.resets_in_place.load(Ordering::Relaxed),
        reset_failures: c.reset_failures.load(Ordering::Relaxed),
        deaths_detected: c.deaths_detected.load(Ordering::Relaxed),
        broken_leases: c.broken_leases.load(Ordering::Relaxed),
        destroy_failures: c.destroy_failures.load(Ordering::Relaxed),
        resetting: c.resetting.load(Ordering::Relaxed),
        runs_cancelled: shared.runs_cancelled.load(Ordering::Relaxed),
    }
}

/// Publishes a pool's counters and gauges to the metrics recorder.
#[cfg(feature = "metrics")]
fn publish(pool: &Pool<SandboxManager>, shared: &Shared) {
    let stats = stats_of(pool, shared);
    let mut hits = shared.hits_published.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    crate::metrics::publish(&shared.name, &stats, &mut hits);
}

/// A warm pool of sandboxes. See the [module docs](self).
pub struct SandboxPool {
    pool: Arc<Pool<SandboxManager>>,
    shared: Arc<Shared>,
    collector: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SandboxPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxPool").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl SandboxPool {
    /// A builder for a pool of sandboxes made with `policy`.
    pub fn builder(policy: Policy) -> SandboxPoolBuilder {
        SandboxPoolBuilder {
            policy,
            name: DEFAULT_NAME.into(),
            max_size: 16,
            min_idle: None,
            max_uses: None,
            max_lifetime: None,
            max_idle_age: Some(Duration::from_secs(600)),
            acquire_timeout: Some(Duration::from_secs(30)),
            sweep_interval: Duration::from_millis(200),
        }
    }

    pub(crate) fn lease(&self, lease: Lease<'static, SandboxManager>) -> SandboxLease {
        SandboxLease { lease: Some(lease), shared: Arc::clone(&self.shared), broken: false }
    }

    /// Takes a ready sandbox, waiting up to the acquire timeout if all are in use.
    pub fn acquire(&self) -> Result<SandboxLease, PoolError<SandboxError>> {
        self.pool.acquire_owned().map(|l| self.lease(l))
    }

    /// Takes a ready sandbox without waiting.
    pub fn try_acquire(&self) -> Result<SandboxLease, PoolError<SandboxError>> {
        self.pool.try_acquire().map(Lease::into_owned).map(|l| self.lease(l))
    }

    /// Runs one command in a sandbox of its own: acquire, run, release.
    pub fn run(&self, cmd: &Command) -> Result<Output, SandboxPoolRunError> {
        let mut lease = self.acquire()?;
        Ok(lease.run(cmd)?)
    }

    /// Runs one sweep now (checks idle sandboxes, refills to `min_idle`); the sweeper does
    /// this on its own every `sweep_interval`.
    pub fn sweep_once(&self) -> crate::pool::SweepReport {
        self.pool.sweep_once()
    }

    /// Waits until `min_idle` sandboxes are ready (sweeping on this thread), or `timeout`.
    /// Returns whether they are.
    pub fn warm_up(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.pool.stats().idle >= self.pool.config().min_idle() {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            self.pool.sweep_once();
        }
    }

    /// A snapshot of the pool's state and counters.
    pub fn stats(&self) -> SandboxPoolStats {
        stats_of(&self.pool, &self.shared)
    }

    /// Publishes the pool's counters and gauges to the installed metrics recorder now (the
    /// collector thread does it every [`PUBLISH_INTERVAL`](crate::metrics::PUBLISH_INTERVAL)).
    #[cfg(feature = "metrics")]
    pub fn publish_metrics(&self) {
        publish(&self.pool, &self.shared);
    }

    /// Its name (see [`SandboxPoolBuilder::name`]).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The engine's configuration.
    pub fn config(&self) -> &PoolConfig {
        self.pool.config()
    }

    #[cfg(feature = "tokio")]
    /// The engine.
    pub(crate) fn engine(&self) -> &Pool<SandboxManager> {
        &self.pool
    }
}

impl Drop for SandboxPool {
    /// Stops the collector (sandboxes still waiting for a reset are destroyed), then the
    /// engine, which destroys every idle sandbox; sandboxes still leased are destroyed when
    /// their lease ends.
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.pool.close();
        self.shared.readiness.wake();
        if let Some(h) = self.collector.take() {
            let _ = h.join();
        }
    }
}

/// Why [`SandboxPool::run`] failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SandboxPoolRunError {
    /// No sandbox could be acquired.
    #[error("could not acquire a sandbox")]
    Acquire(#[from] PoolError<SandboxError>),
    /// The sandbox could not run the command.
    #[error("could not run the command")]
    Run(#[from] SandboxError),
}

/// A sandbox on loan from a [`SandboxPool`]: a session whose `run`s share `/tmp`.
/// Dereferences (shared only) to the [`Sandbox`], for what it reports; what changes the
/// sandbox goes through the lease ([`SandboxLease::run`], [`SandboxLease::reset`]), which
/// marks it broken when the sandbox fails. Dropping it starts the reset and hands the sandbox
/// to the collector (the caller never waits for the reset).
///
/// ```no_run
/// # fn f(lease: &sandpool::SandboxLease) {
/// let sandbox: &sandpool::sandbox::Sandbox = lease; // what it applied, its pid, ...
/// println!("{:?}", sandbox.isolation());
/// # }
/// ```
///
/// No `&mut Sandbox` comes out of a lease, so nothing can change the sandbox behind the
/// lease's back:
///
/// ```compile_fail
/// # fn f(lease: &mut sandpool::SandboxLease) {
/// let sandbox: &mut sandpool::sandbox::Sandbox = &mut *lease;
/// # }
/// ```
#[must_use = "dropping a lease at once hands the sandbox back"]
pub struct SandboxLease {
    lease: Option<Lease<'static, SandboxManager>>,
    shared: Arc<Shared>,
    broken: bool,
}

impl SandboxLease {
    /// Runs a command in this lease's sandbox. A timed-out command or a broken sandbox marks
    /// the lease so that the sandbox is destroyed (not reused) when the lease ends.
    pub fn run(&mut self, cmd: &Command) -> Result<Output, SandboxError> {
        let result = self.sandbox_mut().run(cmd);
        self.judge(&result);
        result
    }

    /// Marks the lease broken after a run that timed out or broke the sandbox, and records the
    /// run's time.
    pub(crate) fn judge(&mut self, result: &Result<Output, SandboxError>) {
        #[cfg(feature = "metrics")]
        if let Ok(out) = result {
            crate::metrics::observe(&self.shared.name, crate::metrics::COMMAND_DURATION, out.duration);
        }
        match result {
            Ok(out) if out.timed_out => self.broken = true,
            Err(SandboxError::Dead) => {
                self.shared.counters.deaths_detected.fetch_add(1, Ordering::Relaxed);
                self.broken = true;
            }
            Err(e) if e.is_fatal() => self.broken = true,
            _ => {}
        }
    }

    /// Where a command killed because its async caller went away is counted.
    #[cfg(feature = "tokio")]
    pub(crate) fn runs_cancelled(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.shared.runs_cancelled)
    }

    /// Starts a fresh session within the lease (see [`Sandbox::reset`]): what earlier
    /// commands of the lease did is gone. A failed reset marks the lease so that the sandbox
    /// is destroyed when the lease ends.
    pub fn reset(&mut self) -> Result<(), SandboxError> {
        let result = self.sandbox_mut().reset();
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// Ends the lease destroying the sandbox instead of reusing it.
    pub fn discard(mut self) {
        self.broken = true;
    }

    /// Whether the sandbox will be destroyed rather than reused when the lease ends.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    fn sandbox_mut(&mut self) -> &mut Sandbox {
        self.lease.as_mut().expect("lease present until drop")
    }
}

impl std::fmt::Debug for SandboxLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxLease")
            .field("pid", &self.lease.as_ref().map(|l| l.pid()))
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Deref for SandboxLease {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        self.lease.as_ref().expect("lease present until drop")
    }
}

impl Drop for SandboxLease {
    /// Starts the reset (one `sendmsg`, one `epoll_ctl`: the caller never waits for it) and
    /// hands the sandbox to the collector; a broken one goes there to be destroyed.
    fn drop(&mut self) {
        let Some(mut lease) = self.lease.take() else { return };
        let shared = &self.shared;
        if shared.shutdown.load(Ordering::Acquire) {
            Lease::discard(lease);
            return;
        }
        if !self.broken && lease.is_clean() {
            // Nothing to wipe (never used, or its commands left nothing behind); what this
            // lease ran out of is not the next one's.
            lease.forget_oom_kills();
            shared.counters.resets_skipped.fetch_add(1, Ordering::Relaxed);
            drop(lease);
            return;
        }
        let token = lease.pid() as u64;
        let asked = Instant::now();
        let mut destroy = self.broken;
        if !destroy {
            // Armed before the hand-over, while this thread still owns the socket.
            let started = lease
                .start_reset(true)
                .map_err(|e| e.to_string())
                .and_then(|()| shared.readiness.watch_once(&lease, token).map_err(|e| e.to_string()));
            if let Err(e) = started {
                tracing::warn!(pid = lease.pid(), error = %e, "sandpool: could not start a reset");
                shared.counters.reset_failures.fetch_add(1, Ordering::Relaxed);
                destroy = true;
            }
        }
        shared.counters.resetting.fetch_add(1, Ordering::Relaxed);
        match shared.returns.send(Returned { lease, token, destroy, asked }) {
            Ok(()) if destroy => shared.readiness.wake(),
            Ok(()) => {}
            Err(e) => {
                // The collector is gone: destroy it here.
                shared.counters.resetting.fetch_sub(1, Ordering::Relaxed);
                Lease::discard(e.into_inner().lease);
            }
        }
    }
}
