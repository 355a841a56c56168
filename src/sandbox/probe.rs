//! What this host supports, for `sandpool doctor` and for callers that want to decide a
//! policy before spawning.

use std::fs;

use super::cgroup;
use super::isolation::Enforcement;
use super::sys;

/// A finding about one feature.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Feature {
    /// Its name.
    pub name: &'static str,
    /// Whether sandpool can use it here.
    pub available: bool,
    /// What was found (version, path, or the reason it is missing).
    pub detail: String,
    /// What to change to get it, when missing.
    pub fix: Option<String>,
}

/// What this host supports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct HostSupport {
    /// Kernel release.
    pub kernel: String,
    /// Whether the probe ran as root.
    pub root: bool,
    /// One entry per feature.
    pub features: Vec<Feature>,
    /// How the memory limit would be enforced.
    pub memory_limit: Enforcement,
    /// How the process limit would be enforced.
    pub process_limit: Enforcement,
}

fn read(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The cgroup file system, mounted read-only (as in a Kubernetes pod or a container), that
/// keeps sandboxes from getting cgroups of their own, if that is the case here. Sandboxes
/// still work, their memory and process limits then enforced per process by rlimits.
pub fn cgroups_read_only() -> Option<std::path::PathBuf> {
    cgroup::support().read_only.clone()
}

/// Probes the host (cheap: reads `/proc` and `/sys`, makes a few harmless system calls).
pub fn probe() -> HostSupport {
    let mut features = Vec::new();
    let euid = rustix::process::geteuid().as_raw();
    let root = euid == 0;

    let max_userns = read("/proc/sys/user/max_user_namespaces").and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let unpriv_clone = read("/proc/sys/kernel/unprivileged_userns_clone").map(|s| s != "0").unwrap_or(true);
    let apparmor_restrict = read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").is_some_and(|s| s != "0");
    let userns_ok = max_userns > 0 && (root || (unpriv_clone && !apparmor_restrict));
    features.push(Feature {
        name: "user namespaces",
        available: userns_ok,
        detail: format!(
            "max_user_namespaces={max_userns}, unprivileged_userns_clone={}, apparmor restriction={}",
            if unpriv_clone { "on" } else { "off" },
            if apparmor_restrict { "on" } else { "off" }
        ),
        fix: (!userns_ok).then(|| {
            "sysctl -w user.max_user_namespaces=15000 kernel.unprivileged_userns_clone=1 \
             kernel.apparmor_restrict_unprivileged_userns=0"
                .to_string()
        }),
    });

    let pidfd = rustix::process::pidfd_open(rustix::process::getpid(), rustix::process::PidfdFlags::empty()).is_ok();
    features.push(Feature {
        name: "clone3 + pidfd",
        available: pidfd,
        detail: if pidfd {
            "pidfd_open works (clone3 with CLONE_PIDFD: Linux 5.3+)".into()
        } else {
            "pidfd_open failed".into()
        },
        fix: (!pidfd).then(|| "use Linux 5.10 or newer".to_string()),
    });

    let abi = sys::landlock_abi();
    features.push(Feature {
        name: "landlock",
        available: abi.is_some(),
        detail: match abi {
            Some(v) if v >= 6 => format!("ABI {v}: file-system rules, abstract-socket and signal scoping"),
            Some(v) => format!("ABI {v}: file-system rules (scoping needs ABI 6, Linux 6.12)"),
            None => "not enabled in this kernel".into(),
        },
        fix: abi.is_none().then(|| "boot with lsm=landlock,... (CONFIG_SECURITY_LANDLOCK=y)".to_string()),
    });

    let seccomp = rustix::thread::secure_computing_mode().is_ok();
    features.push(Feature {
        name: "seccomp",
        available: seccomp,
        detail: if seccomp { "filter mode available".into() } else { "not in this kernel".into() },
        fix: (!seccomp).then(|| "use a kernel built with CONFIG_SECCOMP_FILTER".to_string()),
    });

    let cg = cgroup::support();
    let describe = |home: &Option<cgroup::CgroupHome>, fallback: &str| match home {
        Some(h) => (h.version, format!("{} at {}", h.version, h.parent.display())),
        None => (Enforcement::Rlimit, format!("none usable: {fallback}")),
    };
    let (memory_limit, mem_detail) = describe(&cg.memory, "rlimit fallback (RLIMIT_AS, per process)");
    let (process_limit, pids_detail) = describe(&cg.pids, "rlimit fallback (RLIMIT_NPROC)");
    let (_, cpu_detail) = describe(&cg.cpu, "a CPU share (--cpu) is not enforced");
    let v2 = read("/sys/fs/cgroup/unified/cgroup.controllers").or_else(|| read("/sys/fs/cgroup/cgroup.controllers"));
    // How to get a delegated cgroup v2, said once per missing controller.
    let delegate = |controller: &str| {
        let uid = rustix::process::geteuid().as_raw();
        format!(
            "give sandpool a cgroup v2 of its own with the {controller} controller: run it as root, in a \
             systemd unit with Delegate=yes, or as `systemd-run --user --scope -p Delegate=yes sandpool ...` \
             (uid {uid}'s user@{uid}.service must delegate {controller}: systemctl edit user@{uid}.service, \
             Delegate=memory pids cpu)"
        )
    };
    let v2_why = match (&cg.read_only, cg.v2_unused.as_deref()) {
        (Some(ro), _) => format!(" ({} is mounted read-only, as in a container)", ro.display()),
        (None, Some(w)) => format!(" ({w})"),
        (None, None) => String::new(),
    };
    let delegate = |controller: &str| match &cg.read_only {
        Some(ro) => format!(
            "mount {} read-write for sandpool (a privileged container, or one with a cgroup namespace \
             and a writable cgroup mount)",
            ro.display()
        ),
        None => delegate(controller),
    };
    features.push(Feature {
        name: "cgroup memory",
        available: cg.memory.is_some(),
        detail: if cg.memory.is_some() { mem_detail } else { format!("{mem_detail}{v2_why}") },
        fix: cg.memory.is_none().then(|| delegate("memory")),
    });
    features.push(Feature {
        name: "cgroup pids",
        available: cg.pids.is_some(),
        detail: if cg.pids.is_some() { pids_detail } else { format!("{pids_detail}{v2_why}") },
        fix: cg.pids.is_none().then(|| delegate("pids")),
    });
    features.push(Feature {
        name: "cgroup cpu",
        available: cg.cpu.is_some(),
        detail: cpu_detail,
        fix: cg.cpu.is_none().then(|| delegate("cpu")),
    });
    features.push(Feature {
        name: "cgroup v2 controllers",
        available: v2.is_some(),
        detail: v2.map_or("cgroup v2 not mounted".into(), |c| if c.is_empty() { "(none)".into() } else { c }),
        fix: None,
    });

    HostSupport {
        kernel: read("/proc/sys/kernel/osrelease").unwrap_or_default(),
        root,
        features,
        memory_limit,
        process_limit,
    }
}
