//! A command to run in a sandbox, and what came of it.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

/// Largest total size of argv plus environment, bytes (what the control message can carry,
/// and well under the kernel's `ARG_MAX`).
pub const MAX_ARGS_BYTES: usize = 128 * 1024;

/// The `PATH` a command gets unless it sets its own.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

/// The environment a command starts with, in this order, before its own variables.
pub(crate) const DEFAULT_ENV: [(&str, &str); 4] =
    [("PATH", DEFAULT_PATH), ("HOME", "/tmp"), ("TMPDIR", "/tmp"), ("LANG", "C.UTF-8")];

/// Why a [`Command`] was refused before anything ran.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// The program name is empty.
    #[error("no program given")]
    EmptyProgram,
    /// An argument, variable or path has a NUL byte.
    #[error("{what} contains a NUL byte")]
    NulByte {
        /// Which input.
        what: &'static str,
    },
    /// argv plus environment is too large.
    #[error("arguments and environment take {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Their size.
        size: usize,
        /// The limit ([`MAX_ARGS_BYTES`]).
        limit: usize,
    },
    /// An environment variable name is empty or has `=`.
    #[error("invalid environment variable name {name:?} (must be non-empty, without '=')")]
    BadEnvName {
        /// The name.
        name: String,
    },
    /// The working directory is not absolute.
    #[error("working directory {path:?} is not absolute")]
    RelativeCwd {
        /// The path.
        path: PathBuf,
    },
    /// A zero timeout or output limit.
    #[error("{what} must be greater than zero")]
    ZeroLimit {
        /// Which limit.
        what: &'static str,
    },
    /// Bytes given as where an output stream goes.
    #[error("{stream} cannot be bytes: give Stdio::piped(), Stdio::null() or a descriptor")]
    BytesAsOutput {
        /// `"stdout"` or `"stderr"`.
        stream: &'static str,
    },
}

/// Where one of a command's standard streams comes from or goes, as in
/// [`std::process::Stdio`]: `/dev/null`, a pipe to the host ([`Stdio::piped`]: the
/// [`Child`](super::Child) gets its end), bytes fed to stdin, or a descriptor of the caller's
/// (a file, a socket, one end of the caller's own pipe), passed into the sandbox.
///
/// ```
/// use sandpool::sandbox::{Command, Stdio};
/// let mut cmd = Command::new("wc");
/// cmd.arg("-c").stdin(Stdio::piped()).stdout(Stdio::piped());
/// let mut fed = Command::new("cat");
/// fed.stdin("bytes, as before"); // Stdio::bytes, from a string
/// ```
#[derive(Clone, Debug, Default)]
pub struct Stdio(pub(crate) StdioKind);

#[derive(Clone, Debug, Default)]
pub(crate) enum StdioKind {
    #[default]
    Null,
    Piped,
    Bytes(Arc<[u8]>),
    Fd(Arc<OwnedFd>),
}

impl Stdio {
    /// `/dev/null`.
    pub fn null() -> Stdio {
        Stdio(StdioKind::Null)
    }
    /// A pipe between the command and the host.
    pub fn piped() -> Stdio {
        Stdio(StdioKind::Piped)
    }
    /// Bytes the command reads on its stdin (stdin only).
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Stdio {
        Stdio(StdioKind::Bytes(bytes.into().into()))
    }
    /// A descriptor of the caller's, passed into the sandbox (a copy of it: the caller's
    /// stays open). Whatever it reaches, the command reaches: give it only what the command
    /// may have.
    ///
    /// The command gets the same open file description, not a copy of the data. With it, it
    /// can do whatever the description allows and whatever the file's owner may, when the
    /// sandbox's user is that owner (an unprivileged host's files are its own): `fchmod`
    /// (never setuid or setgid: the sandbox's seccomp filter refuses those bits), `fchown`
    /// within its ids, extended attributes, times (`futimens`), inode flags, `flock` and
    /// `fcntl` locks and leases (a lease blocks the host's writers for up to
    /// `lease-break-time`), `fallocate`/`ftruncate` if it is open for writing, `O_APPEND` and
    /// `O_NONBLOCK` changes that the host's copy shares. It can also reopen it through
    /// `/proc/self/fd/N` with any access its own permissions allow (Landlock, where enforced,
    /// limits that to the sandbox's writable paths). A terminal lets it read the host's keys
    /// and change the terminal's modes (`TIOCSTI` and `TIOCLINUX` are refused).
    ///
    /// Safe to pass: a pipe or socket end that the caller made for the command (what
    /// [`Stdio::piped`] does), or a file the command may own. To feed a host file's contents
    /// without handing the file in, copy it through a pipe (as `sandpool run` does with its
    /// stdin).
    pub fn fd(fd: impl Into<OwnedFd>) -> Stdio {
        Stdio(StdioKind::Fd(Arc::new(fd.into())))
    }
}

impl From<Vec<u8>> for Stdio {
    fn from(bytes: Vec<u8>) -> Stdio {
        Stdio::bytes(bytes)
    }
}

impl From<&[u8]> for Stdio {
    fn from(bytes: &[u8]) -> Stdio {
        Stdio::bytes(bytes)
    }
}

impl From<&str> for Stdio {
    fn from(text: &str) -> Stdio {
        Stdio::bytes(text)
    }
}

impl From<String> for Stdio {
    fn from(text: String) -> Stdio {
        Stdio::bytes(text)
    }
}

impl From<OwnedFd> for Stdio {
    fn from(fd: OwnedFd) -> Stdio {
        Stdio::fd(fd)
    }
}

impl From<std::fs::File> for Stdio {
    fn from(file: std::fs::File) -> Stdio {
        Stdio::fd(file)
    }
}

/// A command to run in a [`Sandbox`](super::Sandbox): program, arguments, environment,
/// working directory, where its standard streams go ([`Stdio`]), and per-command limits.
///
/// The environment starts minimal (`PATH`, `HOME=/tmp`, `TMPDIR=/tmp`, `LANG=C.UTF-8`); no
/// host variable leaks in. A program without `/` is searched in `PATH` inside the sandbox.
///
/// ```
/// use sandpool::sandbox::Command;
/// use std::time::Duration;
/// let mut cmd = Command::new("sh");
/// cmd.args(["-c", "echo $GREETING"]).env("GREETING", "hi").timeout(Duration::from_secs(5));
/// assert_eq!(cmd.get_program(), "sh");
/// ```
#[derive(Clone, Debug)]
#[must_use = "a command does nothing until a sandbox runs it"]
pub struct Command {
    program: OsString,
    args: Vec<OsString>,
    /// Changes to the environment, in order: a value set, or `None` for one removed.
    env: Vec<(OsString, Option<OsString>)>,
    /// Whether the defaults (`PATH`, `HOME`, ...) were cleared.
    env_cleared: bool,
    cwd: PathBuf,
    stdin: Stdio,
    stdout: Stdio,
    stderr: Stdio,
    timeout: Option<Duration>,
    output_limit: Option<usize>,
    no_fork: bool,
    /// A terminal of its own, `[rows, columns]`.
    terminal: Option<[u16; 2]>,
}

impl Command {
    /// A command running `program` with no arguments.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            env_cleared: false,
            cwd: PathBuf::from("/tmp"),
            stdin: Stdio::null(),
            stdout: Stdio::piped(),
            stderr: Stdio::piped(),
            timeout: None,
            output_limit: None,
            no_fork: false,
            terminal: None,
        }
    }
    /// Adds one argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }
    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }
    /// Sets an environment variable (overriding a default one of the same name).
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        let key = key.as_ref().to_owned();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, Some(value.as_ref().to_owned())));
        self
    }
    /// Sets several environment variables, as [`Command::env`] each.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }
    /// Removes an environment variable, a default one (`PATH`, `HOME`, ...) included.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        let key = key.as_ref().to_owned();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, None));
        self
    }
    /// Starts the environment empty: no default, and none set before this call. (Without
    /// `PATH`, a program given without `/` is searched in [`DEFAULT_PATH`].)
    pub fn env_clear(&mut self) -> &mut Self {
        self.env.clear();
        self.env_cleared = true;
        self
    }
    /// Working directory inside the sandbox. Default: `/tmp`.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.cwd = dir.as_ref().to_owned();
        self
    }
    /// [`Command::current_dir`], under its older name.
    pub fn cwd(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.current_dir(dir)
    }
    /// Where stdin comes from: bytes (`.stdin("text")`), a pipe, a descriptor. Default:
    /// `/dev/null`.
    pub fn stdin(&mut self, stdin: impl Into<Stdio>) -> &mut Self {
        self.stdin = stdin.into();
        self
    }
    /// Where stdout goes. Default: a pipe ([`Sandbox::run`](super::Sandbox::run) captures
    /// it, a [`Child`](super::Child) reads it).
    pub fn stdout(&mut self, stdout: impl Into<Stdio>) -> &mut Self {
        self.stdout = stdout.into();
        self
    }
    /// Where stderr goes. Default: a pipe, as stdout.
    pub fn stderr(&mut self, stderr: impl Into<Stdio>) -> &mut Self {
        self.stderr = stderr.into();
        self
    }
    /// Wall-clock limit; default: the policy's. The sandbox kills the command's process group
    /// when it passes.
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout = Some(timeout);
        self
    }
    /// Cap of each piped output stream in bytes; default: the policy's. Past it the command
    /// is killed, and the reader sees the stream end there.
    pub fn output_limit(&mut self, bytes: usize) -> &mut Self {
        self.output_limit = Some(bytes);
        self
    }
    /// Forbids the command to create processes (a seccomp filter on fork/vfork/clone).
    pub fn no_fork(&mut self, yes: bool) -> &mut Self {
        self.no_fork = yes;
        self
    }
    /// Runs the command on a terminal of its own, `rows` by `cols`: a pseudo-terminal of the
    /// sandbox's session (a devpts instance of the session's, seen inside as `/dev/pts/N`)
    /// that is its stdin, stdout, stderr and controlling terminal, so `isatty` holds, a
    /// shell is interactive and Ctrl-C (the byte `0x03`) interrupts it. The host gets the
    /// other side as [`Child::pty`](super::Child::pty) ([`ChildPty`](super::ChildPty): read
    /// what the command shows, write what it types, [`resize`](super::ChildPty::resize));
    /// under [`Sandbox::run`](super::Sandbox::run) what it shows comes back as `stdout`.
    /// The [`Stdio`] settings do not apply.
    ///
    /// Pipes stay the default on purpose: a terminal echoes input and turns `\n` into
    /// `\r\n`, which breaks line protocols.
    ///
    /// ```
    /// use sandpool::sandbox::Command;
    /// let mut shell = Command::new("bash");
    /// shell.pty(24, 80);
    /// ```
    pub fn pty(&mut self, rows: u16, cols: u16) -> &mut Self {
        self.terminal = Some([rows, cols]);
        self
    }
    /// The terminal size set with [`Command::pty`], `(rows, cols)`, if any.
    pub fn get_pty(&self) -> Option<(u16, u16)> {
        self.terminal.map(|[rows, cols]| (rows, cols))
    }
    /// The program.
    pub fn get_program(&self) -> &OsStr {
        &self.program
    }
    /// The arguments (the program not included).
    pub fn get_args(&self) -> impl ExactSizeIterator<Item = &OsStr> {
        self.args.iter().map(OsString::as_os_str)
    }
    /// The working directory.
    pub fn get_current_dir(&self) -> &Path {
        &self.cwd
    }
    /// The working directory ([`Command::get_current_dir`] under its older name).
    pub fn get_cwd(&self) -> &Path {
        &self.cwd
    }
    /// The timeout set on this command, if any.
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }
    pub(crate) fn get_output_limit(&self) -> Option<usize> {
        self.output_limit
    }
    pub(crate) fn get_no_fork(&self) -> bool {
        self.no_fork
    }
    pub(crate) fn get_stdio(&self) -> [&Stdio; 3] {
        [&self.stdin, &self.stdout, &self.stderr]
    }

    /// The environment the command gets: the minimal defaults, then its own variables.
    pub fn environment(&self) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = match self.env_cleared {
            true => Vec::new(),
            false => DEFAULT_ENV.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect(),
        };
        for (k, v) in &self.env {
            env.retain(|(ek, _)| ek != k);
            if let Some(v) = v {
                env.push((k.clone(), v.clone()));
            }
        }
        env
    }

    /// Checks the command and encodes argv, env and cwd as the zygote wants them.
    pub(crate) fn encode(&self) -> Result<EncodedCommand, CommandError> {
        if self.program.is_empty() {
            return Err(CommandError::EmptyProgram);
        }
        let no_nul = |s: &OsStr, what| {
            if s.as_bytes().contains(&0) { Err(CommandError::NulByte { what }) } else { Ok(s.as_bytes().to_vec()) }
        };
        let mut argv = vec![no_nul(&self.program, "the program")?];
        for a in &self.args {
            argv.push(no_nul(a, "an argument")?);
        }
        let mut env = Vec::new();
        for (k, v) in self.environment() {
            if k.is_empty() || k.as_bytes().contains(&b'=') {
                return Err(CommandError::BadEnvName { name: k.to_string_lossy().into_owned() });
            }
            let mut entry = no_nul(&k, "an environment variable name")?;
            entry.push(b'=');
            entry.extend_from_slice(&no_nul(&v, "an environment variable value")?);
            env.push(entry);
        }
        if !self.cwd.is_absolute() {
            return Err(CommandError::RelativeCwd { path: self.cwd.clone() });
        }
        let cwd = no_nul(self.cwd.as_os_str(), "the working directory")?;
        let size: usize = argv.iter().chain(env.iter()).map(|s| s.len() + 1).sum();
        if size > MAX_ARGS_BYTES {
            return Err(CommandError::TooLarge { size, limit: MAX_ARGS_BYTES });
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(CommandError::ZeroLimit { what: "the timeout" });
        }
        if self.output_limit == Some(0) {
            return Err(CommandError::ZeroLimit { what: "the output limit" });
        }
        for (stream, stdio) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            if matches!(stdio.0, StdioKind::Bytes(_)) {
                return Err(CommandError::BytesAsOutput { stream });
            }
        }
        Ok(EncodedCommand { argv, env, cwd })
    }
}

/// A checked command's argv, `KEY=VALUE` environment and working directory, as bytes.
#[derive(Debug)]
pub(crate) struct EncodedCommand {
    pub argv: Vec<Vec<u8>>,
    pub env: Vec<Vec<u8>>,
    pub cwd: Vec<u8>,
}

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

impl ExitStatus {
    /// From a raw wait status.
    pub(crate) fn from_wait_status(status: i32) -> ExitStatus {
        if libc::WIFSIGNALED(status) {
            ExitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        }
    }
    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Exited(0)
    }
    /// Its exit code, if it exited.
    pub fn code(&self) -> Option<i32> {
        match *self {
            ExitStatus::Exited(c) => Some(c),
            ExitStatus::Signaled(_) => None,
        }
    }
    /// The signal that killed it, if one did.
    pub fn signal(&self) -> Option<i32> {
        match *self {
            ExitStatus::Signaled(s) => Some(s),
            ExitStatus::Exited(_) => None,
        }
    }
}

/// Resource use of a finished command: what `wait4` says of its process and the descendants
/// it waited for, and, where the sandbox has a cgroup that accounts it, what the cgroup says
/// of the whole sandbox (background processes and other commands included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceUsage {
    /// User CPU time (`wait4`).
    pub user_time: Duration,
    /// System CPU time (`wait4`).
    pub system_time: Duration,
    /// Peak resident set size of its largest process, KiB (`wait4`).
    pub max_rss_kib: u64,
    /// CPU time the whole sandbox used while the command ran (cgroup v2 `cpu.stat`
    /// `usage_usec`, read at its start and end); `None` without a cgroup v2.
    pub sandbox_cpu_time: Option<Duration>,
    /// The sandbox's peak memory while the command ran, bytes: pages of every process, the
    /// kernel's memory for them, the page cache they brought in (cgroup v2 `memory.peak`, read
    /// through a descriptor of the command's own, reset at its start: Linux 6.12+). `None`
    /// elsewhere: the cgroup's lifetime peak would show what earlier leases of the sandbox
    /// used, so it is never reported.
    pub sandbox_peak_memory: Option<u64>,
    /// How many processes of the sandbox the kernel killed for memory while the command ran
    /// (its memory cgroup's `oom_kill` count, read at its start and end); `None` without a
    /// memory cgroup.
    pub sandbox_oom_kills: Option<u64>,
}

/// Where a figure of [`ResourceUsage`] comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageSource {
    /// The sandbox's cgroup: the whole sandbox.
    Cgroup,
    /// `wait4`: the command's process and the descendants it waited for.
    Wait4,
}

impl ResourceUsage {
    /// Whether the kernel killed a process of the sandbox for memory while the command ran
    /// (see [`sandbox_oom_kills`](Self::sandbox_oom_kills)).
    pub fn oom_killed(&self) -> bool {
        self.sandbox_oom_kills.is_some_and(|n| n > 0)
    }
    /// CPU time: the sandbox's from its cgroup where there is one, else the command's from
    /// `wait4` (user plus system); and which it is.
    pub fn cpu_time(&self) -> (Duration, UsageSource) {
        match self.sandbox_cpu_time {
            Some(t) => (t, UsageSource::Cgroup),
            None => (self.user_time + self.system_time, UsageSource::Wait4),
        }
    }
    /// Peak memory in bytes: the sandbox's from its cgroup where it keeps one, else the
    /// command's largest resident set from `wait4`; and which it is.
    pub fn peak_memory(&self) -> (u64, UsageSource) {
        match self.sandbox_peak_memory {
            Some(b) => (b, UsageSource::Cgroup),
            None => (self.max_rss_kib * 1024, UsageSource::Wait4),
        }
    }
}

/// Why the sandbox killed a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillReason {
    /// It ran past its timeout.
    Timeout,
    /// Its output went past the cap.
    OutputLimit,
}

/// What came of a [`Command`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Whether it was killed for running past its timeout.
    pub timed_out: bool,
    /// Why the sandbox killed it, if it did.
    pub killed_by_sandbox: Option<KillReason>,
    /// Captured stdout (up to the cap).
    pub stdout: Vec<u8>,
    /// Captured stderr (up to the cap).
    pub stderr: Vec<u8>,
    /// Whether stdout went past the cap (and was cut there).
    pub stdout_truncated: bool,
    /// Whether stderr went past the cap (and was cut there).
    pub stderr_truncated: bool,
    /// Wall-clock time from start to exit.
    pub duration: Duration,
    /// Resource use as reported by the kernel.
    pub usage: ResourceUsage,
}

impl Output {
    /// The exit code, if it exited.
    pub fn exit_code(&self) -> Option<i32> {
        match self.status {
            ExitStatus::Exited(c) => Some(c),
            ExitStatus::Signaled(_) => None,
        }
    }
    /// The signal that killed it, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.status {
            ExitStatus::Signaled(s) => Some(s),
            ExitStatus::Exited(_) => None,
        }
    }
    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        self.status == ExitStatus::Exited(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(Command::new("").encode().unwrap_err(), CommandError::EmptyProgram);
        assert!(matches!(Command::new("a\0b").encode(), Err(CommandError::NulByte { .. })));
        assert!(matches!(Command::new("x").arg("a\0").encode(), Err(CommandError::NulByte { .. })));
        assert!(matches!(Command::new("x").env("A=B", "c").encode(), Err(CommandError::BadEnvName { .. })));
        assert!(matches!(Command::new("x").cwd("rel").encode(), Err(CommandError::RelativeCwd { .. })));
        let big = "x".repeat(MAX_ARGS_BYTES);
        assert!(matches!(Command::new("x").arg(big).encode(), Err(CommandError::TooLarge { .. })));
        assert!(matches!(Command::new("x").timeout(Duration::ZERO).encode(), Err(CommandError::ZeroLimit { .. })));
        let bytes_out = Command::new("x").stdout(Stdio::bytes("no")).encode();
        assert_eq!(bytes_out.unwrap_err(), CommandError::BytesAsOutput { stream: "stdout" });
    }

    #[test]
    fn environment_is_minimal_and_overridable() {
        let EncodedCommand { env, cwd, .. } = Command::new("x").env("PATH", "/bin").env("K", "v").encode().unwrap();
        let env: Vec<String> = env.into_iter().map(|e| String::from_utf8(e).unwrap()).collect();
        assert!(env.contains(&"PATH=/bin".to_string()));
        assert!(env.contains(&"K=v".to_string()));
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
        assert_eq!(cwd, b"/tmp");
        // Nothing of the host's environment.
        assert!(!env.iter().any(|e| e.starts_with("CARGO") || e.starts_with("USER=")));
    }

    #[test]
    fn environment_takes_std_shaped_changes() {
        let names = |cmd: &Command| -> Vec<String> {
            cmd.environment().into_iter().map(|(k, v)| format!("{}={}", k.display(), v.display())).collect()
        };
        let removed = names(Command::new("x").env_remove("HOME").envs([("A", "1"), ("B", "2")]));
        assert!(!removed.iter().any(|e| e.starts_with("HOME=")), "{removed:?}");
        assert!(
            removed.contains(&"A=1".into())
                && removed.contains(&"B=2".into())
                && removed.contains(&"LANG=C.UTF-8".into())
        );
        assert_eq!(names(Command::new("x").env("A", "1").env_clear().env("B", "2")), ["B=2"]);
        assert_eq!(
            names(Command::new("x").env_remove("A").env("A", "back")),
            [
                "PATH=".to_string() + DEFAULT_PATH,
                "HOME=/tmp".into(),
                "TMPDIR=/tmp".into(),
                "LANG=C.UTF-8".into(),
                "A=back".into()
            ]
        );
        assert_eq!(Command::new("x").current_dir("/srv").get_cwd(), Path::new("/srv"));
    }
}
