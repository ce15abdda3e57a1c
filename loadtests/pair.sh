#!/usr/bin/env bash
# Builds of the Jinke server measured back to back at one N, alternating, round after round:
# the before/after figures of BENCHMARKS.md on this noisy machine. One line of bench.sh's
# table per run, prefixed by the build's path; the per-run JSON stays in each run's folder.
#
#   cp target/release/jinke /tmp/jinke-before   # right after building each version
#   loadtests/pair.sh 500 5 /tmp/jinke-before /tmp/jinke-after
#
# Needs what bench.sh needs (root for unshare --net, taskset); Jinke only, no Janus.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { echo "usage: $0 N ROUNDS SERVER_BINARY..." >&2; exit 2; }
N=$1
ROUNDS=$2
shift 2
cargo build --release --locked -p jinke-load --bins
for _ in $(seq "$ROUNDS"); do
  for server in "$@"; do
    out=$(mktemp -d /tmp/jinke-pair.XXXXXX)
    unshare --net -- env JINKE_BENCH_IN_NS=1 JINKE_SERVER="$(realpath "$server")" OUT="$out" \
      SERVERS=jinke SIZES="$N" DURATION=8 loadtests/bench.sh > "$out/log" 2>&1 ||
      { echo "$server: the run failed, see $out/log" >&2; exit 1; }
    echo "$server $(grep '^jinke ' "$out/log" | tail -1)"
  done
done
