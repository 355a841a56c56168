use sandpool::sandbox::{Command, Policy, Requirement, Sandbox};
use std::time::Instant;
fn p50(mut v: Vec<u128>) -> u128 {
    v.sort();
    v[v.len() / 2]
}
fn main() {
    let n = 400;
    let bare: Vec<u128> = (0..n)
        .map(|_| {
            let t = Instant::now();
            std::process::Command::new("/bin/true").output().unwrap();
            t.elapsed().as_micros()
        })
        .collect();
    println!("bare p50 {}", p50(bare));
    for (name, pol) in [
        ("default", Policy::default()),
        ("no-cgroup", Policy::builder().cgroups(Requirement::Off).build().unwrap()),
        ("no-landlock", Policy::builder().landlock(Requirement::Off).build().unwrap()),
        ("no-seccomp", Policy::builder().seccomp(Requirement::Off).build().unwrap()),
        (
            "none",
            Policy::builder()
                .seccomp(Requirement::Off)
                .landlock(Requirement::Off)
                .cgroups(Requirement::Off)
                .build()
                .unwrap(),
        ),
    ] {
        let mut sb = Sandbox::spawn(&pol).unwrap();
        let cmd = Command::new("/bin/true");
        let v: Vec<u128> = (0..n)
            .map(|_| {
                let t = Instant::now();
                sb.run(&cmd).unwrap();
                t.elapsed().as_micros()
            })
            .collect();
        println!("{name} p50 {}", p50(v));
    }
    let bare: Vec<u128> = (0..n)
        .map(|_| {
            let t = Instant::now();
            std::process::Command::new("/bin/true").output().unwrap();
            t.elapsed().as_micros()
        })
        .collect();
    println!("bare p50 {}", p50(bare));
    let v: Vec<u128> = (0..100)
        .map(|_| {
            let t = Instant::now();
            drop(Sandbox::spawn(&Policy::default()).unwrap());
            t.elapsed().as_micros()
        })
        .collect();
    println!("cold spawn+drop p50 {}", p50(v));
    let v: Vec<u128> = (0..100)
        .map(|_| {
            let t = Instant::now();
            let s = Sandbox::spawn(&Policy::default()).unwrap();
            let e = t.elapsed().as_micros();
            drop(s);
            e
        })
        .collect();
    println!("cold spawn only p50 {}", p50(v));
}
