//! The raw Linux layer: the only code of the crate with `unsafe`.
//!
//! The rest of the sandbox calls the kernel through [rustix]'s safe, typed wrappers. What is
//! here cannot be written that way:
//!
//! - [`raw`]: one system call that never touches `errno`, and the trampoline that starts a
//!   clone child on a stack of its own;
//! - [`zygote_child`]: [`spawn_zygote`], run in the *host*: `clone3(CLONE_VM | CLONE_VFORK)`,
//!   whose child shares the host's memory (no page table is copied, whatever the host's size)
//!   and only makes raw system calls until it execs the zygote image: no allocation, no lock,
//!   no `errno`, no panic;
//! - [`command_child`]: [`spawn_command`], run in a session's spawner (a fresh,
//!   single-threaded image) to start one command, whose child also only makes raw system
//!   calls before `execve`;
//! - [`userns_holder`]: [`userns_with_maps`], a short-lived child that holds a user namespace
//!   while its id maps are written (for idmapped mounts);
//! - [`entry`]: the constructor that turns a re-executed image into a zygote before `main`;
//! - [`reactor`] (feature `tokio`): registering a descriptor with tokio's reactor, `unsafe`
//!   since tokio 1.54;
//! - [`calls`]: the calls rustix 1.x lacks (`mount_setattr`, `signalfd` and the raw signal
//!   mask, `wait4` with its resource use, `kill(-1, ..)`, System V IPC's `*_INFO`,
//!   `sched_getattr`, `ioprio_get`, `rt_sigpending`, `fork`, Landlock's version query), each
//!   a typed wrapper that names its call.
//!
//! [rustix]: https://docs.rs/rustix
#![allow(unsafe_code)]

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("sandpool's sandbox supports x86_64 and aarch64 Linux");

mod calls;
mod command_child;
mod entry;
mod raw;
#[cfg(feature = "tokio")]
pub(crate) mod reactor;
mod userns_holder;
mod zygote_child;

pub(crate) use calls::*;
pub(crate) use command_child::{
    CommandCgroup, CommandSpec, CommandStack, HELD_CHILD_LOOK, SeccompProgram, VforkWatch, spawn_command,
};
pub(crate) use entry::{ZYGOTE_ARGV0, ZYGOTE_ENTRY, ZYGOTE_ENV, ZygoteStart};
pub(crate) use userns_holder::userns_with_maps;
pub(crate) use zygote_child::{ZygoteChildStep, ZygoteSpec, spawn_zygote};
