#!/usr/bin/env bash
# Times offline evaluation of the ARM corpus two ways, in one run:
#   subnetlock  load + evaluate every template with its parameters file in one process
#               (crates/arm/benches/corpus.rs, release build): median of N passes, and the
#               wall time of fresh processes
#   checkov     `checkov -d <dir> --framework arm --quiet --compact --skip-download`,
#               median of 3 runs
# Both tools read the same file set: the top-level corpus files minus the templates named in
# CHECKOV_SKIP, because Checkov 3.3.30 raises IndexError in
# checkov/arm/utils.py:extract_resource_name_from_reference_func on
# alz-appsvc-secure-baseline-multitenant.json and aborts the whole directory. subnetlock is
# also timed on the full corpus.
# Checkov runs inside a new network namespace (`unshare -n`) whose only interface is
# loopback, so it cannot reach any other address. Without `unshare`, Checkov is not run.
# Usage: bench/arm-corpus.sh [passes, default 20] [corpus dir, default ../shared/corpus/arm]
# Checkov is installed with pip into /tmp/checkov-venv when missing (needs PyPI).
set -euo pipefail

passes=${1:-20}
workspace=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
corpus=${2:-$workspace/../shared/corpus/arm}
skip=${CHECKOV_SKIP:-alz-appsvc-secure-baseline-multitenant}
venv=/tmp/checkov-venv
runs=3

if [ ! -d "$corpus" ]; then
    echo "skipped: corpus directory $corpus not found" >&2
    exit 0
fi
corpus=$(cd "$corpus" && pwd)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

median() {
    sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

elapsed_ms() {
    awk -v s="$1" -v e="$2" 'BEGIN { printf "%.1f", (e - s) * 1000 }'
}

count_templates() {
    find -L "$1" -maxdepth 1 -name '*.json' ! -name '*.parameters.*' | wc -l
}

# The shared file set: symbolic links to the top-level corpus files, without the skipped
# templates and their parameters files.
shared="$work/arm"
mkdir -p "$shared"
for file in "$corpus"/*; do
    [ -f "$file" ] || continue
    name=$(basename "$file")
    stem=${name%%.parameters.*}
    stem=${stem%.json}
    case " $skip " in *" $stem "*) continue ;; esac
    ln -s "$file" "$shared/$name"
done

echo "== machine"
echo "nproc: $(nproc)"
echo "memory: $(awk '/MemTotal/ { printf "%.1f GiB\n", $2 / 1048576 }' /proc/meminfo)"
echo "uname: $(uname -srm)"
echo "cpu: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
echo "corpus: $corpus ($(count_templates "$corpus") templates, $(du -sh "$corpus" | cut -f1))"
echo "shared set: $(count_templates "$shared") templates (skipped: $skip)"

echo "== subnetlock ($passes passes per process)"
cd "$workspace"
cargo bench -q -p subnetlock-arm --bench corpus --no-run
full_out=$(cargo bench -q -p subnetlock-arm --bench corpus -- "$passes" "$corpus")
echo "full corpus: $full_out"
shared_out=$(cargo bench -q -p subnetlock-arm --bench corpus -- "$passes" "$shared")
echo "shared set: $shared_out"
full_ms=$(echo "$full_out" | sed -n 's/^median_ms=\([0-9.]*\).*/\1/p')
shared_ms=$(echo "$shared_out" | sed -n 's/^median_ms=\([0-9.]*\).*/\1/p')

# A fresh process per run, like Checkov's: start-up, one checking pass and one timed pass,
# so each run evaluates the set twice.
binary=$(ls -t target/release/deps/corpus-* | grep -v '\.d$' | head -1)
process_times=()
for run in $(seq "$runs"); do
    start=$(date +%s.%N)
    "$binary" 1 "$shared" >/dev/null
    end=$(date +%s.%N)
    process_times+=("$(elapsed_ms "$start" "$end")")
done
process_ms=$(printf '%s\n' "${process_times[@]}" | median)
echo "shared set, fresh process, two passes: ${process_times[*]} ms (median $process_ms ms)"

echo "== checkov ($runs runs)"
if unshare -n true 2>/dev/null; then
    isolate=(unshare -n)
elif unshare -rn true 2>/dev/null; then
    isolate=(unshare -rn)
else
    echo "checkov not run: unshare cannot create a network namespace, so loopback-only traffic cannot be guaranteed" >&2
    exit 1
fi
if [ ! -x "$venv/bin/checkov" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q checkov
fi
checkov_env=(env BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false)
echo "checkov $("${isolate[@]}" "${checkov_env[@]}" "$venv/bin/checkov" --version 2>/dev/null)"

checkov_times=()
for run in $(seq "$runs"); do
    log="$work/checkov-$run.log"
    start=$(date +%s.%N)
    # Status 1 means failed checks, the normal result on this corpus.
    status=0
    "${isolate[@]}" sh -c 'ip link set lo up 2>/dev/null; exec "$@"' sh \
        "${checkov_env[@]}" "$venv/bin/checkov" -d "$shared" --framework arm \
        --quiet --compact --skip-download >"$log" 2>&1 || status=$?
    end=$(date +%s.%N)
    if [ "$status" -gt 1 ] || grep -q '^Traceback' "$log"; then
        echo "checkov run $run failed with status $status:" >&2
        tail -20 "$log" >&2
        exit 1
    fi
    checkov_times+=("$(elapsed_ms "$start" "$end")")
    echo "run $run: ${checkov_times[-1]} ms, status $status, $(grep -c '^Check:' "$log" || true) failed checks"
done
checkov_ms=$(printf '%s\n' "${checkov_times[@]}" | median)

echo "== result"
echo "| tool, file set | median wall time | runs |"
echo "| --- | --- | --- |"
echo "| subnetlock-arm, full corpus, one pass in a warm process | $full_ms ms | $passes passes |"
echo "| subnetlock-arm, shared set, one pass in a warm process | $shared_ms ms | $passes passes |"
echo "| subnetlock-arm, shared set, fresh process (two passes) | $process_ms ms | $runs processes |"
echo "| checkov --framework arm, shared set | $checkov_ms ms | $runs processes |"
awk -v c="$checkov_ms" -v s="$shared_ms" -v p="$process_ms" \
    'BEGIN { printf "speed-up on the shared set: %.0fx per pass, %.0fx per process\n", c / s, c / p }'
