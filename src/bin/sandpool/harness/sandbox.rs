//! The sandbox modes of `sandpool bench`: `warm` (acquire + run + release through a
//! [`SandboxPool`]), `cold` (a new sandbox per command) and `bare` (`vfork+exec` through
//! `std::process::Command`, no isolation: the floor), measured side by side by [`measure`].

use std::ffi::OsString;
use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use super::report::ModeReport;
use super::runner::{Progress, measure};
use sandpool::sandbox::{Command, Policy, Sandbox};
use sandpool::{SandboxPool, SandboxPoolError};

/// The warm mode's name.
pub(crate) const WARM: &str = "warm";
/// The name of the mode that goes through a [`Child`](sandpool::sandbox::Child).
pub(crate) const START: &str = "start";
/// The cold mode's name.
pub(crate) const COLD: &str = "cold";
/// The floor's name.
pub(crate) const BARE: &str = "bare";

/// Why a sandbox mode's operation failed (counted as an error, not an op).
#[derive(Debug)]
struct OpFailed;

/// What the sandbox modes run.
#[derive(Debug, Clone)]
pub(crate) struct SandboxBench {
    /// Program and arguments.
    pub(crate) argv: Vec<OsString>,
    /// Sandboxes in the warm pool (`None`: two per thread, one running while the other resets).
    pub(crate) pool_size: Option<usize>,
    /// The policy of every sandbox.
    pub(crate) policy: Policy,
}

impl SandboxBench {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]);
        cmd
    }

    /// `bare`: the program through `std::process::Command::output()` (posix_spawn, pipes),
    /// with the same minimal environment a sandboxed command gets (the host's environment
    /// would make every exec slower and the floor unfair).
    fn bare(&self, threads: usize, duration: Duration) -> ModeReport {
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

    /// A pool for `threads` threads (two sandboxes each unless `--pool-size`), all ready.
    fn warm_pool(&self, threads: usize) -> Result<SandboxPool, SandboxPoolError> {
        let size = self.pool_size.unwrap_or(threads * 2);
        let pool = SandboxPool::builder(self.policy.clone()).max_size(size).min_idle(size).build()?;
        pool.warm_up(Duration::from_secs(60));
        Ok(pool)
    }

    /// `warm`: acquire a ready sandbox, run, release (the reset happens off the caller's
    /// path: the sandbox's spawner does it, the pool's collector thread takes it back).
    fn warm(&self, threads: usize, duration: Duration) -> Result<ModeReport, SandboxPoolError> {
        let pool = self.warm_pool(threads)?;
        let cmd = self.command();
        Ok(measure(WARM, threads, duration, || {
            let mut lease = pool.acquire().map_err(|_| OpFailed)?;
            let out = lease.run(&cmd).map_err(|_| OpFailed)?;
            if out.success() { Ok(()) } else { Err(OpFailed) }
        }))
    }

    /// `start`: as `warm`, through a [`Child`](sandpool::sandbox::Child) instead of `run`:
    /// acquire, start, read its output to the end (stdout, then stderr), wait, release. What
    /// the handle costs over `run` is the difference to `warm`.
    fn start(&self, threads: usize, duration: Duration) -> Result<ModeReport, SandboxPoolError> {
        let pool = self.warm_pool(threads)?;
        let cmd = self.command();
        Ok(measure(START, threads, duration, || {
            let lease = pool.acquire().map_err(|_| OpFailed)?;
            let mut child = lease.start(&cmd).map_err(|_| OpFailed)?;
            let mut sink = Vec::new();
            if let Some(mut out) = child.stdout.take() {
                out.read_to_end(&mut sink).map_err(|_| OpFailed)?;
            }
            if let Some(mut err) = child.stderr.take() {
                err.read_to_end(&mut sink).map_err(|_| OpFailed)?;
            }
            let exit = child.wait().map_err(|_| OpFailed)?;
            if exit.success() { Ok(()) } else { Err(OpFailed) }
        }))
    }

    /// `cold`: make a sandbox, run, destroy it.
    fn cold(&self, threads: usize, duration: Duration) -> ModeReport {
        let cmd = self.command();
        measure(COLD, threads, duration, || {
            let mut sandbox = Sandbox::spawn(&self.policy).map_err(|_| OpFailed)?;
            let out = sandbox.run(&cmd).map_err(|_| OpFailed)?;
            drop(sandbox);
            if out.success() { Ok(()) } else { Err(OpFailed) }
        })
    }

    /// Runs `bare`, `warm`, `start` and `cold` at each thread count, reporting progress.
    pub(crate) fn run_all(
        &self,
        thread_counts: &[usize],
        duration: Duration,
        progress: &dyn Fn(Progress<'_>),
    ) -> Result<Vec<ModeReport>, SandboxPoolError> {
        let mut rows = Vec::with_capacity(thread_counts.len() * 4);
        for &threads in thread_counts {
            for mode in [BARE, WARM, START, COLD] {
                progress(Progress::Start { mode, threads });
                let row = match mode {
                    BARE => self.bare(threads, duration),
                    WARM => self.warm(threads, duration)?,
                    START => self.start(threads, duration)?,
                    _ => self.cold(threads, duration),
                };
                progress(Progress::Done);
                rows.push(row);
            }
        }
        Ok(rows)
    }
}
