#!/usr/bin/env bash
# Measures requests per second, p50/p99 latency and CPU per request of function B's handler
# six ways, in one run, on loopback only:
#   direct       wrk -> handler
#   frontend     wrk -> subnetlock front end (B's access restrictions, Functions host, key
#                check, decision log) -> handler
#   nginx        wrk -> nginx reverse proxy with the equivalent allow/deny list -> handler
#   nginx + log  the same with a buffered access log, the counterpart of the decision log
#   nginx + headers  the same without the log, forwarding the request as the front end does.
#                It sends the caller's host name and function key, and the headers that the
#                App Service front end and the Functions host add. The handler parses them all.
#   floor        wrk -> crates/emulator/examples/floor_proxy.rs, which adds the front end's
#                headers and does nothing else: the least any front end in tokio pays
# Every path runs once per round, the paths taking turns, so that a slow spell of the machine
# hits all of them. The summary gives each path's median over the rounds.
# Usage: bench/frontend.sh [seconds per run, default 10] [connections, default 64] [rounds, default 3]
# Needs nginx and wrk (Debian packages), which it installs with apt-get when missing and run as
# root, and python3 and curl.
set -euo pipefail

duration=${1:-10}
connections=${2:-64}
rounds=${3:-3}
workspace=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=bench/common.sh
source "$workspace/bench/common.sh"
ensure_packages nginx wrk

cd "$workspace"
cargo build --release --quiet -p subnetlock -p subnetlock-functions
cargo build --release --quiet -p subnetlock-emulator --example floor_proxy

wait_for() {
    for _ in $(seq 1 100); do
        if curl -s -o /dev/null "$1"; then return 0; fi
        sleep 0.1
    done
    echo "timed out waiting for $1" >&2
    exit 2
}

# 1. The handler alone.
handler_port=$(free_port)
FUNCTIONS_CUSTOMHANDLER_PORT=$handler_port RUST_LOG=warn target/release/function-app-b 2>"$work/handler.log" &
handler_pid=$!
pids+=($handler_pid)
wait_for "http://127.0.0.1:$handler_port/"

# 2. The subnetlock front end with B's rules.
frontend_port=$(free_port)
RUST_LOG=warn target/release/subnetlock up bench/frontend --no-build --http-port "$frontend_port" \
    --state-dir "$work/state" >"$work/up.log" 2>&1 &
frontend_pid=$!
pids+=($frontend_pid)
# The front end starts a handler process of its own.
read -r host key < <(first_site_of "$work/state")
frontend_handler_pid=$(pgrep -P "$frontend_pid" | head -n 1)

# 3. nginx with the same allow/deny list in front of the handler, without and with an access
# log. The log is buffered like the front end's decision log (64 KiB, flushed every 500 ms), so
# the second server does the same per-request bookkeeping as the front end does.
nginx_port=$(free_port)
nginx_log_port=$(free_port)
nginx_headers_port=$(free_port)
mkdir -p "$work/nginx/logs"
location='location / {
            deny 192.0.2.0/24;
            allow 127.0.0.1;
            deny all;
            proxy_pass http://handler;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }'
# The headers the front end sends the handler (encode_request in
# crates/emulator/src/frontend/fast_path.rs). A location that sets any header inherits none from
# its server, so they are all here. nginx's request id has 32 hexadecimal digits where the
# invocation id is a 36-character UUID.
location_with_headers="${location%\}}"'    proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Azure-Functions-InvocationId $request_id;
            proxy_set_header X-Azure-Functions-HostVersion 4.x-subnetlock;
            proxy_set_header User-Agent Azure-Functions-Host/4.x-subnetlock;
        }'
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 2;
error_log $work/nginx/logs/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    upstream handler { server 127.0.0.1:$handler_port; keepalive 128; }
    server {
        listen 127.0.0.1:$nginx_port;
        $location
    }
    server {
        listen 127.0.0.1:$nginx_log_port;
        access_log $work/nginx/logs/access.log combined buffer=64k flush=500ms;
        $location
    }
    server {
        listen 127.0.0.1:$nginx_headers_port;
        $location_with_headers
    }
}
CONF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -g 'daemon off;' &
nginx_pid=$!
pids+=($nginx_pid)
wait_for "http://127.0.0.1:$nginx_port/"
nginx_workers=$(pgrep -P "$nginx_pid" | tr '\n' ' ')

floor_port=$(free_port)
target/release/examples/floor_proxy "127.0.0.1:$floor_port" "$handler_port" &
floor_pid=$!
pids+=($floor_pid)
wait_for "http://127.0.0.1:$floor_port/"

# CPU time (user + system, in clock ticks) used so far by the given processes.
cpu_ticks() {
    local total=0 pid
    for pid in "$@"; do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$total"
}

# Idle and total CPU time of the whole machine so far, in clock ticks: "idle total".
machine_ticks() {
    awk '$1 == "cpu" {idle = $5 + $6; total = 0; for (i = 2; i <= NF; i++) total += $i; print idle, total}' /proc/stat
}

# Context switches (voluntary and involuntary) of every thread of the given processes so far.
context_switches() {
    local total=0 pid
    for pid in "$@"; do
        total=$((total + $(cat /proc/"$pid"/task/*/status | awk '/ctxt_switches/ {sum += $2} END {print sum + 0}')))
    done
    echo "$total"
}

# Runs wrk against a URL and prints one table row. The CPU columns are microseconds of CPU
# per request used by the proxy under test (PROXY_PIDS) and by the handler behind it
# (HANDLER_PID).
run() {
    local name=$1; shift
    local proxy_before handler_before switches_before machine_before output
    proxy_before=$(cpu_ticks ${PROXY_PIDS:-})
    handler_before=$(cpu_ticks "$HANDLER_PID")
    switches_before=$(context_switches ${PROXY_PIDS:-} "$HANDLER_PID")
    machine_before=$(machine_ticks)
    output=$(wrk -t2 -c"$connections" -d"${duration}s" --latency "$@")
    local machine_after
    machine_after=$(machine_ticks)
    local proxy_ticks=$(( $(cpu_ticks ${PROXY_PIDS:-}) - proxy_before ))
    local handler_ticks=$(( $(cpu_ticks "$HANDLER_PID") - handler_before ))
    local switches=$(( $(context_switches ${PROXY_PIDS:-} "$HANDLER_PID") - switches_before ))
    local rps p50 p99 requests
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$output")
    p50=$(awk '$1=="50%" {print $2}' <<<"$output")
    p99=$(awk '$1=="99%" {print $2}' <<<"$output")
    requests=$(awk '/requests in/ {print $1}' <<<"$output")
    local non2xx
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$output")
    local hz proxy_cpu handler_cpu
    hz=$(getconf CLK_TCK)
    proxy_cpu=$(awk -v t="$proxy_ticks" -v n="$requests" -v hz="$hz" 'BEGIN {printf "%.1f", t / hz / n * 1e6}')
    handler_cpu=$(awk -v t="$handler_ticks" -v n="$requests" -v hz="$hz" 'BEGIN {printf "%.1f", t / hz / n * 1e6}')
    if [ -z "${PROXY_PIDS:-}" ]; then proxy_cpu="-"; fi
    # Share of the machine's CPU time left idle during the run, and context switches of the
    # proxy and handler threads per request.
    local idle per_request_switches
    idle=$(awk -v b="$machine_before" -v a="$machine_after" 'BEGIN {split(b, x, " "); split(a, y, " "); printf "%.0f %%", (y[1] - x[1]) / (y[2] - x[2]) * 100}')
    per_request_switches=$(awk -v s="$switches" -v n="$requests" 'BEGIN {printf "%.2f", s / n}')
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$round" "$name" "$rps" "$p50" "$p99" \
        "${non2xx:-0}" "$proxy_cpu" "$handler_cpu" "$per_request_switches" "$idle"
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rps" "$proxy_cpu" "$handler_cpu" "$per_request_switches" >>"$work/results.tsv"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo "wrk -t2 -c$connections -d${duration}s, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| round | path | requests/s | p50 | p99 | non-2xx | proxy CPU µs/request | handler CPU µs/request | context switches/request | machine idle |"
echo "|---|---|---|---|---|---|---|---|---|---|"
# With ONLY_FRONT_END_AND_NGINX=1, each round runs only the front end and nginx.
only=${ONLY_FRONT_END_AND_NGINX:-0}
for round in $(seq 1 "$rounds"); do
    if [ "$only" != 1 ]; then
        PROXY_PIDS="" HANDLER_PID=$handler_pid run direct "http://127.0.0.1:$handler_port/api/function-b"
    fi
    PROXY_PIDS="$frontend_pid" HANDLER_PID=$frontend_handler_pid run "subnetlock front end" -H "Host: $host" "http://127.0.0.1:$frontend_port/api/function-b?code=$key"
    PROXY_PIDS="$nginx_workers" HANDLER_PID=$handler_pid run "nginx allow/deny" "http://127.0.0.1:$nginx_port/api/function-b"
    if [ "$only" != 1 ]; then
        PROXY_PIDS="$nginx_workers" HANDLER_PID=$handler_pid run "nginx allow/deny + access log" "http://127.0.0.1:$nginx_log_port/api/function-b"
        PROXY_PIDS="$nginx_workers" HANDLER_PID=$handler_pid run "nginx allow/deny + Functions host headers" -H "Host: $host" "http://127.0.0.1:$nginx_headers_port/api/function-b?code=$key"
        PROXY_PIDS="$floor_pid" HANDLER_PID=$handler_pid run "floor (headers only)" "http://127.0.0.1:$floor_port/api/function-b"
    fi
done

echo
echo "Medians over $rounds rounds:"
echo
echo "| path | requests/s | proxy CPU µs/request | handler CPU µs/request | context switches/request |"
echo "|---|---|---|---|---|"
python3 - "$work/results.tsv" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rps, proxy, handler, switches = line.rstrip("\n").split("\t")
    rows.setdefault(name, []).append((float(rps), proxy, handler, switches))
def median(values, digits=1):
    numbers = [float(v) for v in values if v != "-"]
    return f"{statistics.median(numbers):.{digits}f}" if numbers else "-"
for name, runs in rows.items():
    print(f"| {name} | {statistics.median(r[0] for r in runs):,.0f} | "
          f"{median(r[1] for r in runs)} | {median(r[2] for r in runs)} | "
          f"{median((r[3] for r in runs), 2)} |")
PY
