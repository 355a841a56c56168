//! Pool configuration and its validating builder.

use std::time::Duration;

/// Where a released resource is recycled ([`Manager::recycle`](super::Manager::recycle)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecycleMode {
    /// On the thread that drops the lease, before the resource goes back to idle.
    #[default]
    Inline,
    /// By the sweeper: the released resource waits in a queue and goes back to idle only
    /// after a successful recycle. Needs a sweeper (`sweep_interval`) or explicit
    /// [`Pool::sweep_once`](super::Pool::sweep_once) calls.
    Background,
}

/// What the pool keeps and for how long. Build one with [`PoolConfig::builder`]; the
/// [`Default`] is documented on each getter and is always valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub(crate) min_idle: usize,
    pub(crate) max_idle: usize,
    pub(crate) max_size: usize,
    pub(crate) max_idle_age: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) max_uses: Option<u64>,
    pub(crate) acquire_timeout: Option<Duration>,
    pub(crate) sweep_interval: Option<Duration>,
    pub(crate) recycle: RecycleMode,
    pub(crate) shards: usize,
}

/// Default `max_size`.
const DEFAULT_MAX_SIZE: usize = 16;

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            min_idle: 0,
            max_idle: DEFAULT_MAX_SIZE,
            max_size: DEFAULT_MAX_SIZE,
            max_idle_age: Some(Duration::from_secs(600)),
            max_lifetime: None,
            max_uses: None,
            acquire_timeout: Some(Duration::from_secs(30)),
            sweep_interval: Some(Duration::from_secs(1)),
            recycle: RecycleMode::Inline,
            shards: 0,
        }
    }
}

impl PoolConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> PoolConfigBuilder {
        PoolConfigBuilder { cfg: PoolConfig::default(), max_idle_set: false }
    }
    /// Idle resources the sweeper keeps ready (made in the background). Default 0.
    pub fn min_idle(&self) -> usize {
        self.min_idle
    }
    /// Most idle resources kept; a release beyond it destroys the resource (eviction
    /// reason `surplus`). Default: `max_size`.
    pub fn max_idle(&self) -> usize {
        self.max_idle
    }
    /// Most live resources: idle + leased + being made, recycled or destroyed. Default 16.
    pub fn max_size(&self) -> usize {
        self.max_size
    }
    /// An idle resource older than this is evicted by the sweeper (and not handed out).
    /// Default 10 minutes; `None` keeps idle resources forever.
    pub fn max_idle_age(&self) -> Option<Duration> {
        self.max_idle_age
    }
    /// A resource older than this (since it was made) is destroyed on release or by the
    /// sweeper. Default `None` (no limit).
    pub fn max_lifetime(&self) -> Option<Duration> {
        self.max_lifetime
    }
    /// A resource leased this many times is destroyed on release. Default `None`.
    pub fn max_uses(&self) -> Option<u64> {
        self.max_uses
    }
    /// How long [`Pool::acquire`](super::Pool::acquire) waits at `max_size`. Default 30 s;
    /// `None` waits forever.
    pub fn acquire_timeout(&self) -> Option<Duration> {
        self.acquire_timeout
    }
    /// Period of the sweeper thread, which is also the resolution of the pool's clock.
    /// Default 1 s; `None` starts no sweeper: the clock then moves only by
    /// [`Pool::advance_epoch`](super::Pool::advance_epoch) and sweeping happens only by
    /// [`Pool::sweep_once`](super::Pool::sweep_once) (for tests and models).
    pub fn sweep_interval(&self) -> Option<Duration> {
        self.sweep_interval
    }
    /// Where released resources are recycled. Default [`RecycleMode::Inline`].
    pub fn recycle(&self) -> RecycleMode {
        self.recycle
    }
    /// Number of shards, each a per-thread magazine in front of the idle ring (the first
    /// threads to use the pool claim one each; later ones use the ring), rounded up to a
    /// power of two. Default 0 means automatic: four per CPU, raised towards 16 (so that up to
    /// 16 busy threads each get a magazine of their own) as far as `max_idle` leaves every
    /// magazine at least two idle resources, at most 64.
    pub fn shards(&self) -> usize {
        self.shards
    }
    /// The shard count actually used.
    pub(crate) fn effective_shards(&self) -> usize {
        if self.shards > 0 {
            return self.shards.next_power_of_two().min(1024);
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        // Most shards whose magazines still get two entries each (see `Pool::new`).
        let fill = (self.max_idle / 4).max(1);
        let roomy = if fill.is_power_of_two() { fill } else { fill.next_power_of_two() / 2 };
        (cpus * 4).next_power_of_two().max(roomy.min(16)).min(64)
    }
}

/// A configuration the builder refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_size` must be at least 1.
    #[error("max_size must be at least 1")]
    ZeroMaxSize,
    /// `min_idle` must not exceed `max_idle`.
    #[error("min_idle ({min_idle}) exceeds max_idle ({max_idle})")]
    MinIdleAboveMaxIdle {
        /// The requested `min_idle`.
        min_idle: usize,
        /// The requested `max_idle`.
        max_idle: usize,
    },
    /// `max_idle` must not exceed `max_size`.
    #[error("max_idle ({max_idle}) exceeds max_size ({max_size})")]
    MaxIdleAboveMaxSize {
        /// The requested `max_idle`.
        max_idle: usize,
        /// The requested `max_size`.
        max_size: usize,
    },
    /// A duration that must be positive was zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// `max_uses` must be at least 1.
    #[error("max_uses must be at least 1")]
    ZeroMaxUses,
}

/// Builds a [`PoolConfig`], checking it in [`build`](PoolConfigBuilder::build).
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolConfigBuilder {
    cfg: PoolConfig,
    max_idle_set: bool,
}

impl PoolConfigBuilder {
    /// See [`PoolConfig::min_idle`].
    pub fn min_idle(mut self, n: usize) -> Self {
        self.cfg.min_idle = n;
        self
    }
    /// See [`PoolConfig::max_idle`]. When not set it follows `max_size`.
    pub fn max_idle(mut self, n: usize) -> Self {
        self.cfg.max_idle = n;
        self.max_idle_set = true;
        self
    }
    /// See [`PoolConfig::max_size`].
    pub fn max_size(mut self, n: usize) -> Self {
        self.cfg.max_size = n;
        self
    }
    /// See [`PoolConfig::max_idle_age`].
    pub fn max_idle_age(mut self, d: Option<Duration>) -> Self {
        self.cfg.max_idle_age = d;
        self
    }
    /// See [`PoolConfig::max_lifetime`].
    pub fn max_lifetime(mut self, d: Option<Duration>) -> Self {
        self.cfg.max_lifetime = d;
        self
    }
    /// See [`PoolConfig::max_uses`].
    pub fn max_uses(mut self, n: Option<u64>) -> Self {
        self.cfg.max_uses = n;
        self
    }
    /// See [`PoolConfig::acquire_timeout`].
    pub fn acquire_timeout(mut self, d: Option<Duration>) -> Self {
        self.cfg.acquire_timeout = d;
        self
    }
    /// See [`PoolConfig::sweep_interval`].
    pub fn sweep_interval(mut self, d: Option<Duration>) -> Self {
        self.cfg.sweep_interval = d;
        self
    }
    /// See [`PoolConfig::recycle`].
    pub fn recycle(mut self, mode: RecycleMode) -> Self {
        self.cfg.recycle = mode;
        self
    }
    /// See [`PoolConfig::shards`].
    pub fn shards(mut self, n: usize) -> Self {
        self.cfg.shards = n;
        self
    }
    /// Checks and returns the configuration.
    pub fn build(mut self) -> Result<PoolConfig, ConfigError> {
        let c = &mut self.cfg;
        if c.max_size == 0 {
            return Err(ConfigError::ZeroMaxSize);
        }
        if !self.max_idle_set {
            c.max_idle = c.max_size;
        }
        if c.max_idle > c.max_size {
            return Err(ConfigError::MaxIdleAboveMaxSize { max_idle: c.max_idle, max_size: c.max_size });
        }
        if c.min_idle > c.max_idle {
            return Err(ConfigError::MinIdleAboveMaxIdle { min_idle: c.min_idle, max_idle: c.max_idle });
        }
        for (name, d) in
            [("max_idle_age", c.max_idle_age), ("max_lifetime", c.max_lifetime), ("sweep_interval", c.sweep_interval)]
        {
            if d == Some(Duration::ZERO) {
                return Err(ConfigError::ZeroDuration(name));
            }
        }
        if c.max_uses == Some(0) {
            return Err(ConfigError::ZeroMaxUses);
        }
        Ok(self.cfg)
    }
}
