//! The sandbox's own network namespace: loopback up and nothing else routed (through
//! `rtnetlink(7)`), and the namespace as session state: what a lease can leave there, and how
//! the spawner sees it.
//!
//! Once a session's processes are gone, a namespace that saw no packet is as fresh as a new
//! one: every socket that outlives its process (a `TIME_WAIT`, an orphan, a fragment queue)
//! comes from traffic, and so does every per-namespace counter a later lease could read
//! (`/proc/net/dev`, `/proc/net/snmp`, `netstat`, or the same through netlink). The one
//! counter a failed send moves without a packet, `OutNoRoutes`, stays put because the zygote
//! routes everything but loopback to `unreachable` ([`add_unreachable_default_route`]). So the
//! verdict after each command compares the interfaces' counters (one `pread`), and the reset
//! compares everything (the protocol counters cost 16–35 µs to read); what differs cannot be
//! undone by any call, so the next session gets a new namespace, set up as the first.
//!
//! Tables a command can fill without a packet and without a capability are state too. Of
//! those looked at: IPv6 flow labels (`IPV6_FLOWLABEL_MGR`) outlive their socket, so both
//! the verdict and the reset compare `/proc/net/ip6_flowlabel`; multicast and anycast
//! memberships and `SO_REUSEPORT` groups go with their sockets (and a join sends a report
//! through `lo`, which its counters show); a TCP or UDP socket kept alive by a descriptor
//! in flight shows in `sockstat`; routes, addresses, neighbours, rules, XFRM, netfilter and
//! the namespace's sysctls need `CAP_NET_ADMIN`, which no command has; the TCP metrics
//! cache and conntrack fill only with traffic. Not compared: unix sockets (the sandbox's
//! own control sockets live in this namespace too, so `/proc/net/unix` is never empty); a
//! bound unix socket kept alive only by a descriptor in flight in a cycle keeps its name
//! until the kernel's garbage collector frees it.

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::OFlags;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use super::open;

/// The files of the namespace the spawner holds open (`/proc/net` is the reader's namespace,
/// fixed at open) and their contents in the fresh namespace.
pub(crate) struct NetworkWatch {
    /// `/proc/net/dev`: every interface's packet and byte counters.
    dev: OwnedFd,
    /// `/proc/net/sockstat` and `sockstat6`: the sockets in use.
    sockstat: Vec<OwnedFd>,
    /// `/proc/net/snmp`, `snmp6` and `netstat`: the protocols' counters.
    counters: Vec<OwnedFd>,
    /// `/proc/net/ip6_flowlabel`: the namespace's IPv6 flow labels (`None` without IPv6).
    /// A command makes one with a `setsockopt` and no packet, and it lingers after its
    /// socket closes (up to 150 s), for any later lease to see and collide with.
    flow_labels: Option<OwnedFd>,
    fresh_dev: Vec<u8>,
    fresh_counters: Vec<Vec<u8>>,
    fresh_flow_labels: Vec<u8>,
}

/// Largest `/proc/net` file read; a longer one counts as changed.
const MAX_FILE: usize = 64 * 1024;

/// The whole content of a seq file held open, read from its start.
fn contents(file: &OwnedFd, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    buf.resize(MAX_FILE, 0);
    let mut len = 0;
    loop {
        let n = rustix::io::pread(file.as_fd(), &mut buf[len..], len as u64)?;
        len += n;
        if n == 0 || len == buf.len() {
            break;
        }
    }
    buf.truncate(len);
    Ok(())
}

/// Whether one `pread` of `file` into `buf` (which must hold more than it) gives `fresh`.
fn reads_as(file: &OwnedFd, fresh: &[u8], buf: &mut [u8]) -> bool {
    match rustix::io::pread(file.as_fd(), &mut *buf, 0) {
        Ok(n) if n < buf.len() => buf[..n] == *fresh,
        _ => false,
    }
}

fn open_optional(path: &std::ffi::CStr) -> io::Result<Option<OwnedFd>> {
    match open(path, OFlags::RDONLY) {
        Ok(f) => Ok(Some(f)),
        // No IPv6 in this kernel.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

impl NetworkWatch {
    /// Opens the files of the caller's network namespace and records them as fresh: what the
    /// zygote keeps, to check at each reset.
    pub(crate) fn open() -> io::Result<NetworkWatch> {
        let mut watch = NetworkWatch::open_interfaces()?;
        watch.sockstat.push(open(c"/proc/net/sockstat", OFlags::RDONLY)?);
        watch.sockstat.extend(open_optional(c"/proc/net/sockstat6")?);
        watch.counters.push(open(c"/proc/net/snmp", OFlags::RDONLY)?);
        watch.counters.extend(open_optional(c"/proc/net/snmp6")?);
        watch.counters.extend(open_optional(c"/proc/net/netstat")?);
        for file in &watch.counters {
            let mut buf = Vec::new();
            contents(file, &mut buf)?;
            watch.fresh_counters.push(buf);
        }
        Ok(watch)
    }

    /// Only the interfaces' counters, for [`NetworkWatch::quiet`]: what each session's
    /// spawner needs for its verdict.
    pub(crate) fn open_interfaces() -> io::Result<NetworkWatch> {
        let dev = open(c"/proc/net/dev", OFlags::RDONLY)?;
        let mut fresh_dev = Vec::new();
        contents(&dev, &mut fresh_dev)?;
        let flow_labels = open_optional(c"/proc/net/ip6_flowlabel")?;
        let mut fresh_flow_labels = Vec::new();
        if let Some(file) = &flow_labels {
            contents(file, &mut fresh_flow_labels)?;
        }
        Ok(NetworkWatch {
            dev,
            sockstat: Vec::new(),
            counters: Vec::new(),
            flow_labels,
            fresh_dev,
            fresh_counters: Vec::new(),
            fresh_flow_labels,
        })
    }

    /// The interfaces' part of this watch ([`NetworkWatch::quiet`]'s), for a spawner forked
    /// into this namespace: the same files (duplicated descriptors; every read is a `pread`)
    /// and the namespace's state when it was new, where a session that may use it starts.
    /// Opening them anew in a fresh `/proc` costs a spawner more than the rest of its state.
    pub(crate) fn interfaces(&self) -> io::Result<NetworkWatch> {
        let dup = |fd: &OwnedFd| rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(io::Error::from);
        Ok(NetworkWatch {
            dev: dup(&self.dev)?,
            sockstat: Vec::new(),
            counters: Vec::new(),
            flow_labels: self.flow_labels.as_ref().map(dup).transpose()?,
            fresh_dev: self.fresh_dev.clone(),
            fresh_counters: Vec::new(),
            fresh_flow_labels: self.fresh_flow_labels.clone(),
        })
    }

    /// Whether the namespace's IPv6 flow labels are as they were (none). An error counts as
    /// a change.
    fn flow_labels_as_fresh(&self) -> bool {
        self.flow_labels.as_ref().is_none_or(|file| reads_as(file, &self.fresh_flow_labels, &mut [0u8; 256]))
    }

    /// Whether no packet went through any interface since the namespace was fresh, and no
    /// flow label was made: the verdict's part (two `pread`s). An error counts as a change.
    pub(crate) fn quiet(&self) -> bool {
        reads_as(&self.dev, &self.fresh_dev, &mut [0u8; 4096]) && self.flow_labels_as_fresh()
    }

    /// Whether the namespace is still as fresh, once the session's processes are gone: no
    /// socket left, no counter moved. The reset's part (on a watch made by
    /// [`NetworkWatch::open`]); says what differs.
    pub(crate) fn as_fresh(&self) -> Result<(), String> {
        let state = sockets_left(&self.sockstat).map_err(|e| format!("cannot read its sockets: {e}"))?;
        if !state.is_clean() {
            return Err(state.to_string());
        }
        let mut buf = Vec::new();
        contents(&self.dev, &mut buf).map_err(|e| format!("cannot read its interfaces: {e}"))?;
        if buf != self.fresh_dev {
            return Err("packets went through its interfaces".into());
        }
        if !self.flow_labels_as_fresh() {
            return Err("an IPv6 flow label is left".into());
        }
        for (file, fresh) in self.counters.iter().zip(&self.fresh_counters) {
            contents(file, &mut buf).map_err(|e| format!("cannot read its counters: {e}"))?;
            if buf != *fresh {
                return Err("its protocol counters moved".into());
            }
        }
        Ok(())
    }
}

/// What the namespace still holds once its processes are gone, from `/proc/net/sockstat` and
/// `sockstat6`, whose counts are per namespace: sockets in use (orphans included), TIME_WAIT
/// sockets, and IP fragment queues.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct SocketsLeft {
    sockets: u64,
    time_wait: u64,
    fragments: u64,
}

impl SocketsLeft {
    fn is_clean(&self) -> bool {
        *self == SocketsLeft::default()
    }
}

impl std::fmt::Display for SocketsLeft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} sockets, {} in TIME_WAIT, {} fragment queues", self.sockets, self.time_wait, self.fragments)
    }
}

/// Reads [`SocketsLeft`] from `/proc/net/sockstat` and `sockstat6` held open: one `pread`
/// each.
fn sockets_left(files: &[OwnedFd]) -> io::Result<SocketsLeft> {
    let mut state = SocketsLeft::default();
    let mut buf = [0u8; 1024];
    for file in files {
        let n = rustix::io::pread(file.as_fd(), &mut buf, 0)?;
        let text = std::str::from_utf8(&buf[..n]).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        parse_sockstat(text, &mut state);
    }
    Ok(state)
}

/// `TCP`, `UDP`, `UDPLITE` and `RAW` (and their v6 lines) count the sockets of this
/// namespace; `tw` its TIME_WAIT sockets (v4 and v6 share one count); `FRAG` its reassembly
/// queues. `sockets: used`, `orphan`, `alloc` and `mem` are not per namespace.
fn parse_sockstat(text: &str, state: &mut SocketsLeft) {
    for line in text.lines() {
        let Some((proto, fields)) = line.split_once(':') else { continue };
        let mut words = fields.split_whitespace();
        while let (Some(key), Some(value)) = (words.next(), words.next()) {
            let n: u64 = value.parse().unwrap_or(u64::MAX);
            match (proto, key) {
                ("sockets", _) => {}
                ("FRAG" | "FRAG6", "inuse") => state.fragments += n,
                (_, "inuse") => state.sockets += n,
                (_, "tw") => state.time_wait += n,
                _ => {}
            }
        }
    }
}

/// Lowers the maximum (and, if above it, the default) of `net.ipv4.NAME` (`tcp_rmem` or
/// `tcp_wmem`: per network namespace) to `max`; a kernel value already below stays.
pub(crate) fn cap_socket_buffers(name: &str, max: u64) -> io::Result<()> {
    let path = format!("/proc/sys/net/ipv4/{name}");
    let text = fs::read_to_string(&path)?;
    let v: Vec<u64> = text.split_whitespace().filter_map(|n| n.parse().ok()).collect();
    let [low, default, high] = v[..] else { return Err(io::Error::from_raw_os_error(libc::EINVAL)) };
    let high = high.min(max).max(low);
    fs::write(&path, format!("{low} {} {high}", default.min(high)))
}

// --- rtnetlink(7): loopback up, everything else unreachable.

/// `struct nlmsghdr`'s size, and where its type field sits.
const NLMSG_HEADER: usize = 16;

/// Sends one `rtnetlink` request (`NLM_F_REQUEST | NLM_F_ACK` and `extra_flags`) whose body
/// is `body`, and waits for the kernel's acknowledgement: an `NLMSG_ERROR` message carrying 0,
/// or the error.
fn netlink_request(kind: u16, extra_flags: u16, body: &[u8]) -> io::Result<()> {
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_ACK: u16 = 0x4;
    const NLMSG_ERROR: u16 = 0x2;
    let sock = rustix::net::socket_with(AddressFamily::NETLINK, SocketType::RAW, SocketFlags::CLOEXEC, None)?; // None: NETLINK_ROUTE
    let mut message = Vec::with_capacity(NLMSG_HEADER + body.len());
    message.extend_from_slice(&((NLMSG_HEADER + body.len()) as u32).to_ne_bytes());
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | extra_flags).to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
    message.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    message.extend_from_slice(body);
    rustix::net::send(&sock, &message, rustix::net::SendFlags::empty())?;
    let mut answer = [0u8; 512];
    let n = rustix::io::read(&sock, &mut answer)?;
    if n < NLMSG_HEADER + 4 || u16::from_ne_bytes([answer[4], answer[5]]) != NLMSG_ERROR {
        return Err(io::Error::from_raw_os_error(libc::EPROTO));
    }
    let error = i32::from_ne_bytes(answer[NLMSG_HEADER..NLMSG_HEADER + 4].try_into().expect("four bytes"));
    if error != 0 { Err(io::Error::from_raw_os_error(-error)) } else { Ok(()) }
}

/// Brings the loopback interface up, as `ip link set lo up` does: `RTM_NEWLINK` with `IFF_UP`
/// for interface 1, which is `lo` in every new network namespace.
pub(crate) fn loopback_up() -> io::Result<()> {
    const RTM_NEWLINK: u16 = 16;
    const LOOPBACK_INDEX: i32 = 1;
    let up = libc::IFF_UP as u32;
    // struct ifinfomsg: family, padding, type (u16), index (i32), flags, change.
    let mut body = Vec::with_capacity(16);
    body.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]);
    body.extend_from_slice(&0u16.to_ne_bytes());
    body.extend_from_slice(&LOOPBACK_INDEX.to_ne_bytes());
    body.extend_from_slice(&up.to_ne_bytes());
    body.extend_from_slice(&up.to_ne_bytes());
    netlink_request(RTM_NEWLINK, 0, &body)
}

/// Adds an `unreachable` default route for `family` (`AF_INET` or `AF_INET6`), as `ip route
/// add unreachable default` does (`RTM_NEWROUTE`). A send to an address no route covers then
/// fails with `EHOSTUNREACH` and leaves nothing behind, where without a route it fails with
/// `ENETUNREACH` and counts itself in the namespace's `OutNoRoutes`.
pub(crate) fn add_unreachable_default_route(family: AddressFamily) -> io::Result<()> {
    const RTM_NEWROUTE: u16 = 24;
    const NLM_F_EXCL: u16 = 0x200;
    const NLM_F_CREATE: u16 = 0x400;
    const RT_TABLE_MAIN: u8 = 254;
    const RTPROT_BOOT: u8 = 3;
    const RT_SCOPE_UNIVERSE: u8 = 0;
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags (u32).
    let mut body =
        vec![family.as_raw() as u8, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, libc::RTN_UNREACHABLE];
    body.extend_from_slice(&0u32.to_ne_bytes());
    netlink_request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &body)
}

#[cfg(test)]
mod tests {
    use super::{SocketsLeft, parse_sockstat};

    #[test]
    fn sockstat_counts_sockets_time_wait_and_fragments_of_the_namespace() {
        let mut state = SocketsLeft::default();
        parse_sockstat(
            "sockets: used 8\nTCP: inuse 1 orphan 0 tw 2 alloc 5 mem 272\nUDP: inuse 0 mem 0\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 3 memory 0\n",
            &mut state,
        );
        assert_eq!(state, SocketsLeft { sockets: 1, time_wait: 2, fragments: 3 });
        let mut clean = SocketsLeft::default();
        parse_sockstat(
            "sockets: used 12\nTCP: inuse 0 orphan 4 tw 0 alloc 9 mem 1\nFRAG: inuse 0 memory 0\n",
            &mut clean,
        );
        assert!(clean.is_clean(), "global counts (used, orphan, alloc, mem) are not the namespace's: {clean:?}");
        let mut v6 = SocketsLeft::default();
        parse_sockstat(
            "TCP6: inuse 2\nUDP6: inuse 1\nUDPLITE6: inuse 0\nRAW6: inuse 0\nFRAG6: inuse 0 memory 0\n",
            &mut v6,
        );
        assert_eq!(v6.sockets, 3);
    }
}
