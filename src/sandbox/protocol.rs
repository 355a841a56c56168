//! The control protocol between the host and a sandbox's zygote.
//!
//! One message per `SOCK_SEQPACKET` datagram: a tag byte, then fields in a fixed order.
//! Integers are little-endian; byte strings are a `u32` length then the bytes. Descriptors
//! (a command's stdio) travel beside the datagram as `SCM_RIGHTS`. The decoder checks every
//! length against what is left, rejects unknown tags and trailing bytes, and never panics: it
//! reads what the other side of a trust boundary wrote.
//!
//! Public only so the fuzz target can reach it; not part of the stable API.

use std::fmt;

use super::policy::Requirement;

/// Largest datagram either side sends or accepts.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// Largest number of list entries (binds, argv, env) a message may carry.
const MAX_LIST: usize = 64 * 1024;

/// A read-only or read-write bind mount of a host path at the same path inside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindSpec {
    /// Absolute path, no NUL byte.
    pub path: Vec<u8>,
    /// Writable inside.
    pub writable: bool,
    /// Whether the host sends the bind's mount tree (idmapped) as a descriptor, in bind
    /// order, with the configuration; otherwise the zygote binds the host path itself.
    pub has_tree: bool,
}

/// How the zygote builds its sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ZygoteConfig {
    /// Keep the host's network namespace (no loopback-only netns of its own).
    pub share_network: bool,
    /// Size cap of the private `/tmp` (and `/dev/shm`) tmpfs, bytes.
    pub tmp_size: u64,
    /// Extra binds, in mount order.
    pub binds: Vec<BindSpec>,
    /// RLIMIT_NPROC (0: none).
    pub max_processes: u64,
    /// RLIMIT_AS (0: none): the memory limit's fallback when no cgroup enforces it.
    pub address_space: u64,
    /// RLIMIT_FSIZE (0: none).
    pub max_file_size: u64,
    /// RLIMIT_NOFILE (0: none).
    pub max_open_files: u64,
    /// Whether Landlock must be enforced (one byte: 0 off, 1 best effort, 2 required).
    pub landlock: Requirement,
    /// Whether the seccomp filters must be installed (one byte, as for `landlock`).
    pub seccomp: Requirement,
    /// Highest capability number of this kernel.
    pub last_cap: u32,
    /// Highest Landlock ABI to use (`u32::MAX`: whatever the kernel offers; 0: none).
    pub landlock_max_abi: u32,
    /// cgroup v1 `tasks` files the zygote joins (by writing `0`) before anything else.
    pub cgroup_tasks: Vec<Vec<u8>>,
    /// Largest receive and send buffer one TCP socket may have in the sandbox's own network
    /// namespace (`net.ipv4.tcp_rmem`/`tcp_wmem`'s maximum), bytes; 0 leaves the kernel's.
    pub socket_buffer_max: u64,
    /// The commands' own memory cgroup, if the sandbox has one, and so which descriptors
    /// come last with the configuration.
    pub commands_cgroup: CommandsCgroup,
    /// The warm runtime each session starts (see [`crate::sandbox::Runtime`]), if any.
    pub runtime: Option<RuntimeSpec>,
}

/// A warm runtime, as the zygote gets it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RuntimeSpec {
    /// The interpreter: a name searched on the default `PATH`, or an absolute path.
    pub interpreter: Vec<u8>,
    /// The modules its template imports.
    pub preload: Vec<Vec<u8>>,
    /// Whether a session whose template served a command may still be handed on untouched.
    pub share_across_leases: bool,
}

/// How commands get into their own memory cgroup (see the host's `cgroup::COMMANDS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CommandsCgroup {
    /// None: commands stay in the sandbox's cgroup.
    #[default]
    None,
    /// cgroup v1: the last descriptor is the cgroup's `tasks` file, opened by the host for
    /// writing, which each command child joins by writing `0`.
    JoinTasks,
    /// cgroup v2: the last descriptor is the init's own leaf's `cgroup.procs`, opened by the
    /// host for writing, which the zygote joins once its cgroup namespace is rooted at the
    /// sandbox's cgroup; the one before it the commands' cgroup directory, which each command
    /// is born in (`clone3(CLONE_INTO_CGROUP)`).
    BornIn,
}

impl CommandsCgroup {
    fn code(self) -> u8 {
        match self {
            CommandsCgroup::None => 0,
            CommandsCgroup::JoinTasks => 1,
            CommandsCgroup::BornIn => 2,
        }
    }

    fn from_code(code: u8) -> Result<Self, DecodeError> {
        match code {
            0 => Ok(CommandsCgroup::None),
            1 => Ok(CommandsCgroup::JoinTasks),
            2 => Ok(CommandsCgroup::BornIn),
            _ => Err(DecodeError("unknown commands' cgroup kind")),
        }
    }
}

/// Asks the zygote to start one command.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RunRequest {
    /// argv, argv\[0\] being the program (a path, or a name searched in `PATH`).
    pub argv: Vec<Vec<u8>>,
    /// `KEY=VALUE` entries.
    pub env: Vec<Vec<u8>>,
    /// Absolute working directory.
    pub cwd: Vec<u8>,
    /// Forbid creating processes (seccomp).
    pub no_fork: bool,
    /// RLIMIT_CPU in seconds (0: none).
    pub cpu_seconds: u64,
    /// Which of stdin, stdout and stderr travel as descriptors with the request, in that
    /// order (the others are `/dev/null`); the child's status pipe (its write end) comes last, always.
    pub given: [bool; 3],
    /// Wall-clock limit in milliseconds (0: none): past it the spawner kills the command's
    /// process group.
    pub timeout_ms: u64,
    /// The host's name for the command, unique in the session: what `Signal` names.
    pub token: u64,
    /// Whether the spawner sends `Started` (with the pid) once the command runs; `run`, which
    /// needs no pid, does without the extra wake-up.
    pub report_start: bool,
    /// A terminal of its own, `[rows, columns]`: the spawner opens a pseudo-terminal in the
    /// session's devpts, makes its far end the command's stdin, stdout, stderr and controlling
    /// terminal, and sends its near end (the master) back on the socket that travels just
    /// before the status pipe. Then `given` is all false.
    pub terminal: Option<[u16; 2]>,
}

/// A message from the host to the zygote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// First message: build the sandbox.
    Configure(ZygoteConfig),
    /// Start a command (to the spawner); its given stdio and its status pipe travel as
    /// descriptors. Everything about the command comes back on its status pipe:
    /// `Started`, then `Exited` (or `SpawnFailed`), then the socket closes.
    Run(RunRequest),
    /// Send `signal` to the process group of the command named `token` (to the spawner);
    /// `SIGKILL` kills the whole group, processes it forks meanwhile included.
    Signal {
        /// The command's token, from its `RunRequest`.
        token: u64,
        /// The signal number.
        signal: i32,
    },
    /// End the session and start a fresh one (to the zygote): the answer is `Ready` with the
    /// new spawner's socket, or `ResetFailed`.
    Reset {
        /// Whether the zygote may then make the next session ahead of need (a spare, which
        /// the next reset switches to): the host has made room for its process.
        spare: bool,
        /// Whether the session's commands changed nothing but files in its `/tmp` and
        /// `/dev/shm` ([`Leftover::Files`]): then the zygote may give the session new ones
        /// instead of ending it, and answers `Ready` with `in_place` and no socket (the host
        /// then sends [`Request::DirsRenewed`] to the spawner).
        in_place: bool,
    },
    /// The zygote gave the session fresh session directories (to the spawner, after a reset
    /// in place): it records them as its session's start and answers `ResetDone` on its
    /// socket.
    DirsRenewed,
}

/// What a session's commands left, as the spawner judges once none runs any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Leftover {
    /// Nothing: the session is as it started, and the next lease may have it as it is.
    Nothing = 0,
    /// Only changes in its `/tmp` and `/dev/shm` (entries, and those directories' own
    /// metadata): fresh file systems there make the session as it started.
    Files = 1,
    /// Anything else (a process, an IPC object, a packet, a terminal, changed settings): the
    /// session must end.
    More = 2,
}

impl Leftover {
    fn from_code(code: u8) -> Result<Leftover, DecodeError> {
        match code {
            0 => Ok(Leftover::Nothing),
            1 => Ok(Leftover::Files),
            2 => Ok(Leftover::More),
            _ => Err(DecodeError("bad leftover")),
        }
    }
}

/// What the zygote applied, sent once it is ready.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ZygoteReport {
    /// Landlock ABI the kernel offers (0: none).
    pub landlock_abi: u32,
    /// Whether a Landlock ruleset is enforced on every command.
    pub landlock_enforced: bool,
    /// Whether Landlock's scoping (abstract sockets, signals; ABI 6) is part of it.
    pub landlock_scoped: bool,
    /// Whether seccomp filters are installed on every command.
    pub seccomp_enforced: bool,
    /// Number of system calls the default filter denies.
    pub seccomp_denied: u32,
    /// Whether the sandbox has its own network namespace with only `lo` up.
    pub loopback_only: bool,
    /// Whether the session this reply hands over was made ahead of need (after a reset: the
    /// spare the zygote switched to).
    pub made_ahead: bool,
    /// Whether the reset kept the session and gave it fresh session directories (no socket
    /// comes with the reply).
    pub in_place: bool,
    /// Whether that session's runtime template serves.
    pub runtime: RuntimeReport,
}

/// How a session's runtime template started.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum RuntimeReport {
    /// The sandbox has no runtime.
    #[default]
    None,
    /// The template serves.
    Ready,
    /// The template could not start (why): the session's commands are exec'd.
    Failed(String),
}

impl RuntimeReport {
    fn write(&self, w: &mut Writer) {
        match self {
            RuntimeReport::None => w.u8(0),
            RuntimeReport::Ready => w.u8(1),
            RuntimeReport::Failed(why) => {
                w.u8(2);
                w.bytes(why.as_bytes());
            }
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<RuntimeReport, DecodeError> {
        match r.u8()? {
            0 => Ok(RuntimeReport::None),
            1 => Ok(RuntimeReport::Ready),
            2 => Ok(RuntimeReport::Failed(r.string()?)),
            _ => Err(DecodeError("bad runtime report")),
        }
    }
}

/// Resource use of a finished command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Usage {
    /// User CPU time, µs.
    pub user_us: u64,
    /// System CPU time, µs.
    pub system_us: u64,
    /// Peak resident set, KiB.
    pub max_rss_kib: u64,
}

/// A message from the zygote to the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The sandbox is built, or a new session started; the spawner's socket (for `Run` and
    /// `Signal`) comes with it.
    Ready(ZygoteReport),
    /// Building the sandbox failed at `step`.
    SetupFailed {
        /// What the zygote was doing.
        step: String,
        /// The OS error number.
        errno: i32,
    },
    /// The command ended; `status` is the raw wait status.
    Exited {
        /// Raw wait status (`WIFEXITED`/`WTERMSIG` apply).
        status: i32,
        /// Its resource use.
        usage: Usage,
        /// What the session's commands left once this one ended: nothing (the next lease
        /// needs no reset), files only, or more.
        left: Leftover,
        /// Whether the spawner killed it for running past its timeout.
        timed_out: bool,
        /// How many `Run` requests the spawner had received when it judged: the verdict says
        /// nothing of a command the host sent after those.
        commands_received: u64,
    },
    /// The command started (on its status pipe): its pid in the session.
    Started {
        /// The pid, which is also its process group's and its session's id.
        pid: i32,
    },
    /// The command could not be started.
    SpawnFailed {
        /// What the spawner or the command's child was doing.
        step: SpawnStep,
        /// The OS error number.
        errno: i32,
    },
    /// The spawner's first message, to the zygote: its session is ready, with how much of its
    /// Landlock ruleset the kernel enforced.
    ResetDone {
        /// What `landlock_restrict_self` left in force.
        landlock: LandlockEnforcement,
        /// Whether its runtime template serves.
        runtime: RuntimeReport,
    },
    /// No fresh session could be started: the sandbox must not be reused.
    ResetFailed {
        /// What the zygote was doing.
        step: String,
        /// The OS error number.
        errno: i32,
    },
}

/// Where starting a command failed: in the spawner, or in the command's child between its
/// `clone` and its `execve` (one byte on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SpawnStep {
    /// The spawner could not take the request (wrong descriptors, a command still running).
    Receive = 1,
    /// The request held an argument, variable or path with a NUL byte, or no program.
    Decode = 2,
    /// `clone` of the command's child.
    Clone = 3,
    /// The child's `setsid`.
    NewSession = 4,
    /// The child's stdio, descriptors above it closed, signal mask cleared.
    Stdio = 5,
    /// The child's `chdir` to the working directory.
    WorkingDirectory = 6,
    /// The child's `RLIMIT_CPU`.
    CpuLimit = 7,
    /// The command's own seccomp filter (`--no-fork`).
    Seccomp = 8,
    /// `execve` of every candidate path.
    Exec = 9,
    /// The command's terminal: opening the pseudo-terminal in the spawner, or making it the
    /// child's controlling terminal.
    Terminal = 10,
    /// The child's move into the commands' own cgroup.
    Cgroup = 11,
}

impl SpawnStep {
    const ALL: [SpawnStep; 11] = [
        SpawnStep::Receive,
        SpawnStep::Decode,
        SpawnStep::Clone,
        SpawnStep::NewSession,
        SpawnStep::Stdio,
        SpawnStep::WorkingDirectory,
        SpawnStep::CpuLimit,
        SpawnStep::Seccomp,
        SpawnStep::Exec,
        SpawnStep::Terminal,
        SpawnStep::Cgroup,
    ];

    /// The step with this wire code, if any.
    pub fn from_code(code: u8) -> Option<SpawnStep> {
        SpawnStep::ALL.into_iter().find(|s| *s as u8 == code)
    }

    /// What the step does, for error messages.
    pub fn name(self) -> &'static str {
        match self {
            SpawnStep::Receive => "receive the command",
            SpawnStep::Decode => "decode the command",
            SpawnStep::Clone => "clone",
            SpawnStep::NewSession => "start a session",
            SpawnStep::Stdio => "set up stdio",
            SpawnStep::WorkingDirectory => "enter the working directory",
            SpawnStep::CpuLimit => "limit CPU time",
            SpawnStep::Seccomp => "install seccomp",
            SpawnStep::Exec => "exec",
            SpawnStep::Terminal => "set up the terminal",
            SpawnStep::Cgroup => "join the commands' cgroup",
        }
    }
}

/// How much of its Landlock ruleset a session's spawner got the kernel to enforce (one byte
/// on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum LandlockEnforcement {
    /// None: no ruleset (Landlock off, or missing in this kernel).
    #[default]
    None = 0,
    /// Part of it (the kernel's ABI is older than the ruleset's).
    Partial = 1,
    /// All of it.
    Full = 2,
}

/// A [`Requirement`]'s wire code.
fn requirement_code(r: Requirement) -> u8 {
    match r {
        Requirement::Off => 0,
        Requirement::BestEffort => 1,
        Requirement::Required => 2,
    }
}

/// Why a datagram could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(&'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed control message: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

impl DecodeError {
    /// A well-formed message that has no place at this point of the conversation.
    pub(crate) fn unexpected() -> Self {
        DecodeError("unexpected message")
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn bool(&mut self, v: bool) {
        self.0.push(v as u8);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn list(&mut self, v: &[Vec<u8>]) {
        self.u32(v.len() as u32);
        for item in v {
            self.bytes(item);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("bad boolean")),
        }
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        u16::try_from(self.u32()?).map_err(|_| DecodeError("terminal size out of range"))
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(self.u32()? as i32)
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn requirement(&mut self) -> Result<Requirement, DecodeError> {
        match self.u8()? {
            0 => Ok(Requirement::Off),
            1 => Ok(Requirement::BestEffort),
            2 => Ok(Requirement::Required),
            _ => Err(DecodeError("bad requirement")),
        }
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?).map_err(|_| DecodeError("invalid UTF-8"))
    }
    fn list(&mut self) -> Result<Vec<Vec<u8>>, DecodeError> {
        let n = self.u32()? as usize;
        // Each entry takes at least its 4-byte length: bound the allocation by what is left.
        if n > MAX_LIST || n > self.0.len() / 4 {
            return Err(DecodeError("list longer than the message"));
        }
        (0..n).map(|_| self.bytes()).collect()
    }
    fn finish(self) -> Result<(), DecodeError> {
        if self.0.is_empty() { Ok(()) } else { Err(DecodeError("trailing bytes")) }
    }
}

mod tag {
    pub const CONFIGURE: u8 = 1;
    pub const RUN: u8 = 2;
    pub const SIGNAL: u8 = 3;
    pub const RESET: u8 = 4;
    pub const READY: u8 = 101;
    pub const SETUP_FAILED: u8 = 102;
    pub const EXITED: u8 = 103;
    pub const SPAWN_FAILED: u8 = 104;
    pub const RESET_DONE: u8 = 105;
    pub const RESET_FAILED: u8 = 106;
    pub const STARTED: u8 = 107;
    pub const DIRS_RENEWED: u8 = 5;
}

impl Request {
    /// Encodes into one datagram.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(64));
        match self {
            Request::Configure(c) => {
                w.u8(tag::CONFIGURE);
                w.bool(c.share_network);
                w.u64(c.tmp_size);
                w.u32(c.binds.len() as u32);
                for b in &c.binds {
                    w.bytes(&b.path);
                    w.bool(b.writable);
                    w.bool(b.has_tree);
                }
                w.u64(c.max_processes);
                w.u64(c.address_space);
                w.u64(c.max_file_size);
                w.u64(c.max_open_files);
                w.u8(requirement_code(c.landlock));
                w.u8(requirement_code(c.seccomp));
                w.u32(c.last_cap);
                w.u32(c.landlock_max_abi);
                w.list(&c.cgroup_tasks);
                w.u64(c.socket_buffer_max);
                w.u8(c.commands_cgroup.code());
                w.bool(c.runtime.is_some());
                if let Some(rt) = &c.runtime {
                    w.bytes(&rt.interpreter);
                    w.list(&rt.preload);
                    w.bool(rt.share_across_leases);
                }
            }
            Request::Run(r) => {
                w.u8(tag::RUN);
                w.list(&r.argv);
                w.list(&r.env);
                w.bytes(&r.cwd);
                w.bool(r.no_fork);
                w.u64(r.cpu_seconds);
                for given in r.given {
                    w.bool(given);
                }
                w.u64(r.timeout_ms);
                w.u64(r.token);
                w.bool(r.report_start);
                w.bool(r.terminal.is_some());
                for n in r.terminal.iter().flatten() {
                    w.u32(u32::from(*n));
                }
            }
            Request::Signal { token, signal } => {
                w.u8(tag::SIGNAL);
                w.u64(*token);
                w.i32(*signal);
            }
            Request::Reset { spare, in_place } => {
                w.u8(tag::RESET);
                w.bool(*spare);
                w.bool(*in_place);
            }
            Request::DirsRenewed => w.u8(tag::DIRS_RENEWED),
        }
        w.0
    }

    /// Decodes one datagram.
    pub fn decode(data: &[u8]) -> Result<Request, DecodeError> {
        let mut r = Reader(data);
        let msg = match r.u8()? {
            tag::CONFIGURE => {
                let share_network = r.bool()?;
                let tmp_size = r.u64()?;
                let n = r.u32()? as usize;
                if n > MAX_LIST || n > r.0.len() / 6 {
                    return Err(DecodeError("bind list longer than the message"));
                }
                let binds = (0..n)
                    .map(|_| Ok(BindSpec { path: r.bytes()?, writable: r.bool()?, has_tree: r.bool()? }))
                    .collect::<Result<_, DecodeError>>()?;
                Request::Configure(ZygoteConfig {
                    share_network,
                    tmp_size,
                    binds,
                    max_processes: r.u64()?,
                    address_space: r.u64()?,
                    max_file_size: r.u64()?,
                    max_open_files: r.u64()?,
                    landlock: r.requirement()?,
                    seccomp: r.requirement()?,
                    last_cap: r.u32()?,
                    landlock_max_abi: r.u32()?,
                    cgroup_tasks: r.list()?,
                    socket_buffer_max: r.u64()?,
                    commands_cgroup: CommandsCgroup::from_code(r.u8()?)?,
                    runtime: if r.bool()? {
                        Some(RuntimeSpec {
                            interpreter: r.bytes()?,
                            preload: r.list()?,
                            share_across_leases: r.bool()?,
                        })
                    } else {
                        None
                    },
                })
            }
            tag::RUN => Request::Run(RunRequest {
                argv: r.list()?,
                env: r.list()?,
                cwd: r.bytes()?,
                no_fork: r.bool()?,
                cpu_seconds: r.u64()?,
                given: [r.bool()?, r.bool()?, r.bool()?],
                timeout_ms: r.u64()?,
                token: r.u64()?,
                report_start: r.bool()?,
                terminal: match r.bool()? {
                    true => Some([r.u16()?, r.u16()?]),
                    false => None,
                },
            }),
            tag::SIGNAL => Request::Signal { token: r.u64()?, signal: r.i32()? },
            tag::RESET => Request::Reset { spare: r.bool()?, in_place: r.bool()? },
            tag::DIRS_RENEWED => Request::DirsRenewed,
            _ => return Err(DecodeError("unknown request")),
        };
        r.finish()?;
        Ok(msg)
    }
}

impl Reply {
    /// Encodes into one datagram.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(32));
        match self {
            Reply::Ready(rep) => {
                w.u8(tag::READY);
                w.u32(rep.landlock_abi);
                w.bool(rep.landlock_enforced);
                w.bool(rep.landlock_scoped);
                w.bool(rep.seccomp_enforced);
                w.u32(rep.seccomp_denied);
                w.bool(rep.loopback_only);
                w.bool(rep.made_ahead);
                w.bool(rep.in_place);
                rep.runtime.write(&mut w);
            }
            Reply::SetupFailed { step, errno } => {
                w.u8(tag::SETUP_FAILED);
                w.bytes(step.as_bytes());
                w.i32(*errno);
            }
            Reply::Exited { status, usage, left, timed_out, commands_received } => {
                w.u8(tag::EXITED);
                w.i32(*status);
                w.u64(usage.user_us);
                w.u64(usage.system_us);
                w.u64(usage.max_rss_kib);
                w.u8(*left as u8);
                w.bool(*timed_out);
                w.u64(*commands_received);
            }
            Reply::Started { pid } => {
                w.u8(tag::STARTED);
                w.i32(*pid);
            }
            Reply::SpawnFailed { step, errno } => {
                w.u8(tag::SPAWN_FAILED);
                w.u8(*step as u8);
                w.i32(*errno);
            }
            Reply::ResetDone { landlock, runtime } => {
                w.u8(tag::RESET_DONE);
                w.u8(*landlock as u8);
                runtime.write(&mut w);
            }
            Reply::ResetFailed { step, errno } => {
                w.u8(tag::RESET_FAILED);
                w.bytes(step.as_bytes());
                w.i32(*errno);
            }
        }
        w.0
    }

    /// Decodes one datagram.
    pub fn decode(data: &[u8]) -> Result<Reply, DecodeError> {
        let mut r = Reader(data);
        let msg = match r.u8()? {
            tag::READY => Reply::Ready(ZygoteReport {
                landlock_abi: r.u32()?,
                landlock_enforced: r.bool()?,
                landlock_scoped: r.bool()?,
                seccomp_enforced: r.bool()?,
                seccomp_denied: r.u32()?,
                loopback_only: r.bool()?,
                made_ahead: r.bool()?,
                in_place: r.bool()?,
                runtime: RuntimeReport::read(&mut r)?,
            }),
            tag::SETUP_FAILED => Reply::SetupFailed { step: r.string()?, errno: r.i32()? },
            tag::EXITED => Reply::Exited {
                status: r.i32()?,
                usage: Usage { user_us: r.u64()?, system_us: r.u64()?, max_rss_kib: r.u64()? },
                left: Leftover::from_code(r.u8()?)?,
                timed_out: r.bool()?,
                commands_received: r.u64()?,
            },
            tag::STARTED => Reply::Started { pid: r.i32()? },
            tag::SPAWN_FAILED => Reply::SpawnFailed {
                step: SpawnStep::from_code(r.u8()?).ok_or(DecodeError("unknown spawn step"))?,
                errno: r.i32()?,
            },
            tag::RESET_DONE => Reply::ResetDone {
                landlock: match r.u8()? {
                    0 => LandlockEnforcement::None,
                    1 => LandlockEnforcement::Partial,
                    2 => LandlockEnforcement::Full,
                    _ => return Err(DecodeError("bad Landlock enforcement")),
                },
                runtime: RuntimeReport::read(&mut r)?,
            },
            tag::RESET_FAILED => Reply::ResetFailed { step: r.string()?, errno: r.i32()? },
            _ => return Err(DecodeError("unknown reply")),
        };
        r.finish()?;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let msgs = [
            Request::Configure(ZygoteConfig {
                share_network: true,
                tmp_size: 1 << 26,
                binds: vec![BindSpec { path: b"/data".to_vec(), writable: true, has_tree: true }],
                max_processes: 64,
                address_space: 0,
                max_file_size: 1 << 30,
                max_open_files: 1024,
                landlock: Requirement::Required,
                seccomp: Requirement::BestEffort,
                last_cap: 40,
                landlock_max_abi: 5,
                cgroup_tasks: vec![b"/sys/fs/cgroup/pids/sandpool/sb-1-0/tasks".to_vec()],
                socket_buffer_max: 1 << 20,
                commands_cgroup: CommandsCgroup::BornIn,
                runtime: Some(RuntimeSpec {
                    interpreter: b"python3".to_vec(),
                    preload: vec![b"json".to_vec(), b"re".to_vec()],
                    share_across_leases: true,
                }),
            }),
            Request::Run(RunRequest {
                argv: vec![b"/bin/echo".to_vec(), b"hi".to_vec()],
                env: vec![b"A=b".to_vec()],
                cwd: b"/tmp".to_vec(),
                no_fork: true,
                cpu_seconds: 7,
                given: [true, false, true],
                timeout_ms: 1500,
                token: 7,
                report_start: true,
                terminal: Some([24, 80]),
            }),
            Request::Run(RunRequest { argv: vec![b"true".to_vec()], ..Default::default() }),
            Request::Signal { token: 7, signal: 9 },
            Request::Reset { spare: true, in_place: false },
            Request::Reset { spare: false, in_place: true },
            Request::DirsRenewed,
        ];
        for m in msgs {
            assert_eq!(Request::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn replies_round_trip() {
        let msgs = [
            Reply::Ready(ZygoteReport { landlock_abi: 7, landlock_enforced: true, ..Default::default() }),
            Reply::Ready(ZygoteReport { in_place: true, ..Default::default() }),
            Reply::SetupFailed { step: "mount /proc".into(), errno: 1 },
            Reply::Exited {
                status: 9,
                usage: Usage { user_us: 1, system_us: 2, max_rss_kib: 3 },
                left: Leftover::Files,
                timed_out: false,
                commands_received: 3,
            },
            Reply::Started { pid: 2 },
            Reply::SpawnFailed { step: SpawnStep::Exec, errno: 2 },
            Reply::SpawnFailed { step: SpawnStep::Receive, errno: 22 },
            Reply::ResetDone { landlock: LandlockEnforcement::None, runtime: RuntimeReport::None },
            Reply::ResetDone { landlock: LandlockEnforcement::Partial, runtime: RuntimeReport::Ready },
            Reply::ResetDone {
                landlock: LandlockEnforcement::Full,
                runtime: RuntimeReport::Failed("ModuleNotFoundError: No module named 'x'".into()),
            },
            Reply::ResetFailed { step: "empty /tmp".into(), errno: 16 },
        ];
        for m in msgs {
            assert_eq!(Reply::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn malformed_input_is_rejected() {
        assert!(Request::decode(&[]).is_err());
        assert!(Request::decode(&[99]).is_err());
        // A list claiming 2^32-1 entries must fail fast, not allocate.
        assert!(Request::decode(&[tag::RUN, 0xff, 0xff, 0xff, 0xff]).is_err());
        let mut ok = Request::Reset { spare: false, in_place: false }.encode();
        ok.push(0);
        assert_eq!(Request::decode(&ok), Err(DecodeError("trailing bytes")));
        let mut run = Request::Run(RunRequest::default()).encode();
        run.truncate(run.len() - 1);
        assert!(Request::decode(&run).is_err());
        assert!(Reply::decode(&[tag::READY, 0, 0, 0, 0, 2]).is_err());
        let exited = Reply::Exited {
            status: 0,
            usage: Usage::default(),
            left: Leftover::More,
            timed_out: false,
            commands_received: 1,
        };
        let mut bad_leftover = exited.encode();
        // The leftover's byte: after the tag, the status and the three usage fields.
        assert_eq!(bad_leftover[1 + 4 + 24], Leftover::More as u8);
        bad_leftover[1 + 4 + 24] = 3;
        assert_eq!(Reply::decode(&bad_leftover), Err(DecodeError("bad leftover")));
        assert!(Reply::decode(&[tag::SPAWN_FAILED, 0, 2, 0, 0, 0]).is_err(), "no step 0");
        assert!(Reply::decode(&[tag::SPAWN_FAILED, 12, 2, 0, 0, 0]).is_err(), "no step 12");
        let mut huge = Request::Run(RunRequest { terminal: Some([1, 1]), ..Default::default() }).encode();
        huge.truncate(huge.len() - 8);
        huge.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0]);
        assert_eq!(Request::decode(&huge), Err(DecodeError("terminal size out of range")));
    }

    #[test]
    fn every_spawn_step_round_trips_its_code() {
        for step in SpawnStep::ALL {
            assert_eq!(SpawnStep::from_code(step as u8), Some(step));
        }
        let mut config = Request::Configure(ZygoteConfig::default()).encode();
        // From the end: the runtime's flag, commands_cgroup, socket_buffer_max, the empty
        // cgroup_tasks list, landlock_max_abi, last_cap, seccomp.
        let landlock_at = config.len() - (1 + 1 + 8 + 4 + 4 + 4 + 1 + 1);
        config[landlock_at] = 3;
        assert_eq!(Request::decode(&config), Err(DecodeError("bad requirement")));
    }
}
