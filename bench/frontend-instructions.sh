#!/usr/bin/env bash
# Counts the user-space instructions the front end (`subnetlock up`) executes per request,
# under valgrind's callgrind, while wrk sends function B's request through it on loopback.
# With `floor` as the second argument it counts the floor proxy of bench/frontend.sh
# (crates/emulator/examples/floor_proxy.rs) instead, the least a tokio proxy in front of the
# same handler executes.
# Instruction counts do not depend on what else the machine is doing, so this number compares
# two commits where requests per second (bench/frontend.sh) vary from run to run. Kernel time
# is not counted.
# Usage: bench/frontend-instructions.sh [seconds of load, default 10] [frontend|floor, default frontend]
# With KEEP_CALLGRIND=DIR, the callgrind output is copied to DIR for callgrind_annotate.
# Needs valgrind, wrk, python3 and curl; installs valgrind and wrk with apt-get when missing.
set -euo pipefail

duration=${1:-10}
target=${2:-frontend}
workspace=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
up_pid=""
handler_pid=""
cleanup() {
    if [ -n "$up_pid" ]; then kill "$up_pid" 2>/dev/null || true; fi
    if [ -n "$handler_pid" ]; then kill "$handler_pid" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    if [ -n "${KEEP_CALLGRIND:-}" ]; then cp "$work"/callgrind.out.* "$KEEP_CALLGRIND"/ 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=bench/common.sh
source "$workspace/bench/common.sh"
ensure_packages valgrind wrk

cd "$workspace"
cargo build --release --quiet -p subnetlock -p subnetlock-functions

port=$(free_port)
case $target in
    frontend)
        RUST_LOG=warn valgrind --tool=callgrind --compress-strings=no --compress-pos=no \
            --callgrind-out-file="$work/callgrind.out" \
            target/release/subnetlock up bench/frontend --no-build --http-port "$port" \
            --state-dir "$work/state" >"$work/up.log" 2>&1 &
        up_pid=$!
        # Under callgrind the start is slow, so first_site_of waits up to 2 minutes.
        read -r host key < <(first_site_of "$work/state")
        url="http://127.0.0.1:$port/api/function-b?code=$key"
        ;;
    floor)
        cargo build --release --quiet -p subnetlock-emulator --example floor_proxy
        handler_port=$(free_port)
        FUNCTIONS_CUSTOMHANDLER_PORT=$handler_port RUST_LOG=warn target/release/function-app-b \
            2>"$work/handler.log" &
        handler_pid=$!
        valgrind --tool=callgrind --compress-strings=no --compress-pos=no \
            --callgrind-out-file="$work/callgrind.out" \
            target/release/examples/floor_proxy "127.0.0.1:$port" "$handler_port" \
            >"$work/up.log" 2>&1 &
        up_pid=$!
        host="function-app-b.azurewebsites.net"
        url="http://127.0.0.1:$port/api/function-b"
        # Under callgrind the start is slow, so this waits up to 2 minutes for a response.
        for _ in $(seq 1 1200); do
            if curl -s -o /dev/null "$url"; then break; fi
            sleep 0.1
        done
        ;;
    *)
        echo "unknown target '$target': expected frontend or floor" >&2
        exit 2
        ;;
esac

# Warm up (connections, pools, lazily built state), then count only the measured window:
# zero the counters, load, and dump.
wrk -t1 -c8 -d2s -H "Host: $host" "$url" >/dev/null
callgrind_control --zero "$up_pid" >/dev/null 2>&1
output=$(wrk -t1 -c8 -d"${duration}s" -H "Host: $host" "$url")
callgrind_control --dump "$up_pid" >/dev/null 2>&1
sleep 1

requests=$(awk '/requests in/ {print $1}' <<<"$output")
python3 - "$work" "$requests" <<'PY'
import glob, sys
work, requests = sys.argv[1], int(sys.argv[2])
# The dump after `--zero` is the only part file (callgrind.out.1); the first one is written
# when `up` exits.
total = 0
for path in glob.glob(f"{work}/callgrind.out.*"):
    for line in open(path):
        if line.startswith("summary:"):
            total += int(line.split()[1])
print(f"requests: {requests}")
print(f"instructions: {total:,}")
print(f"instructions per request: {total // max(requests, 1):,}")
PY
