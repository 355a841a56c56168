//! `sandpool doctor`: what this host supports and what isolation sandpool gives here.

use std::process::ExitCode;
use std::time::Instant;

use sandpool::sandbox::{Policy, Requirement, Sandbox, probe};

/// Options of `sandpool doctor`.
#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs `sandpool doctor`: probes the host, then makes one real sandbox with the default
/// policy (layers as best effort) to report what was actually applied.
pub fn main(args: DoctorArgs) -> ExitCode {
    let support = probe::probe();
    let policy = Policy::builder()
        .landlock(Requirement::BestEffort)
        .seccomp(Requirement::BestEffort)
        .build()
        .expect("the default policy is valid");
    let started = Instant::now();
    let spawned = Sandbox::spawn(&policy);
    let spawn_us = started.elapsed().as_micros() as u64;
    let (isolation, spawn_error) = match &spawned {
        Ok(s) => (Some(s.isolation().clone()), None),
        Err(e) => (None, Some(super::run::describe(e))),
    };
    drop(spawned);
    let ok = spawn_error.is_none();
    if args.json {
        let value = serde_json::json!({
            "host": support,
            "sandbox": {
                "works": ok,
                "spawn_us": spawn_us,
                "error": spawn_error,
                "isolation": isolation,
            },
        });
        println!("{value}");
        return if ok { ExitCode::SUCCESS } else { ExitCode::from(1) };
    }
    println!("sandpool doctor — kernel {} ({})", support.kernel, if support.root { "root" } else { "unprivileged" });
    println!();
    println!("Host support:");
    for f in &support.features {
        println!("  [{}] {:<22} {}", if f.available { "ok" } else { "--" }, f.name, f.detail);
        if let Some(fix) = &f.fix {
            println!("       {:<22} to get it: {fix}", "");
        }
    }
    println!();
    match (&isolation, &spawn_error) {
        (Some(iso), _) => {
            println!(
                "A sandbox with the default policy works here (made in {:.2} ms). It applies:",
                spawn_us as f64 / 1000.0
            );
            let ns = &iso.namespaces;
            println!(
                "  namespaces   user pid mount ipc uts cgroup{}",
                if ns.network { " net (loopback only)" } else { " (host network)" }
            );
            println!("  root         {}", iso.root);
            match iso.landlock.abi {
                Some(abi) if iso.landlock.enforced => println!(
                    "  landlock     enforced (ABI {abi}{})",
                    if iso.landlock.scoped { ", abstract sockets and signals scoped" } else { "" }
                ),
                Some(abi) => println!("  landlock     NOT enforced (ABI {abi})"),
                None => println!("  landlock     NOT enforced (unavailable)"),
            }
            if iso.seccomp.enforced {
                println!(
                    "  seccomp      enforced ({} dangerous system calls, or their uses named in the docs, fail with EPERM)",
                    iso.seccomp.denied_syscalls
                );
            } else {
                println!("  seccomp      NOT enforced");
            }
            let whose = if iso.host_uid_own { "its own" } else { "shared" };
            println!(
                "  privileges   no_new_privs, no capabilities, uid {} (host uid {}, {whose})",
                iso.uid, iso.host_uid
            );
            let s = &iso.sessions;
            if s.own_pid_namespace {
                println!(
                    "  sessions     commands in a pid namespace of their own (init outside, spawner hidden), pid counter {}",
                    if s.pid_counter_rewound { "rewound each lease" } else { "NOT rewound" }
                );
                println!(
                    "               calls on the spawner {}, its settings {}",
                    if s.calls_on_the_spawner_refused { "refused (seccomp)" } else { "NOT refused (no seccomp)" },
                    if s.spawner_settings_checked { "checked after each command" } else { "NOT checked" }
                );
                if s.fresh_session_on_reset {
                    println!(
                        "               a reset starts a new session (pid, IPC, mount namespaces, /tmp, /dev/shm)"
                    );
                }
            }
            println!("  limits:");
            for l in &iso.limits {
                println!("    {:<11} {:>12}  by {} ({})", l.name, l.value, l.enforced_by, l.note);
            }
            for m in &iso.missing {
                println!("  missing: {m}");
            }
        }
        (None, Some(err)) => {
            println!("Making a sandbox FAILED here: {err}");
            println!("Fix the items marked -- above (user namespaces first), then run `sandpool doctor` again.");
        }
        (None, None) => unreachable!(),
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
