#!/usr/bin/env bash
# Runs sandpool on real hosts' kernels: Debian's 6.1 (Landlock ABI 2) and 6.12 (ABI 6) in
# QEMU VMs with a pure cgroup v2 hierarchy (../shared/tools/run-in-vm.sh), as root in a
# systemd-like session scope and as uid 4242 in the user@4242.service cgroup delegated to it.
# In each: `doctor` must show memory and pids enforced by cgroup v2, the smoke checks of the
# command must hold (an allocation past --memory is OOM-killed and reported, also where
# clone3 answers ENOSYS; --pids 8 stops the ninth process), and the sandbox and pool suites
# must pass.
#
#   scripts/vm-tests.sh [KERNEL...]      (default: 6.1 6.12; VM_TESTS_TIMEOUT bounds each VM)
#
# The VMs emulate (no KVM for a stock kernel here), so the suites run as release builds and
# only those that exercise what differs on such hosts: the sandbox's layers and tenant
# separation (old Landlock, cgroup v2), terminals, teardown (no cgroup left), the pool, and
# the async API (its storm cuts at points scaled to the machine's speed).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)
vm="${RUN_IN_VM:-}"
for candidate in "$root/../shared/tools/run-in-vm.sh" /work/shared/tools/run-in-vm.sh; do
  [ -n "$vm" ] || { [ -x "$candidate" ] && vm="$candidate"; } || true
done
[ -n "$vm" ] || { echo "vm-tests: run-in-vm.sh not found (set RUN_IN_VM)" >&2; exit 2; }
# Debian 12 has 6.12 in bookworm-backports.
if [ "$(id -u)" = 0 ] && ! apt-cache pkgnames linux-image-6.12 2>/dev/null | grep -q . &&
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ]; then
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    > /etc/apt/sources.list.d/sandpool-backports.sources
  apt-get update -qq || true
fi
kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(6.1 6.12)
suites=(sandbox_security sandbox_tenants sandbox_host_boundary reset_in_place sandbox_children sandbox_terminal sandbox_cgroups sandbox_teardown pool_sandbox pool_sandbox_faults async_api runtime)

out="$root/target/vmtests"
rm -rf "$out" && mkdir -p "$out"
cargo build --release --bin sandpool
install -m 755 target/release/sandpool "$out/sandpool"
cc -O2 -static -o "$out/probe" tests/probe/probe.c
for t in "${suites[@]}"; do
  # The async suite needs the tokio feature (commands born in their cgroup, under a reactor).
  features=()
  [ "$t" = async_api ] && features=(--features tokio)
  bin="$(scripts/test-binary.sh "$t" --release "${features[@]}")"
  install -m 755 "$bin" "$out/$t"
done
chmod 755 "$out"

# What runs inside: as root or as 4242, in whichever cgroup the VM put it.
cat > "$out/inside.sh" <<EOF
#!/bin/sh
set -u
d="$out"
suites="${suites[*]}"
EOF
cat >> "$out/inside.sh" <<'EOF'
cd /tmp
failed=0
fail() { echo "VM-TEST FAILED: $*"; failed=1; }
echo "== kernel $(uname -r), uid $(id -u), cgroup $(cat /proc/self/cgroup)"
"$d/sandpool" doctor || fail "doctor"
doctor="$("$d/sandpool" doctor --json)"
echo "$doctor" | grep -q '"memory_limit":"cgroup_v2"' || fail "memory is not enforced by cgroup v2"
echo "$doctor" | grep -q '"process_limit":"cgroup_v2"' || fail "processes are not enforced by cgroup v2"

echo "== smoke: --memory 64 with a 200 MiB allocation"
oom="$("$d/sandpool" run --json --memory 64 -- dd if=/dev/zero of=/dev/null bs=200M count=1)"
echo "$oom" | grep -q '"oom_killed":true' || fail "no OOM kill reported: $oom"
fine="$("$d/sandpool" run --json --memory 64 -- dd if=/dev/zero of=/dev/null bs=8M count=1)"
echo "$fine" | grep -q '"exit_code":0' || fail "a small allocation failed under --memory 64: $fine"

echo "== smoke: --pids 8 stops the ninth process"
eight='i=0; while [ $i -lt 7 ]; do sleep 2 & i=$((i+1)); done; echo started'
nine='i=0; while [ $i -lt 8 ]; do sleep 2 & i=$((i+1)); done; echo started'
[ "$("$d/sandpool" run --pids 8 -- sh -c "$eight")" = started ] || fail "eight processes under --pids 8"
if "$d/sandpool" run --pids 8 -- sh -c "$nine" 2>/dev/null | grep -q started; then fail "a ninth process under --pids 8"; fi

echo "== smoke: clone3 refused as by Docker's profile with CAP_SYS_ADMIN (clone, then the cgroup joined after)"
sa="$("$d/probe" docker-sys-admin "$d/sandpool" run --json --memory 64 -- dd if=/dev/zero of=/dev/null bs=200M count=1)"
echo "$sa" | grep -q '"oom_killed":true' || fail "no OOM kill reported where clone3 answers ENOSYS: $sa"

echo "== smoke: no sandbox cgroup left"
left="$(find /sys/fs/cgroup -name 'sb-*' -type d 2>/dev/null)"
[ -z "$left" ] || fail "sandbox cgroups left: $left"

# Before the suites, whose positive controls load modules outside: no command makes the
# kernel load one (socket families and protocols, netlink protocols, an AF_ALG cipher, line
# disciplines); outside, one of those sockets loads its module, which shows the probe could.
echo "== modules: none loaded by a command"
if [ -r /proc/modules ]; then
  cut -d' ' -f1 /proc/modules | sort > /tmp/modules-before
  "$d/sandpool" run --ro "$d" -- "$d/probe" autoload >/dev/null || fail "the autoload probe did not run in a sandbox"
  cut -d' ' -f1 /proc/modules | sort > /tmp/modules-inside
  loaded="$(comm -13 /tmp/modules-before /tmp/modules-inside | tr '\n' ' ')"
  [ -z "$loaded" ] || fail "a command loaded modules: $loaded"
  # One socket outside (SCTP, a module on Debian's kernels), not the whole probe: outside,
  # each request runs modprobe, which takes long under emulation.
  "$d/probe" socket 2 1 132 >/dev/null
  cut -d' ' -f1 /proc/modules | sort > /tmp/modules-outside
  outside="$(comm -13 /tmp/modules-inside /tmp/modules-outside | tr '\n' ' ')"
  echo "modules loaded by one SCTP socket outside: $outside"
  [ -n "$outside" ] || fail "an SCTP socket loads no module outside either: the check proves nothing"
else
  echo "SKIP modules: no /proc/modules"
fi

for t in $suites; do
  echo "== $t"
  "$d/$t" --test-threads=2 > "/tmp/$t.log" 2>&1 || fail "$t"
  grep -E 'test result|FAILED|panicked|SKIP' "/tmp/$t.log"
  grep -q 'test result: ok' "/tmp/$t.log" || tail -n 40 "/tmp/$t.log"
done
[ $failed = 0 ] && echo "VM-TESTS PASSED" || echo "VM-TESTS FAILED"
exit $failed
EOF
chmod 755 "$out/inside.sh"

# Runs as root before the suites: sets a CPU quota on an empty cgroup, so the kernel's
# CFS-bandwidth static key is on from the start and no test's `cpu.max` flips it. Flipping a
# static key patches kernel code while other vCPUs run it; under QEMU's emulation that once
# panicked the guest in the scheduler (Debian 6.12.118, pick_next_task_fair, its RIP inside
# a just-patched jump). A quota is what any host with one limited container already has.
cat > "$out/as-root.sh" <<'EOF'
#!/bin/sh
pin=/sys/fs/cgroup/ci-cpu-quota-held
mkdir -p "$pin" && echo "10000000 100000" > "$pin/cpu.max" ||
  echo "vm-tests: could not hold a CPU quota on $pin (the static key may flip during the tests)"
exec "$@"
EOF
chmod 755 "$out/as-root.sh"

# One VM run; a guest kernel panic (not an outcome of any test: the VM dies with no result)
# prints the kernel's own report and is retried once, loudly. A second panic fails.
vm_run() {
  local attempt console rc
  for attempt in 1 2; do
    console="$out/console-$k-$attempt-$RANDOM.log"
    rc=0
    "$vm" --kernel "$k" --timeout "${VM_TESTS_TIMEOUT:-1500}" --dmesg "$console" "$@" || rc=$?
    [ $rc = 0 ] && return 0
    if [ $rc = 125 ] && grep -q 'Kernel panic - not syncing' "$console" 2>/dev/null; then
      echo "=== THE GUEST KERNEL PANICKED (attempt $attempt of 2); its report:"
      at=$(grep -n -m1 'Kernel panic - not syncing' "$console" | cut -d: -f1)
      sed -n "$((at > 100 ? at - 100 : 1)),${at}p" "$console"
      continue
    fi
    return 1
  done
  return 1
}

status=0
for k in "${kernels[@]}"; do
  echo "=== kernel $k, root in a session scope"
  vm_run --cgroup /user.slice/user-0.slice/session-1.scope \
    -- sh "$out/as-root.sh" sh "$out/inside.sh" || status=1
  echo "=== kernel $k, uid 4242 in its delegated user@4242.service"
  vm_run --cgroup /user.slice/user-4242.slice/user@4242.service --cgroup-owner 4242 \
    -- sh "$out/as-root.sh" setpriv --reuid=4242 --regid=4242 --clear-groups sh "$out/inside.sh" || status=1
done
exit $status
