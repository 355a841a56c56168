#!/usr/bin/env bash
# Builds the integration test NAME (extra cargo arguments after it, e.g. --release) and prints
# the path of its executable, for running it elsewhere: as another uid, or in a VM.
set -euo pipefail
name="$1"
shift
cargo test "$@" --test "$name" --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("profile", {}).get("test") and m.get("executable"):
        print(m["executable"])' | tail -n 1
