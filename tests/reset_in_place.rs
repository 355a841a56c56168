//! Resets in place: a lease whose commands changed nothing but files in `/tmp` and `/dev/shm`
//! keeps its session, and the zygote mounts fresh file systems there. The next lease must not
//! tell it from a fresh sandbox, the policy's binds under `/tmp` must be where they were, and
//! anything more than files (a process left, an IPC object) must still end the session. CI
//! runs this file as root and as an unprivileged uid, with Landlock as the kernel has it,
//! capped at ABI 5, and off.

mod common;

use common::*;
use sandpool::SandboxPool;
use sandpool::sandbox::Command;

fn sh_command(script: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script]);
    cmd
}

/// Every kind of change to the session directories a command can make (entries, a symlink,
/// modes, inode flags, extended attributes, forty files made and removed, which move the
/// next inode number), and nothing else.
fn files_only_script() -> String {
    let probe = probe().display();
    format!(
        "echo s > /tmp/a; mkdir -p /tmp/d/e; ln -s x /tmp/l; echo s > /dev/shm/s; chmod 700 /tmp; \
         chmod 711 /dev/shm; {probe} setflags /tmp >/dev/null; {probe} setxattr /dev/shm >/dev/null; \
         for i in $(seq 40); do touch /tmp/f$i; done; rm -f /tmp/f*"
    )
}

#[test]
fn a_lease_that_changed_only_files_is_reset_in_place_and_the_next_sees_a_fresh_sandbox() {
    let policy = || probe_policy().build().unwrap();
    let script = fingerprint_leaving_files_only();
    let fresh = fingerprint(&sandpool::sandbox::Sandbox::spawn(&policy()).unwrap().run(&sh_command(&script)).unwrap());
    assert!(fresh.contains("pid 2") && fresh.contains("next inode"), "{fresh}");
    let pool = SandboxPool::builder(policy()).max_size(1).min_idle(1).build().unwrap();
    let files_only = files_only_script();
    // The first reset after a lease that changed only files makes a session with file
    // systems ready for its resets in place; from the second on, they are in place. The
    // fingerprint's own lease writes files (and removes them) too.
    for round in 0..4 {
        let first = {
            let mut lease = pool.acquire().unwrap();
            let out = lease.run(&sh_command(&files_only)).unwrap();
            assert!(out.success(), "round {round}: {out:?}");
            let left = lease.run(&sh_command("ls -A /tmp /dev/shm | grep -c .")).unwrap();
            assert_ne!(stdout(&left), "0", "round {round}: the files are there within the lease");
            lease.pid()
        };
        let mut lease = pool.acquire().unwrap();
        assert_eq!(lease.pid(), first, "round {round}: the same sandbox, reused");
        let seen = fingerprint(&lease.run(&sh_command(&script)).unwrap());
        assert_eq!(seen, fresh, "round {round}: the next lease sees its sandbox as a fresh one");
    }
    // Eight resets so far, the last one maybe still going: one more lease waits for it.
    drop(pool.acquire().unwrap());
    let s = pool.stats();
    assert_eq!((s.resets, s.resets_in_place, s.reset_failures), (8, 7, 0), "{s:?}");
    assert_eq!(s.pool.created, 1, "one sandbox served them all: {s:?}");

    // Files and a process left running: more than files, so the session ends.
    {
        let mut lease = pool.acquire().unwrap();
        let out = lease.run(&sh_command("echo x > /tmp/y; sleep 1000 >/dev/null 2>&1 &")).unwrap();
        assert!(out.success(), "{out:?}");
    }
    let mut lease = pool.acquire().unwrap();
    let s = pool.stats();
    assert_eq!((s.resets, s.resets_in_place), (9, 7), "the session with a process left ended: {s:?}");
    assert_eq!(fingerprint(&lease.run(&sh_command(&script)).unwrap()), fresh, "after a process was left");
}

/// The policy's binds below `/tmp` (read-only and read-write) are attached again on the new
/// `/tmp`, as a new session attaches them, and a reset in place leaves the read-write bind's
/// content to the host.
#[test]
fn binds_under_tmp_are_where_they_were_after_a_reset_in_place() {
    let rw = TempDir::new("rw-in-place");
    let ro = TempDir::new("ro-in-place");
    assert!(rw.path().starts_with("/tmp") && ro.path().starts_with("/tmp"), "this test needs the binds under /tmp");
    std::fs::write(ro.path().join("kept"), "host data").unwrap();
    set_mode(&ro.path().join("kept"), 0o644);
    let (rw_dir, ro_dir) = (rw.path().display().to_string(), ro.path().display().to_string());
    let policy = policy_builder().rw(rw.path()).ro(ro.path()).build().unwrap();
    let pool = SandboxPool::builder(policy).max_size(1).min_idle(1).build().unwrap();
    let lease_writing = |n: u32| {
        let mut lease = pool.acquire().unwrap();
        let script = format!("echo {n} > {rw_dir}/from-lease-{n} && echo {n} > /tmp/own-{n} && cat {ro_dir}/kept");
        let out = lease.run(&sh_command(&script)).unwrap();
        assert_eq!(stdout(&out), "host data", "lease {n}: {out:?}");
        lease.pid()
    };
    // The first reset makes a session ready for resets in place; the next two are.
    let pids: Vec<i32> = (0..3).map(lease_writing).collect();
    let mut lease = pool.acquire().unwrap();
    assert!(pids.iter().all(|p| *p == lease.pid()), "one sandbox: {pids:?}");
    let check = format!(
        "ls -A /tmp | sort; cat {ro_dir}/kept; echo; ls {rw_dir}; touch {ro_dir}/new 2>/dev/null || echo read-only; \
         echo more > {rw_dir}/after && echo writable"
    );
    let out = lease.run(&sh_command(&check)).unwrap();
    let mut expected_tmp = [rw.path(), ro.path()].map(|p| p.file_name().unwrap().to_str().unwrap().to_string());
    expected_tmp.sort();
    let expected = format!(
        "{}\n{}\nhost data\nfrom-lease-0\nfrom-lease-1\nfrom-lease-2\nread-only\nwritable",
        expected_tmp[0], expected_tmp[1]
    );
    assert_eq!(stdout(&out), expected, "{out:?}");
    drop(lease);
    let s = pool.stats();
    assert!(s.resets_in_place >= 2, "the last two resets were in place: {s:?}");
    assert_eq!(std::fs::read_to_string(rw.path().join("after")).unwrap(), "more\n");
    assert!(!ro.path().join("new").exists());
}

/// A command can move a directory of the session's own on the way to a nested bind
/// (`/tmp/outer` for a bind at `/tmp/outer/inner`) and leave a symlink in its place. A reset in
/// place that found the bind through that path would attach what the symlink leads to (here
/// the lease's own files) where the next lease expects the bind; it must attach the bind.
#[test]
fn a_reset_in_place_attaches_the_binds_not_what_a_lease_left_on_the_way_to_them() {
    let outer = TempDir::new("nested-in-place");
    assert!(outer.path().starts_with("/tmp"), "this test needs the bind under /tmp");
    let inner = outer.path().join("inner");
    std::fs::create_dir(&inner).unwrap();
    std::fs::write(inner.join("host-file"), "host").unwrap();
    set_mode(&inner, 0o755);
    set_mode(&inner.join("host-file"), 0o644);
    let pool =
        SandboxPool::builder(policy_builder().ro(&inner).build().unwrap()).max_size(1).min_idle(1).build().unwrap();
    let outer_dir = outer.path().display().to_string();
    let inner_dir = inner.display().to_string();
    let run = |script: &str| {
        let mut lease = pool.acquire().unwrap();
        let out = lease.run(&sh_command(script)).unwrap();
        assert!(out.success(), "{script}: {out:?}");
        stdout(&out)
    };
    // The first reset makes a session ready for resets in place.
    assert_eq!(run(&format!("ls {inner_dir}; echo x > /tmp/a")), "host-file");
    // The probe works: within the lease, the symlink leads where the bind was.
    let planted = run(&format!(
        "mv {outer_dir} /tmp/moved && mkdir -p /tmp/decoy/inner && echo planted > /tmp/decoy/inner/secret && \
         ln -s /tmp/decoy {outer_dir} && ls {inner_dir}"
    ));
    assert_eq!(planted, "secret", "the lease replaced the way to the bind");
    let before = pool.stats().resets_in_place;
    assert_eq!(run(&format!("ls {inner_dir}; ls -A /tmp | grep -c -e moved -e decoy || true")), "host-file\n0");
    let s = pool.stats();
    assert_eq!(s.resets_in_place, before + 1, "that reset was in place: {s:?}");
}

/// With a warm runtime, a lease whose commands were exec'd and changed only files leaves the
/// template as it started: the session is reset in place, and the next lease's command, served
/// by the template (whose Landlock rules came with the session's, the new file systems' roots
/// among them), writes to the new `/tmp` and finds nothing of the last lease there.
#[test]
fn a_session_with_a_template_is_reset_in_place_and_its_served_commands_write_the_new_tmp() {
    if !std::path::Path::new("/usr/bin/python3").exists() {
        skip("a_session_with_a_template_is_reset_in_place_and_its_served_commands_write_the_new_tmp", "no python3");
        return;
    }
    let policy = policy_builder().runtime(sandpool::sandbox::Runtime::python3().preload(["json"])).build().unwrap();
    let pool = SandboxPool::builder(policy).max_size(1).min_idle(1).build().unwrap();
    for n in 0..3 {
        let mut lease = pool.acquire().unwrap();
        let status = lease.runtime_status();
        assert!(matches!(status, Some(sandpool::sandbox::RuntimeStatus::Ready)), "lease {n}: {status:?}");
        let out = lease.run(&sh_command(&format!("echo {n} > /tmp/from-lease-{n}"))).unwrap();
        assert!(out.success(), "lease {n}: {out:?}");
    }
    let mut lease = pool.acquire().unwrap();
    let s = pool.stats();
    assert!(s.resets_in_place >= 2, "the second and third resets were in place: {s:?}");
    let mut served = Command::new("python3");
    // A served command's parent is the template (pid 2); an exec'd one's, the spawner.
    served.args(["-c", "import os; open('/tmp/b', 'w').write('y'); print(sorted(os.listdir('/tmp')), os.getppid())"]);
    let out = lease.run(&served).unwrap();
    assert_eq!(stdout(&out), "['b'] 2", "{out:?}");
}
