//! What confines every command of a sandbox beyond its namespaces: the Landlock ruleset
//! ([`landlock`]) and the seccomp filters ([`seccomp`]).

pub(crate) mod landlock;
pub(crate) mod seccomp;
