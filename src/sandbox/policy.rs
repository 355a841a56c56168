//! What a sandbox may see and use: binds, network, limits, and which layers are required.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::runtime::Runtime;
use thiserror::Error;

const MIB: u64 = 1024 * 1024;

/// Most binds one policy may have (each travels as a descriptor in one control message).
pub const MAX_BINDS: usize = 32;

/// Whether the sandbox gets its own network namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(rename_all = "snake_case"))]
pub enum Network {
    /// Its own network namespace with only the loopback interface up (the default).
    #[default]
    LoopbackOnly,
    /// The host's network namespace, shared.
    Host,
}

/// How hard a layer is required. A required layer that cannot be applied fails
/// [`Sandbox::spawn`](super::Sandbox::spawn); a best-effort one is reported as missing in
/// [`Isolation`](super::Isolation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(rename_all = "snake_case"))]
pub enum Requirement {
    /// Fail the spawn if the layer cannot be applied (the default).
    #[default]
    Required,
    /// Apply the layer if this kernel can; report when it could not.
    BestEffort,
    /// Do not apply the layer.
    Off,
}

/// Why a [`PolicyBuilder`] refused its input.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A bind path is not absolute.
    #[error("bind path {path:?} is not absolute; give the full path, e.g. /home/me/project")]
    BindNotAbsolute {
        /// The path given.
        path: PathBuf,
    },
    /// A bind path does not exist on the host (or cannot be resolved).
    #[error("bind path {path:?} does not exist on the host")]
    BindMissing {
        /// The path given.
        path: PathBuf,
        /// The OS error from resolving it.
        #[source]
        source: std::io::Error,
    },
    /// A bind path has a NUL byte.
    #[error("bind path {path:?} contains a NUL byte")]
    BindNul {
        /// The path given.
        path: PathBuf,
    },
    /// A bind would expose the whole host root.
    #[error("binding / would expose the whole host; bind the directories the command needs")]
    BindRoot,
    /// A bind would replace a path the sandbox builds itself.
    #[error(
        "{path:?} is built by the sandbox itself and cannot be bound (reserved: /proc, /dev, /tmp; bind a directory below /tmp or /dev/shm instead)"
    )]
    BindReserved {
        /// The path given.
        path: PathBuf,
    },
    /// More binds than a sandbox takes.
    #[error("at most {max} binds are supported")]
    TooManyBinds {
        /// The most accepted.
        max: usize,
    },
    /// The runtime names no usable interpreter or a preload entry that is not a module name.
    #[error("invalid runtime: {reason}")]
    InvalidRuntime {
        /// What is wrong with it.
        reason: String,
    },
    /// A limit is zero or out of range.
    #[error("{name} must be at least {min} (got {value})")]
    LimitOutOfRange {
        /// The limit's name.
        name: &'static str,
        /// The value given.
        value: u64,
        /// The smallest value accepted.
        min: u64,
    },
}

/// One bind mount: a host path shown at the same path inside.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Bind {
    /// Absolute, canonical host path (also the path inside).
    pub path: PathBuf,
    /// Whether the sandbox may write through it.
    pub writable: bool,
}

/// What a sandbox may see and use. Build one with [`Policy::builder`]; [`Policy::default`]
/// gives the defaults documented on each builder method.
///
/// ```
/// use sandpool::sandbox::{Network, Policy};
/// let policy = Policy::builder()
///     .memory_mib(256)
///     .max_processes(32)
///     .network(Network::LoopbackOnly)
///     .build()?;
/// assert_eq!(policy.memory_bytes(), 256 << 20);
/// # Ok::<(), sandpool::sandbox::PolicyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Policy {
    pub(crate) binds: Vec<Bind>,
    pub(crate) network: Network,
    pub(crate) memory_bytes: u64,
    pub(crate) max_processes: u64,
    pub(crate) timeout: Duration,
    pub(crate) tmp_size: u64,
    pub(crate) output_limit: usize,
    pub(crate) cpu_time: Option<Duration>,
    /// CPU share in thousandths of a CPU.
    pub(crate) cpu_millis: Option<u64>,
    pub(crate) max_file_size: u64,
    pub(crate) max_open_files: u64,
    pub(crate) landlock: Requirement,
    pub(crate) seccomp: Requirement,
    pub(crate) cgroups: Requirement,
    pub(crate) landlock_max_abi: Option<u32>,
    pub(crate) runtime: Option<Runtime>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            binds: Vec::new(),
            network: Network::LoopbackOnly,
            memory_bytes: 512 * MIB,
            max_processes: 64,
            timeout: Duration::from_secs(30),
            tmp_size: 64 * MIB,
            output_limit: 16 * MIB as usize,
            cpu_time: Some(Duration::from_secs(60)),
            cpu_millis: None,
            max_file_size: 1024 * MIB,
            max_open_files: 1024,
            landlock: Requirement::Required,
            seccomp: Requirement::Required,
            cgroups: Requirement::BestEffort,
            landlock_max_abi: None,
            runtime: None,
        }
    }
}

impl Policy {
    /// A builder starting from the defaults.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder { policy: Policy::default(), error: None }
    }
    /// The bind mounts, in mount order.
    pub fn binds(&self) -> &[Bind] {
        &self.binds
    }
    /// The network mode.
    pub fn network(&self) -> Network {
        self.network
    }
    /// The memory limit of the whole sandbox, bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }
    /// Most processes (tasks) the commands may have alive at once.
    pub fn max_processes(&self) -> u64 {
        self.max_processes
    }
    /// The CPU share of the whole sandbox, in CPUs (`0.5`: half of one), if any.
    pub fn cpus(&self) -> Option<f64> {
        self.cpu_millis.map(|m| m as f64 / 1000.0)
    }
    /// Default wall-clock limit of one command.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    /// Size cap of the private `/tmp`, bytes.
    pub fn tmp_size(&self) -> u64 {
        self.tmp_size
    }
    /// Default cap of each captured stream, bytes.
    pub fn output_limit(&self) -> usize {
        self.output_limit
    }
    /// The warm runtime each session starts, if any.
    pub fn runtime(&self) -> Option<&Runtime> {
        self.runtime.as_ref()
    }
}

/// Builds a [`Policy`], validating every input; errors surface from [`PolicyBuilder::build`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct PolicyBuilder {
    policy: Policy,
    error: Option<PolicyError>,
}

impl PolicyBuilder {
    fn bind(mut self, path: impl AsRef<Path>, writable: bool) -> Self {
        if self.error.is_none() {
            match check_bind(path.as_ref()) {
                Ok(path) => {
                    self.policy.binds.retain(|b| b.path != path);
                    self.policy.binds.push(Bind { path, writable });
                }
                Err(e) => self.error = Some(e),
            }
        }
        self
    }

    /// Shows host `path` read-only at the same path inside. Default: none.
    pub fn ro(self, path: impl AsRef<Path>) -> Self {
        self.bind(path, false)
    }

    /// Shows host `path` read-write at the same path inside. Default: none.
    pub fn rw(self, path: impl AsRef<Path>) -> Self {
        self.bind(path, true)
    }

    /// A warm runtime: each session starts this interpreter once, and commands naming it are
    /// served by a fork of it (see [`Runtime`]). Default: none.
    pub fn runtime(mut self, runtime: Runtime) -> Self {
        self.policy.runtime = Some(runtime);
        self
    }

    /// Network mode. Default: [`Network::LoopbackOnly`].
    pub fn network(mut self, network: Network) -> Self {
        self.policy.network = network;
        self
    }

    /// Memory limit of the whole sandbox in MiB. Default: 512.
    pub fn memory_mib(mut self, mib: u64) -> Self {
        self.policy.memory_bytes = mib.saturating_mul(MIB);
        self
    }

    /// Most processes (and threads) the commands may have alive at once; the sandbox's own
    /// init and spawner come on top. Default: 64.
    pub fn max_processes(mut self, n: u64) -> Self {
        self.policy.max_processes = n;
        self
    }

    /// Default wall-clock limit of one command. Default: 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.policy.timeout = timeout;
        self
    }

    /// Size cap of the private `/tmp` in MiB. Default: 64.
    pub fn tmp_size_mib(mut self, mib: u64) -> Self {
        self.policy.tmp_size = mib.saturating_mul(MIB);
        self
    }

    /// Default cap of each captured output stream, bytes; past it the output is truncated and
    /// the command killed. Default: 16 MiB.
    pub fn output_limit(mut self, bytes: usize) -> Self {
        self.policy.output_limit = bytes;
        self
    }

    /// CPU time limit of each process (`RLIMIT_CPU`), or `None`. Default: 60 s.
    pub fn cpu_time(mut self, limit: Option<Duration>) -> Self {
        self.policy.cpu_time = limit;
        self
    }

    /// CPU share of the whole sandbox, in CPUs: `0.5` lets its processes together run half
    /// of one CPU's time, `2.0` two CPUs' (cgroup `cpu.max` over 100 ms periods; v1's CFS
    /// quota where cpu is a v1 controller). At least 0.01. Default: none. Where no cpu
    /// controller is usable the share is not enforced, which the sandbox's
    /// [`Isolation`](super::Isolation) says (and which fails it under
    /// [`PolicyBuilder::cgroups`]`(Required)`).
    ///
    /// ```
    /// use sandpool::sandbox::Policy;
    /// let judge = Policy::builder().cpus(1.0).build()?;
    /// assert_eq!(judge.cpus(), Some(1.0));
    /// # Ok::<(), sandpool::sandbox::PolicyError>(())
    /// ```
    pub fn cpus(mut self, cpus: f64) -> Self {
        if !(cpus.is_finite() && cpus >= 0.01) {
            self.error.get_or_insert(PolicyError::LimitOutOfRange {
                name: "CPU share (thousandths of a CPU)",
                value: if cpus > 0.0 { (cpus * 1000.0) as u64 } else { 0 },
                min: 10,
            });
            return self;
        }
        self.policy.cpu_millis = Some((cpus * 1000.0).round() as u64);
        self
    }

    /// Largest file a command may write (`RLIMIT_FSIZE`), bytes. Default: 1 GiB.
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.policy.max_file_size = bytes;
        self
    }

    /// Most open files per process (`RLIMIT_NOFILE`). Default: 1024.
    pub fn max_open_files(mut self, n: u64) -> Self {
        self.policy.max_open_files = n;
        self
    }

    /// Whether Landlock is required. Default: [`Requirement::Required`].
    pub fn landlock(mut self, r: Requirement) -> Self {
        self.policy.landlock = r;
        self
    }

    /// Uses Landlock as a kernel that offers at most ABI `abi` would (the kernel's own ABI if
    /// lower; 0: as a kernel without Landlock). The sandbox then gets exactly the Landlock
    /// layer such a kernel gives, and reports it: ABI 5 drops the signal and abstract-socket
    /// scoping of ABI 6, for example. Meant to reproduce, and test, the behaviour of older
    /// kernels on a newer one. Default: no cap.
    ///
    /// ```
    /// use sandpool::sandbox::{Policy, Requirement};
    /// // As on Debian 12's kernel (6.1, Landlock ABI 2), Landlock still required.
    /// let policy = Policy::builder().landlock_max_abi(2).landlock(Requirement::Required).build()?;
    /// # Ok::<(), sandpool::sandbox::PolicyError>(())
    /// ```
    pub fn landlock_max_abi(mut self, abi: u32) -> Self {
        self.policy.landlock_max_abi = Some(abi);
        self
    }

    /// Whether the seccomp filter is required. Default: [`Requirement::Required`].
    pub fn seccomp(mut self, r: Requirement) -> Self {
        self.policy.seccomp = r;
        self
    }

    /// Whether memory and process limits must come from a cgroup (v2 or v1). With
    /// [`Requirement::BestEffort`] (the default) they fall back to rlimits (`RLIMIT_AS` per
    /// process, `RLIMIT_NPROC` per sandbox user namespace) where no cgroup is writable.
    pub fn cgroups(mut self, r: Requirement) -> Self {
        self.policy.cgroups = r;
        self
    }

    /// Validates and returns the policy.
    pub fn build(self) -> Result<Policy, PolicyError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let p = self.policy;
        if p.binds.len() > MAX_BINDS {
            return Err(PolicyError::TooManyBinds { max: MAX_BINDS });
        }
        let check = |name, value: u64, min| {
            if value < min { Err(PolicyError::LimitOutOfRange { name, value, min }) } else { Ok(()) }
        };
        check("memory limit (bytes)", p.memory_bytes, 4 * MIB)?;
        check("process limit", p.max_processes, 1)?;
        check("timeout (ms)", p.timeout.as_millis().min(u64::MAX as u128) as u64, 1)?;
        check("/tmp size (bytes)", p.tmp_size, MIB)?;
        check("output limit (bytes)", p.output_limit as u64, 1)?;
        check("open files limit", p.max_open_files, 16)?;
        check("file size limit (bytes)", p.max_file_size, 1)?;
        if let Some(runtime) = &p.runtime {
            runtime.check().map_err(|reason| PolicyError::InvalidRuntime { reason })?;
        }
        Ok(p)
    }
}

/// Validates a bind path: absolute, existing, canonical, not `/`, `/proc`, `/dev`, `/tmp` or
/// `/dev/shm` (the sandbox builds them), but below `/tmp` or `/dev/shm` (each session's own
/// `/tmp` and `/dev/shm` show the bind again).
fn check_bind(path: &Path) -> Result<PathBuf, PolicyError> {
    use std::os::unix::ffi::OsStrExt;
    if path.as_os_str().as_bytes().contains(&0) {
        return Err(PolicyError::BindNul { path: path.to_owned() });
    }
    if !path.is_absolute() {
        return Err(PolicyError::BindNotAbsolute { path: path.to_owned() });
    }
    let canonical = path.canonicalize().map_err(|source| PolicyError::BindMissing { path: path.to_owned(), source })?;
    if canonical.components().all(|c| c == Component::RootDir) {
        return Err(PolicyError::BindRoot);
    }
    // The session directories are the sandbox's own (new at each reset); binds below them
    // are fine.
    let below_session_dir = ["/tmp", "/dev/shm"].iter().any(|d| canonical.starts_with(d) && canonical != Path::new(d));
    let reserved = ["/proc", "/dev", "/tmp"].iter().any(|r| canonical.starts_with(r));
    if reserved && !below_session_dir {
        return Err(PolicyError::BindReserved { path: path.to_owned() });
    }
    Ok(canonical)
}

/// Host directories every sandbox shows read-only (plus selected `/etc` entries). Nothing
/// host-specific: `/opt`, `/home`, `/srv` and the like show only through a bind.
pub(crate) const VISIBLE_SYSTEM_DIRS: [&str; 7] = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"];

impl Policy {
    /// Whether host `path` is visible inside a sandbox made with this policy (through a system
    /// directory or a bind), ignoring what commands create in `/tmp`.
    pub fn shows_host_path(&self, path: &Path) -> bool {
        VISIBLE_SYSTEM_DIRS.iter().any(|d| path.starts_with(d)) || self.binds.iter().any(|b| path.starts_with(&b.path))
    }

    /// Finds `program` the way the sandbox will, before any sandbox exists: a name without `/`
    /// is searched in `search_path` (a `PATH` value), a relative path is taken from `cwd`. Only
    /// what the sandbox shows of the host counts (a fresh sandbox's `/tmp` is empty).
    ///
    /// Returns the path found, or [`SandboxError::ProgramNotFound`](super::SandboxError).
    pub fn locate_program(
        &self,
        program: &Path,
        search_path: &str,
        cwd: &Path,
    ) -> Result<PathBuf, super::SandboxError> {
        use std::os::unix::fs::PermissionsExt;
        let runnable = |p: &Path| {
            self.shows_host_path(p)
                && std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        let not_found = || super::SandboxError::ProgramNotFound { program: program.to_string_lossy().into_owned() };
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(program.as_os_str());
        if bytes.is_empty() {
            return Err(not_found());
        }
        if !bytes.contains(&b'/') {
            return search_path
                .split(':')
                .filter(|d| d.starts_with('/'))
                .map(|d| Path::new(d).join(program))
                .find(|p| runnable(p))
                .ok_or_else(not_found);
        }
        let full = if program.is_absolute() { program.to_owned() } else { cwd.join(program) };
        if runnable(&full) { Ok(full) } else { Err(not_found()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let p = Policy::default();
        assert_eq!(p.memory_bytes(), 512 * MIB);
        assert_eq!(p.max_processes(), 64);
        assert_eq!(p.timeout(), Duration::from_secs(30));
        assert_eq!(p.network(), Network::LoopbackOnly);
        assert!(Policy::builder().build().is_ok());
    }

    #[test]
    fn bad_binds_are_typed_errors() {
        assert!(matches!(Policy::builder().ro("relative").build(), Err(PolicyError::BindNotAbsolute { .. })));
        assert!(matches!(
            Policy::builder().ro("/definitely/not/here/sandpool").build(),
            Err(PolicyError::BindMissing { .. })
        ));
        assert!(matches!(Policy::builder().rw("/").build(), Err(PolicyError::BindRoot)));
        assert!(matches!(Policy::builder().ro("/proc/self").build(), Err(PolicyError::BindReserved { .. })));
        assert!(matches!(Policy::builder().rw("/tmp").build(), Err(PolicyError::BindReserved { .. })));
        assert!(matches!(Policy::builder().rw("/dev/shm").build(), Err(PolicyError::BindReserved { .. })));
        assert!(matches!(Policy::builder().ro("/dev/null").build(), Err(PolicyError::BindReserved { .. })));
        let below = std::path::PathBuf::from(format!("/dev/shm/sandpool-policy-test-{}", std::process::id()));
        std::fs::create_dir_all(&below).unwrap();
        let allowed = Policy::builder().rw(&below).build();
        std::fs::remove_dir(&below).unwrap();
        assert!(allowed.is_ok(), "{allowed:?}");
        assert!(matches!(Policy::builder().max_processes(0).build(), Err(PolicyError::LimitOutOfRange { .. })));
        let p = Policy::builder().ro("/usr/./bin").build().unwrap();
        assert_eq!(p.binds()[0].path, Path::new("/usr/bin"));
    }
}
