//! Sandboxes are created from a host whose other threads allocate and lock hard: the guard for
//! the rule "nothing unsafe between clone and exec".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sandpool::sandbox::{Command, Policy, Sandbox};

/// Sandboxes are created and used while other threads allocate and lock without pause. A
/// child that allocated or locked between clone and exec would deadlock on an allocator or
/// mutex lock held by another thread at the moment of the clone.
#[test]
fn creating_sandboxes_is_safe_while_other_threads_allocate_and_lock() {
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let mut workers = Vec::new();
    for t in 0..3 {
        let stop = stop.clone();
        let shared = shared.clone();
        workers.push(std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let v: Vec<Vec<u8>> = (0..64).map(|i| vec![t as u8; 16 + (i * 37 + rounds as usize) % 4096]).collect();
                let mut g = shared.lock().unwrap();
                g.extend(v);
                if g.len() > 4096 {
                    g.clear();
                }
                rounds += 1;
            }
            rounds
        }));
    }
    // A watchdog turns a hang into a failure instead of a stuck CI job.
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            for _ in 0..600 {
                if done.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!("sandbox creation hung under allocator/lock pressure");
            std::process::abort();
        })
    };
    for i in 0..40 {
        let mut sb = Sandbox::spawn(&Policy::default()).unwrap();
        let out = sb.run(Command::new("echo").arg(i.to_string())).unwrap();
        assert_eq!(out.stdout, format!("{i}\n").into_bytes());
    }
    done.store(true, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    watchdog.join().unwrap();
    for w in workers {
        assert!(w.join().unwrap() > 0, "the workers really ran");
    }
}
