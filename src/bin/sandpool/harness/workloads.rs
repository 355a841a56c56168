//! The named workloads of `sandpool bench`: what users' leases run, not only `/bin/true`.
//!
//! Each is one command line, run the same way by every mode: bare, in bwrap, warm through the
//! pool and cold. A workload whose program this host lacks (`python3`, `gcc`) is skipped, and
//! the report says why.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use sandpool::sandbox::{DEFAULT_PATH, Policy, Runtime};

/// A named command line and what it needs of the sandbox.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    /// Its name (`--workload NAME`).
    pub(crate) name: &'static str,
    /// What it does, for the report.
    pub(crate) about: &'static str,
    /// Program (absolute) and arguments.
    pub(crate) argv: Vec<OsString>,
    /// Host directories it needs bound read-only (the probe's, where it is not in a system
    /// directory).
    pub(crate) ro_binds: Vec<PathBuf>,
    /// The warm runtime that serves it, if one does: then the `runtime` modes measure it too.
    pub(crate) runtime: Option<Runtime>,
}

/// The workloads' names, in the order they run.
pub(crate) const NAMES: [&str; 5] = ["true", "file", "loopback", "python", "gcc"];

/// The hidden subcommand of `sandpool` that the `loopback` workload runs.
pub(crate) const PROBE_SUBCOMMAND: &str = "bench-probe";

fn sh(script: &str) -> Vec<OsString> {
    ["/bin/sh", "-c", script].into_iter().map(OsString::from).collect()
}

/// `program` as the sandbox finds it (in [`DEFAULT_PATH`], among what it shows of the host):
/// every mode then runs the same file (a host's own `PATH` may find another first, such as
/// a version manager's shim).
fn located(program: &str) -> Result<PathBuf, String> {
    Policy::default()
        .locate_program(Path::new(program), DEFAULT_PATH, Path::new("/tmp"))
        .map_err(|_| format!("{program} is not installed in {DEFAULT_PATH}"))
}

/// The workload called `name`, or why this host cannot run it.
pub(crate) fn workload(name: &str) -> Result<Workload, String> {
    let w = |name, about, argv, ro_binds| Ok(Workload { name, about, argv, ro_binds, runtime: None });
    match name {
        "true" => w("true", "/bin/true: a lease that leaves nothing behind", vec!["/bin/true".into()], vec![]),
        "file" => w(
            "file",
            "sh writes a file in /tmp, reads it back and removes it",
            sh("f=/tmp/bench.$$; echo data > $f && cat $f > /dev/null && rm $f"),
            vec![],
        ),
        "loopback" => {
            let exe = std::env::current_exe().map_err(|e| format!("cannot find sandpool itself: {e}"))?;
            let dir = exe.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
            let binds = if Policy::default().shows_host_path(&exe) { vec![] } else { vec![dir] };
            w(
                "loopback",
                "a loopback TCP round trip: listen, connect, one line each way, close (sandpool's own probe)",
                vec![exe.into(), PROBE_SUBCOMMAND.into(), "loopback".into()],
                binds,
            )
        }
        "python" => {
            let python = located("python3")?;
            let argv = vec![python.into(), "-c".into(), "import json; print(json.dumps({'ok': True}))".into()];
            let runtime = Some(Runtime::python3().preload(["json"]));
            Ok(Workload {
                name: "python",
                about: "python3 -c with one stdlib import (json)",
                argv,
                ro_binds: vec![],
                runtime,
            })
        }
        "gcc" => {
            located("gcc")?;
            w(
                "gcc",
                "gcc compiles a one-line C program in /tmp, which then runs",
                sh(
                    "d=$(mktemp -d) && echo 'int main(void){return 0;}' > $d/a.c && gcc -o $d/a $d/a.c && $d/a && rm -r $d",
                ),
                vec![],
            )
        }
        other => Err(format!("no workload {other:?} (known: {})", NAMES.join(", "))),
    }
}

/// A workload for a program given on the command line (`-- PROGRAM ARG...`).
pub(crate) fn custom(argv: &[String]) -> Workload {
    Workload {
        name: "custom",
        about: "the program given",
        argv: argv.iter().map(OsString::from).collect(),
        ro_binds: vec![],
        runtime: None,
    }
}

/// The directories bwrap binds read-only for every workload: what a sandbox shows of the host
/// (the system directories, as links where the host has links, and the `/etc` files programs
/// read), so that both run the same programs with the same libraries.
fn bwrap_system_args() -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    for dir in ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc"] {
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.file_type().is_symlink() => {
                if let Ok(target) = std::fs::read_link(dir) {
                    args.extend(["--symlink".into(), target.into_os_string(), dir.into()]);
                }
            }
            Ok(m) if m.is_dir() => args.extend(["--ro-bind", dir, dir].map(OsString::from)),
            _ => {}
        }
    }
    args
}

/// bwrap's command line for `workload`, isolated about as a sandbox is: every namespace of
/// its own (a network of loopback only), a new session, a fresh `/tmp`, `/proc` and `/dev`,
/// the system directories read-only; `None` where bwrap is not installed.
pub(crate) fn bwrap_argv(workload: &Workload) -> Option<Vec<OsString>> {
    let bwrap = ["/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap"].into_iter().find(|p| Path::new(p).exists())?;
    let mut argv: Vec<OsString> = vec![bwrap.into()];
    argv.extend(["--unshare-all", "--die-with-parent", "--new-session"].map(OsString::from));
    argv.extend(bwrap_system_args());
    argv.extend(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--chdir", "/tmp"].map(OsString::from));
    for dir in &workload.ro_binds {
        argv.extend([OsString::from("--ro-bind"), dir.clone().into(), dir.clone().into()]);
    }
    argv.push("--".into());
    argv.extend(workload.argv.iter().cloned());
    Some(argv)
}

/// `sandpool bench-probe loopback`: one TCP round trip over loopback, as the `loopback`
/// workload runs it (listen on a free port, connect, one line each way, close).
pub(crate) fn loopback_round_trip() -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let mut client = TcpStream::connect(listener.local_addr()?)?;
    let (mut server, _) = listener.accept()?;
    let mut line = [0u8; 5];
    client.write_all(b"ping\n")?;
    server.read_exact(&mut line)?;
    server.write_all(&line)?;
    client.read_exact(&mut line)?;
    if &line != b"ping\n" {
        return Err(io::Error::other("the line came back changed"));
    }
    Ok(())
}
