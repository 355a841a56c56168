//! sandpool: a lock-free warm pool of isolated Linux sandboxes.
//!
//! Three layers, each usable alone:
//!
//! - [`pool`]: a generic, lock-free object pool engine ([`pool::Pool`]) driven by a
//!   [`pool::Manager`] that makes, recycles, checks and destroys one resource.
//! - [`sandbox`]: one isolated Linux sandbox ([`sandbox::Sandbox`]): a small init process in
//!   its own namespaces, confined by Landlock, seccomp and resource limits, that runs
//!   commands at the speed of a bare `vfork+exec`.
//! - [`manager`]: the two joined: [`SandboxPool`] hands out ready sandboxes and wipes them
//!   in the background between leases.
//! - `asynchronous` (feature `tokio`): the async API for tokio hosts, with no thread per
//!   command and nothing left behind by a cancelled future.
//! - `metrics` (feature `metrics`): the pools' metrics through the `metrics` facade.
//! - The `sandpool` command (feature `cli`): `run`, `bench` and `doctor`.
//!
//! Cargo features: `cli` (on by default) is only for the command; a library user turns it
//! off (`default-features = false`) and builds without clap, indicatif or serde. `serde`
//! derives `serde::Serialize` for what the library reports (the isolation applied, host
//! support, parts of a policy); `cli` turns it on. `tokio` and `metrics` add the modules of
//! those names.
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "tokio")]
pub mod asynchronous;
pub mod manager;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod pool;
pub mod sandbox;

pub use manager::{
    SandboxLease, SandboxManager, SandboxPool, SandboxPoolBuilder, SandboxPoolError, SandboxPoolRunError,
    SandboxPoolStats,
};
pub use pool::{ConfigError, PoolError};
pub use sandbox::{CommandError, PolicyError, SandboxError};
