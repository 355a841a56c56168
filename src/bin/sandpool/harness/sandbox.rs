//! The sandbox modes of `sandpool bench`: `warm` (acquire + run + release through a
//! [`SandboxPool`], a thread per command), `async` (the same from tasks of a 2-worker tokio
//! runtime), `cold` (a new sandbox per command), `bare` (`vfork+exec` through
//! `std::process::Command`, no isolation: the floor) and `bwrap` (the same command in
//! bubblewrap, where it is installed), measured side by side by [`measure`] for one
//! [`Workload`]; for a workload a warm runtime serves (`python`), `runtime` and `rt-shared`
//! (`warm` with the runtime in the policy: a new template per lease, or one shared across
//! leases) and `rt-lease` (the runtime's default, each thread's lease running command after
//! command, as an agent's session does).

use std::ffi::OsString;
use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use super::async_mode::{ASYNC, measure_async};
use super::report::{ModeReport, PoolWork};
use super::runner::{Progress, measure};
use super::workloads::{Workload, bwrap_argv};
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
/// bubblewrap's mode name.
pub(crate) const BWRAP: &str = "bwrap";
/// `warm` with the workload's runtime in the policy: a new template for each lease that used
/// one (the default).
pub(crate) const RUNTIME: &str = "runtime";
/// `warm` with the workload's runtime shared across leases (`share_across_leases`).
pub(crate) const RUNTIME_SHARED: &str = "rt-shared";
/// The workload's runtime as in [`RUNTIME`], each thread's lease kept and running command
/// after command (its later commands are served by a child forked ahead).
pub(crate) const RUNTIME_LEASE: &str = "rt-lease";

/// Sandboxes made to measure the memory of an idle one (the shared pages of their processes,
/// libraries and the interpreter's, count a fraction to each, as in a pool).
const PSS_SANDBOXES: usize = 4;

/// The proportional set size of one idle sandbox of `policy`, KiB: [`PSS_SANDBOXES`] made,
/// the `Pss` of every process of theirs (`/proc/PID/smaps_rollup`, found from each init down
/// `/proc/PID/task/PID/children`) summed and divided. `None` where a process's cannot be
/// read (an unprivileged host: the sandboxes' processes are not dumpable).
fn idle_pss_kib(policy: &Policy) -> Option<u64> {
    let sandboxes: Vec<Sandbox> = (0..PSS_SANDBOXES).map(|_| Sandbox::spawn(policy)).collect::<Result<_, _>>().ok()?;
    let mut total = 0;
    for sandbox in &sandboxes {
        let mut pending = vec![sandbox.pid()];
        while let Some(pid) = pending.pop() {
            let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
            let pss = rollup.lines().find_map(|l| l.strip_prefix("Pss:"))?;
            total += pss.trim().trim_end_matches("kB").trim().parse::<u64>().ok()?;
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
            pending.extend(children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
        }
    }
    Some(total / PSS_SANDBOXES as u64)
}

/// Why a sandbox mode's operation failed (counted as an error, not an op).
#[derive(Debug)]
struct OpFailed;

/// What the sandbox modes run.
#[derive(Debug, Clone)]
pub(crate) struct SandboxBench {
    /// The command line, and the binds it needs.
    pub(crate) workload: Workload,
    /// Sandboxes in the warm pool (`None`: two per thread, one running while the other resets).
    pub(crate) pool_size: Option<usize>,
    /// The policy of every sandbox (the workload's binds added).
    pub(crate) policy: Policy,
    /// Whether to measure `start` (through a `Child`) too.
    pub(crate) with_start: bool,
}

impl SandboxBench {
    /// The modes for `workload`, with the default policy and its binds.
    pub(crate) fn new(workload: Workload, pool_size: Option<usize>, with_start: bool) -> Result<Self, String> {
        let policy = workload
            .ro_binds
            .iter()
            .fold(Policy::builder(), |b, dir| b.ro(dir))
            .build()
            .map_err(|e| format!("the {} workload's policy: {e}", workload.name))?;
        Ok(SandboxBench { workload, pool_size, policy, with_start })
    }

    fn command(&self) -> Command {
        let argv = &self.workload.argv;
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd
    }

    /// Measures `argv` run outside any sandbox (bare, or in bwrap) as mode `name`, with the
    /// environment a sandboxed command gets, computed once, outside the timed operation.
    fn measure_on_host(&self, name: &str, argv: &[OsString], threads: usize, duration: Duration) -> ModeReport {
        let env = self.command().environment();
        measure(name, threads, duration, || {
            let out = std::process::Command::new(&argv[0])
                .args(&argv[1..])
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .output()
                .map_err(|_| OpFailed)?;
            if out.status.success() { Ok(()) } else { Err(OpFailed) }
        })
    }

    /// `bare`: the program through `std::process::Command::output()` (posix_spawn, pipes),
    /// with the same minimal environment a sandboxed command gets (the host's environment
    /// would make every exec slower and the floor unfair).
    fn bare(&self, threads: usize, duration: Duration) -> ModeReport {
        self.measure_on_host(BARE, &self.workload.argv, threads, duration)
    }

    /// `bwrap`: the same, in bubblewrap with about the sandbox's isolation (see
    /// [`bwrap_argv`]); `None` where it is not installed.
    fn bwrap(&self, threads: usize, duration: Duration) -> Option<ModeReport> {
        let argv = bwrap_argv(&self.workload)?;
        Some(self.measure_on_host(BWRAP, &argv, threads, duration))
    }

    /// A pool of `policy` for `threads` threads (two sandboxes each unless `--pool-size`),
    /// all ready.
    fn pool_of(&self, policy: &Policy, threads: usize) -> Result<SandboxPool, SandboxPoolError> {
        let size = self.pool_size.unwrap_or(threads * 2);
        let pool = SandboxPool::builder(policy.clone()).max_size(size).min_idle(size).build()?;
        pool.warm_up(Duration::from_secs(60));
        Ok(pool)
    }

    /// A pool of the workload's policy for `threads` threads.
    fn warm_pool(&self, threads: usize) -> Result<SandboxPool, SandboxPoolError> {
        self.pool_of(&self.policy, threads)
    }

    /// The workload's policy with its runtime, shared across leases or not.
    fn runtime_policy(&self, shared: bool) -> Option<Policy> {
        let runtime = self.workload.runtime.clone()?.share_across_leases(shared);
        let builder = self.workload.ro_binds.iter().fold(Policy::builder(), |b, dir| b.ro(dir));
        builder.runtime(runtime).build().ok()
    }

    /// `warm`: acquire a ready sandbox, run, release (the reset happens off the caller's
    /// path: the sandbox's spawner does it, the pool's collector thread takes it back); with
    /// what the pool did meanwhile.
    fn warm(&self, threads: usize, duration: Duration) -> Result<ModeReport, SandboxPoolError> {
        self.warm_with(WARM, &self.policy, threads, duration)
    }

    /// `warm` through a pool of `policy`, as mode `name`.
    fn warm_with(
        &self,
        name: &'static str,
        policy: &Policy,
        threads: usize,
        duration: Duration,
    ) -> Result<ModeReport, SandboxPoolError> {
        let pool = self.pool_of(policy, threads)?;
        let cmd = self.command();
        let before = pool.stats();
        let mut row = measure(name, threads, duration, || {
            let mut lease = pool.acquire().map_err(|_| OpFailed)?;
            let out = lease.run(&cmd).map_err(|_| OpFailed)?;
            if out.success() { Ok(()) } else { Err(OpFailed) }
        });
        row.pool = Some(PoolWork::between(&before, &pool.stats()));
        if self.workload.runtime.is_some() {
            drop(pool);
            row.idle_pss_kib = idle_pss_kib(policy);
        }
        Ok(row)
    }

    /// `rt-lease`: a lease per thread, acquired before and kept, each op one command in it.
    fn runtime_in_one_lease(
        &self,
        policy: &Policy,
        threads: usize,
        duration: Duration,
    ) -> Result<ModeReport, SandboxPoolError> {
        let pool = self.pool_of(policy, threads)?;
        let leases =
            (0..threads).map(|_| pool.acquire()).collect::<Result<Vec<_>, _>>().map_err(SandboxPoolError::Start)?;
        // One lease a thread: an op takes one, and gives it back (never contended for long).
        let leases = std::sync::Mutex::new(leases);
        let cmd = self.command();
        Ok(measure(RUNTIME_LEASE, threads, duration, || {
            let taken = leases.lock().map_err(|_| OpFailed)?.pop();
            let mut lease = taken.ok_or(OpFailed)?;
            let out = lease.run(&cmd);
            leases.lock().map_err(|_| OpFailed)?.push(lease);
            if out.map_err(|_| OpFailed)?.success() { Ok(()) } else { Err(OpFailed) }
        }))
    }

    /// `async`: as `warm`, from `in_flight` tasks of a 2-worker tokio runtime instead of a
    /// thread each (`acquire_async`, `run_async`, release).
    fn warm_async(&self, in_flight: usize, duration: Duration) -> Result<ModeReport, SandboxPoolError> {
        let pool = std::sync::Arc::new(self.warm_pool(in_flight)?);
        let cmd = std::sync::Arc::new(self.command());
        let before = pool.stats();
        let op_pool = std::sync::Arc::clone(&pool);
        let mut row = measure_async(ASYNC, in_flight, duration, move || {
            let (pool, cmd) = (std::sync::Arc::clone(&op_pool), std::sync::Arc::clone(&cmd));
            async move {
                let mut lease = pool.acquire_async().await.map_err(|_| OpFailed)?;
                let out = lease.run_async(&cmd).await.map_err(|_| OpFailed)?;
                if out.success() { Ok(()) } else { Err(OpFailed) }
            }
        });
        row.pool = Some(PoolWork::between(&before, &pool.stats()));
        Ok(row)
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

    /// Runs `bare`, `bwrap` (where installed), `warm`, `start` (if asked) and `cold` at each
    /// thread count, reporting progress; every row names the workload.
    pub(crate) fn run_all(
        &self,
        thread_counts: &[usize],
        duration: Duration,
        progress: &dyn Fn(Progress<'_>),
    ) -> Result<Vec<ModeReport>, SandboxPoolError> {
        let mut rows = Vec::with_capacity(thread_counts.len() * 5);
        for &threads in thread_counts {
            for mode in self.modes() {
                progress(Progress::Start { mode, threads });
                let row = match mode {
                    BARE => Some(self.bare(threads, duration)),
                    BWRAP => self.bwrap(threads, duration),
                    WARM => Some(self.warm(threads, duration)?),
                    RUNTIME | RUNTIME_SHARED => match self.runtime_policy(mode == RUNTIME_SHARED) {
                        Some(policy) => Some(self.warm_with(mode, &policy, threads, duration)?),
                        None => None,
                    },
                    RUNTIME_LEASE => match self.runtime_policy(false) {
                        Some(policy) => Some(self.runtime_in_one_lease(&policy, threads, duration)?),
                        None => None,
                    },
                    ASYNC => Some(self.warm_async(threads, duration)?),
                    START => Some(self.start(threads, duration)?),
                    _ => Some(self.cold(threads, duration)),
                };
                progress(Progress::Done);
                rows.extend(row.map(|r| ModeReport { workload: Some(self.workload.name.to_string()), ..r }));
            }
        }
        Ok(rows)
    }

    /// The modes [`Self::run_all`] measures, in order.
    pub(crate) fn modes(&self) -> Vec<&'static str> {
        let bwrap = bwrap_argv(&self.workload).is_some();
        let runtime = self.workload.runtime.is_some();
        [BARE, BWRAP, WARM, RUNTIME, RUNTIME_SHARED, RUNTIME_LEASE, ASYNC, START, COLD]
            .into_iter()
            .filter(|m| (*m != BWRAP || bwrap) && (*m != START || self.with_start))
            .filter(|m| runtime || ![RUNTIME, RUNTIME_SHARED, RUNTIME_LEASE].contains(m))
            .collect()
    }
}
