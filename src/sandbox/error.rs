//! Errors of the sandbox, each variant named after the step that failed.

use std::io;

use thiserror::Error;

use super::command::CommandError;
use super::policy::PolicyError;
use super::protocol::DecodeError;

/// Why a sandbox could not be made, run a command, or be reset.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The policy was refused.
    #[error("invalid policy: {0}")]
    Policy(#[from] PolicyError),
    /// The command was refused before anything ran.
    #[error("invalid command: {0}")]
    Command(#[from] CommandError),
    /// The program does not exist inside the sandbox.
    #[error(
        "program {program:?} not found in the sandbox (searched PATH inside; bind its directory with --ro if it lives elsewhere)"
    )]
    ProgramNotFound {
        /// The program as given.
        program: String,
    },
    /// The program exists but could not be executed.
    #[error("cannot execute {program:?} in the sandbox")]
    Exec {
        /// The program as given.
        program: String,
        /// The OS error from `execve`.
        #[source]
        source: io::Error,
    },
    /// The command's child failed while confining itself.
    #[error("starting the command failed at step '{step}'")]
    CommandSetup {
        /// The step.
        step: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The host could not open its own image to start the zygote from.
    #[error("cannot open this program's image (/proc/self/exe) to start the sandbox init")]
    OpenImage(#[source] io::Error),
    /// Creating the control socket or a pipe failed.
    #[error("cannot create the {what}")]
    Channel {
        /// Which channel.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Creating or configuring the sandbox's cgroup failed.
    #[error("cgroup setup failed: {step}")]
    Cgroup {
        /// The step.
        step: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `clone3` or the clone child failed before the zygote ran.
    #[error(
        "creating the sandbox process failed at '{step}' (are unprivileged user namespaces enabled? see `sandpool doctor`)"
    )]
    Clone {
        /// The step.
        step: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The host refuses the namespaces every sandbox needs (a container's seccomp profile,
    /// an AppArmor restriction, user namespaces turned off): `reason` says what, and how to
    /// allow it, in one sentence; `source` is the failure as it happened.
    #[error("{reason}")]
    HostRefuses {
        /// What refuses, and how to allow it.
        reason: String,
        /// The failure.
        #[source]
        source: Box<SandboxError>,
    },
    /// Writing the user namespace's id maps failed.
    #[error("writing the sandbox's uid/gid map failed")]
    IdMap(#[source] io::Error),
    /// The zygote failed while building the sandbox.
    #[error("building the sandbox failed at '{step}'")]
    Setup {
        /// The step.
        step: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A required layer is not available on this host.
    #[error("required isolation layer '{layer}' is unavailable: {reason} (relax it in the policy to run without it)")]
    LayerUnavailable {
        /// The layer.
        layer: &'static str,
        /// Why.
        reason: String,
    },
    /// Talking to the zygote failed.
    #[error("control channel to the sandbox failed while {step}")]
    Control {
        /// The step.
        step: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The zygote sent something unexpected.
    #[error("the sandbox sent a malformed or unexpected message")]
    Protocol(#[from] DecodeError),
    /// The zygote is gone (killed from outside, or out of memory).
    #[error("the sandbox's init has died; this sandbox cannot be used any more")]
    Dead,
    /// The session's spawner stopped answering: it took no request, or reported no end,
    /// within the host's deadline, while the sandbox's init lives. What a session's commands
    /// do should never wedge it; the sandbox is not reused.
    #[error("the session's spawner stopped answering (the sandbox's init lives); this sandbox is not reused")]
    Unresponsive,
    /// The command's session ended before its end was reported: the sandbox was reset (or
    /// destroyed) while the command ran, which ends every process of the session.
    #[error("the command's session ended (the sandbox was reset) before the command did")]
    SessionEnded,
    /// Starting a fresh session failed; the sandbox must not be reused.
    #[error("resetting the sandbox failed at '{step}'")]
    Reset {
        /// The step.
        step: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl SandboxError {
    /// Whether the sandbox is unusable after this error (destroy it, do not reuse it).
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            SandboxError::Command(_)
                | SandboxError::ProgramNotFound { .. }
                | SandboxError::Exec { .. }
                | SandboxError::Policy(_)
                | SandboxError::SessionEnded
        )
    }
}
