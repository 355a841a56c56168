//! The zygote's entry point: a constructor in every image that links this crate, so the zygote
//! is this very binary re-executed (no helper binary to install, no hook in `main`).

use std::ffi::{CStr, c_char, c_int};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// `argv[0]` that marks a zygote.
pub(crate) const ZYGOTE_ARGV0: &CStr = c"sandpool-zygote";
/// The only environment entry a zygote gets; carries the protocol version.
pub(crate) const ZYGOTE_ENV: &CStr = c"SANDPOOL_ZYGOTE=1";

/// Set once this process has become a zygote: a fresh image that starts no thread, so
/// [`fork_single_threaded`](super::fork_single_threaded) may fork it.
static IN_ZYGOTE: AtomicBool = AtomicBool::new(false);

/// Whether this process is a zygote (single-threaded for its whole life).
pub(super) fn in_zygote() -> bool {
    IN_ZYGOTE.load(Ordering::Relaxed)
}

/// What a zygote starts with, as its clone child laid it out (see `zygote_child`).
pub(crate) struct ZygoteStart {
    /// The control socket to the host (fd 3).
    pub control: OwnedFd,
    /// `/dev/null` (fd 0; fds 1 and 2 are copies of it, left open for good).
    pub devnull: OwnedFd,
}

/// Runs before `main` in every process of an image that links sandpool; turns the process into
/// a zygote when it was started as one, otherwise returns at once.
extern "C" fn zygote_entry(argc: c_int, argv: *const *const c_char, envp: *const *const c_char) {
    if argc != 1 || argv.is_null() || envp.is_null() {
        return;
    }
    // SAFETY: the loader passes argc/argv/envp of the process: argv has argc valid C strings
    // and envp is a NULL-terminated array of valid C strings.
    let is_zygote = unsafe {
        let arg0 = *argv;
        let env0 = *envp;
        !arg0.is_null()
            && !env0.is_null()
            && (*envp.add(1)).is_null()
            && CStr::from_ptr(arg0) == ZYGOTE_ARGV0
            && CStr::from_ptr(env0) == ZYGOTE_ENV
    };
    if !is_zygote {
        return;
    }
    IN_ZYGOTE.store(true, Ordering::Relaxed);
    // SAFETY: the zygote's clone child put the control socket on fd 3 and /dev/null on fd 0
    // (see `zygote_child`); this fresh image has run no code of ours yet, so nothing else owns
    // either, and this runs once, before `main`.
    let start = unsafe { ZygoteStart { control: OwnedFd::from_raw_fd(3), devnull: OwnedFd::from_raw_fd(0) } };
    let code = std::panic::catch_unwind(move || super::super::zygote::main(start)).unwrap_or(101);
    super::exit_now(code)
}

/// The `.init_array` entry that makes every linking image able to become a zygote.
#[used]
#[unsafe(link_section = ".init_array")]
pub(crate) static ZYGOTE_ENTRY: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = zygote_entry;
