#!/usr/bin/env bash
# Runs every test of sandpool. As root, it then runs the sandbox and pool tests a second time
# as an unprivileged uid (setpriv), since a sandbox must hold for both.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every skip is said (a test prints `SKIP <test>: <why>`) and, at the end, counted.
log="$(mktemp)"
exec > >(tee "$log") 2>&1
dir=""
finish() {
  status=$?
  echo "== skipped: $(grep -c '^SKIP ' "$log" || true)"
  grep '^SKIP ' "$log" | sort | uniq -c || true
  rm -rf "$log" ${dir:+"$dir"}
  exit $status
}
trap finish EXIT

# The optional features too: the tokio API (`async_api`) and the metrics.
features=tokio,metrics
cargo test --all-targets --features "$features"
cargo test --doc --features "$features"

# The sandbox suites again as on older kernels: Landlock capped at ABI 5 (no scoping, as
# before 6.12), and without Landlock at all. Separation must not rest on Landlock alone.
for landlock in 5 off; do
  echo "== sandbox suites with SANDPOOL_TEST_LANDLOCK=$landlock"
  SANDPOOL_TEST_LANDLOCK="$landlock" cargo test --test sandbox_security --test sandbox_tenants --test sandbox_host_boundary --test reset_in_place
done

if [ "$(id -u)" = 0 ]; then
  uid="${SANDPOOL_TEST_UID:-4242}"
  dir="$(mktemp -d)"
  chmod 755 "$dir"
  for t in sandbox_security sandbox_tenants sandbox_host_boundary reset_in_place sandbox_children sandbox_terminal sandbox_cgroups sandbox_teardown sandbox_fork_safety pool_sandbox pool_sandbox_faults async_api runtime; do
    bin="$(scripts/test-binary.sh "$t" --features "$features")"
    # Copied out of the checkout, which an unprivileged uid may not be able to enter.
    install -m 755 "$bin" "$dir/$t"
    echo "== $t as uid $uid"
    (cd /tmp && setpriv --reuid="$uid" --regid="$uid" --clear-groups "$dir/$t")
    case "$t" in
      sandbox_security | sandbox_tenants | sandbox_host_boundary | reset_in_place)
        for landlock in 5 off; do
          echo "== $t as uid $uid with SANDPOOL_TEST_LANDLOCK=$landlock"
          (cd /tmp && SANDPOOL_TEST_LANDLOCK="$landlock" setpriv --reuid="$uid" --regid="$uid" --clear-groups "$dir/$t")
        done
        ;;
    esac
  done
fi
