//! Warm runtimes: an interpreter started once per session (the *template*), which serves each
//! command that names it with a fork instead of an `execve`.
//!
//! A Python command (`python3 -c CODE`, `python3 FILE ARGS`, `python3 -m MODULE ARGS`, the
//! program on stdin) costs about 20 ms bare, nearly all of it the interpreter starting and
//! importing. With [`Runtime::python3`] in the policy, each session starts one interpreter
//! with the preload list imported, and a command naming it is a fork of that interpreter,
//! made into what `python3 ARGS` would have been: its argv, environment, working directory,
//! `sys.path[0]`, a fresh `__main__`, its own stdio, exit status and uncaught-exception output.
//! The caller's [`Command`](super::Command) does not change. A command the template cannot
//! serve exactly (an interpreter option such as `-I` or `-X`, an environment that changes how
//! Python starts: `PYTHON*`, locale, `HOME`, `PATH`, `TZ`; a terminal; `no_fork`) is exec'd as
//! before.
//!
//! A served child is a command like any other: the template is its parent and reports its end
//! to the spawner, and the same cgroup, limits, namespaces, Landlock domain, seccomp filters,
//! timeout, output cap, process group, verdict and [`ResourceUsage`](super::ResourceUsage)
//! hold. Where the template is not shared across leases, once it has served a command it forks
//! the next child ahead, which waits for its request: the fork is then off the next command's
//! path (a lease's later commands). The
//! template itself runs no tenant code: it is not dumpable (no `ptrace`, no `/proc/2`), the
//! seccomp filter refuses the calls that act on it by pid, and every signal stays blocked in
//! it; what a command can still do to it (kill it or stop it with a signal to every process)
//! shows in the verdict, and the session is then not handed on.
//!
//! What served children share: the template's address layout and string-hash secret (each
//! interpreter's are random, fixed at its start). By default a session whose template served
//! a command is not handed on as untouched, so the next lease gets a new template, and no two
//! leases share them; [`Runtime::share_across_leases`] lets an untouched lease's template
//! serve the next lease too (faster when each lease runs one command, at that cost).
//!
//! ```no_run
//! use sandpool::sandbox::{Command, Policy, Runtime, Sandbox};
//! let policy = Policy::builder().runtime(Runtime::python3().preload(["json", "re"])).build()?;
//! let mut sandbox = Sandbox::spawn(&policy)?;
//! let out = sandbox.run(Command::new("python3").args(["-c", "import json; print(json.dumps([1]))"]))?;
//! assert_eq!(out.stdout, b"[1]\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

/// The Python template's program (run with `python3 -c STUB SOURCE PRELOAD...`).
pub(crate) const PYTHON_TEMPLATE: &str = include_str!("python_template.py");

/// What `-c` runs in the template: the program above, compiled under a name of its own so
/// that its frames can be told from a served program's in a traceback.
pub(crate) const PYTHON_STUB: &str = "exec(compile(__import__('sys').argv[1],'<sandpool template>','exec'))";

/// Most modules a preload list may name.
const MAX_PRELOAD: usize = 256;

/// An interpreter each session starts once and then forks per command (see the
/// [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    pub(crate) interpreter: PathBuf,
    pub(crate) preload: Vec<String>,
    pub(crate) share_across_leases: bool,
}

impl Runtime {
    /// CPython 3, found as `python3` on the sandbox's `PATH`; serves the commands whose
    /// program is `python3` or the path it resolves to.
    pub fn python3() -> Runtime {
        Runtime { interpreter: PathBuf::from("python3"), preload: Vec::new(), share_across_leases: false }
    }

    /// The interpreter to start: a name searched on the sandbox's `PATH`, or an absolute path
    /// inside the sandbox. Commands naming it the same way (or by the path it resolves to)
    /// are served. Default: `python3`.
    pub fn interpreter(mut self, program: impl AsRef<Path>) -> Runtime {
        self.interpreter = program.as_ref().to_path_buf();
        self
    }

    /// Modules the template imports before it forks (dotted names: `"json"`,
    /// `"xml.etree.ElementTree"`). A served child finds them imported, as a program that
    /// imported them itself would. A module that fails to import keeps the template from
    /// starting: the session's commands are then exec'd.
    pub fn preload<I, S>(mut self, modules: I) -> Runtime
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.preload.extend(modules.into_iter().map(Into::into));
        self
    }

    /// Whether a session whose template served commands may still be handed to the next
    /// lease as untouched (when nothing else of it changed), so that leases share the
    /// template's address layout and string-hash secret. Default: `false` (a new template for
    /// each lease that used one). A shared template forks each child on request: a child
    /// forked ahead would wait within reach of one lease's commands (signals, priority,
    /// limits of a process of the same user) and be the next lease's command.
    pub fn share_across_leases(mut self, share: bool) -> Runtime {
        self.share_across_leases = share;
        self
    }

    /// The interpreter it starts.
    pub fn interpreter_path(&self) -> &Path {
        &self.interpreter
    }

    /// The modules the template imports.
    pub fn preloaded(&self) -> &[String] {
        &self.preload
    }

    /// Whether a template may serve more than one lease.
    pub fn shares_across_leases(&self) -> bool {
        self.share_across_leases
    }

    /// Checks what the policy builder takes: an interpreter given as a name or an absolute
    /// path, module names that are dotted identifiers.
    pub(crate) fn check(&self) -> Result<(), String> {
        let program = self.interpreter.as_os_str().as_encoded_bytes();
        if program.is_empty() || program.contains(&0) {
            return Err("the runtime's interpreter must be a non-empty name or path without NUL".into());
        }
        if program.contains(&b'/') && !self.interpreter.is_absolute() {
            return Err(format!("the runtime's interpreter {:?} must be a name or an absolute path", self.interpreter));
        }
        if self.preload.len() > MAX_PRELOAD {
            return Err(format!("a runtime preloads at most {MAX_PRELOAD} modules"));
        }
        for module in &self.preload {
            let valid = !module.is_empty()
                && module.split('.').all(|part| {
                    let mut chars = part.chars();
                    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
                        && chars.all(|c| c == '_' || c.is_alphanumeric())
                });
            if !valid {
                return Err(format!("{module:?} is not a module name (dotted identifiers)"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_names() {
        assert!(Runtime::python3().preload(["json", "xml.etree.ElementTree", "_x1"]).check().is_ok());
        for bad in ["", "a..b", "1x", "a-b", "os; import x", ".a"] {
            assert!(Runtime::python3().preload([bad]).check().is_err(), "{bad:?}");
        }
        assert!(Runtime::python3().interpreter("bin/python3").check().is_err());
        assert!(Runtime::python3().interpreter("/usr/bin/python3").check().is_ok());
    }
}
