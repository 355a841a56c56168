//! The sandbox modes of `sandpool bench`: `warm` (acquire + run + release through a
//! [`SandboxPool`]), `cold` (a new sandbox per command) and `bare` (`vfork+exec` through
//! `std::process::Command`, no isolation: the floor), measured side by side by [`measure`].

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use super::report::ModeReport;
use super::runner::{Progress, measure};
use crate::SandboxPool;
use crate::sandbox::{Command, Policy, Sandbox};

/// The warm mode's name.
pub const WARM: &str = "warm";
/// The cold mode's name.
pub const COLD: &str = "cold";
/// The floor's name.
pub const BARE: &str = "bare";

/// Why a sandbox mode's operation failed (counted as an error, not an op).
#[derive(Debug)]
pub struct OpFailed;

/// What the sandbox modes run.
#[derive(Debug, Clone)]
pub struct SandboxBench {
    /// Program and arguments.
    pub argv: Vec<OsString>,
    /// Sandboxes in the warm pool (`None`: two per thread, one running while the other resets).
    pub pool_size: Option<usize>,
    /// The policy of every sandbox.
    pub policy: Policy,
}

impl SandboxBench {
    fn command(&self) -> Command {
        Command::new(&self.argv[0]).args(&self.argv[1..])
    }

    /// `bare`: the program through `std::process::Command::output()` (posix_spawn, pipes),
    /// with the same minimal environment a sandboxed command gets (the host's environment
    /// would make every exec slower and the floor unfair).
    pub fn bare(&self, threads: usize, duration: Duration) -> ModeReport {
        let env = self.command().environment();
        measure(BARE, threads, duration, || {
            let out = std::process::Command::new(&self.argv[0])
                .args(&self.argv[1..])
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .output()
                .map_err(|_| OpFailed)?;
            if out.status.success() { Ok(()) } else { Err(OpFailed) }
        })
    }

    /// `warm`: acquire a ready sandbox, run, release (the reset happens off the caller's
    /// path: the sandbox's spawner does it, the pool's collector thread takes it back).
    pub fn warm(&self, threads: usize, duration: Duration) -> Result<ModeReport, crate::SandboxPoolError> {
        let size = self.pool_size.unwrap_or(threads * 2);
        let pool = SandboxPool::builder(self.policy.clone()).max_size(size).min_idle(size).build()?;
        pool.warm_up(Duration::from_secs(60));
        let cmd = self.command();
        Ok(measure(WARM, threads, duration, || {
            let mut lease = pool.acquire().map_err(|_| OpFailed)?;
            let out = lease.run(&cmd).map_err(|_| OpFailed)?;
            if out.success() { Ok(()) } else { Err(OpFailed) }
        }))
    }

    /// `cold`: make a sandbox, run, destroy it.
    pub fn cold(&self, threads: usize, duration: Duration) -> ModeReport {
        let cmd = self.command();
        measure(COLD, threads, duration, || {
            let mut sandbox = Sandbox::spawn(&self.policy).map_err(|_| OpFailed)?;
            let out = sandbox.run(&cmd).map_err(|_| OpFailed)?;
            drop(sandbox);
            if out.success() { Ok(()) } else { Err(OpFailed) }
        })
    }

    /// Runs `bare`, `warm` and `cold` at each thread count, reporting progress.
    pub fn run_all(
        &self,
        thread_counts: &[usize],
        duration: Duration,
        progress: &dyn Fn(Progress<'_>),
    ) -> Result<Vec<ModeReport>, crate::SandboxPoolError> {
        let total = thread_counts.len() * 3;
        let mut rows = Vec::with_capacity(total);
        for &threads in thread_counts {
            for mode in [BARE, WARM, COLD] {
                progress(Progress::Start { mode, threads, index: rows.len(), total });
                let row = match mode {
                    BARE => self.bare(threads, duration),
                    WARM => self.warm(threads, duration)?,
                    _ => self.cold(threads, duration),
                };
                progress(Progress::Done(&row));
                rows.push(row);
            }
        }
        Ok(rows)
    }
}

/// `warm`'s p50 latency over `bare`'s at the same thread count.
pub fn p50_ratio(rows: &[ModeReport], mode: &str, base: &str, threads: usize) -> Option<f64> {
    let find = |n: &str| rows.iter().find(|r| r.name == n && r.threads == threads);
    let (a, b) = (find(mode)?, find(base)?);
    (b.p50_us > 0.0).then(|| a.p50_us / b.p50_us)
}
