#!/usr/bin/env bash
# The lecture benchmark: one teacher (real VP8 + Opus) to N students, the server pinned to core 0
# and the load generator to core 1, inside a network namespace this script creates (nothing leaves
# it). Prints a table of figures per N and stops growing N once loss passes 1%.
#
#   loadtests/bench.sh                 # N = 50 200 500 1000, 10 s windows
#   SIZES="100 2000" DURATION=20 loadtests/bench.sh
#
# Needs root (unshare --net), taskset (util-linux) and python3 (for the table). Results (JSON per
# run) are left in $OUT (default: a fresh folder under /tmp). BENCHMARKS.md records the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"50 200 500 1000"}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
SERVER_CORE=${SERVER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}

if [ "${JINKE_BENCH_IN_NS:-}" != 1 ]; then
  cargo build --release --locked -p jinke -p jinke-load
  export OUT=${OUT:-$(mktemp -d /tmp/jinke-bench.XXXXXX)}
  exec unshare --net -- env JINKE_BENCH_IN_NS=1 OUT="$OUT" "$0" "$@"
fi

ip link set lo up
HTTP=127.0.0.1:18500
UDP=127.0.0.1:18501
KEY=bench-key-0123456789abcdef
data=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$data"
}
trap cleanup EXIT

RUST_LOG=warn taskset -c "$SERVER_CORE" target/release/jinke serve --http "$HTTP" --udp "$UDP" \
  --data-dir "$data" --api-key "$KEY" &
server_pid=$!
for _ in $(seq 100); do
  curl -sf "http://$HTTP/" >/dev/null 2>&1 && break
  sleep 0.1
done

echo "jinke serve pid $server_pid on core $SERVER_CORE; generator on core $LOAD_CORE; results in $OUT"
for n in $SIZES; do
  taskset -c "$LOAD_CORE" target/release/jinke-load --url "http://$HTTP" --api-key "$KEY" \
    --scenario lecture -n "$n" --warmup "$WARMUP" --duration "$DURATION" \
    --server-pid "$server_pid" --json > "$OUT/jinke-lecture-$n.json"
  loss=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["loss_percent"])' "$OUT/jinke-lecture-$n.json")
  echo "  N=$n done (loss $loss%)"
  if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 1.0 else 1)' "$loss"; then
    echo "  loss above 1%: stopping here"
    break
  fi
done

python3 - "$OUT" <<'EOF'
import glob, json, os, sys
out = sys.argv[1]
rows = []
for path in glob.glob(os.path.join(out, "*-lecture-*.json")):
    server = os.path.basename(path).split("-")[0]
    r = json.load(open(path))
    rows.append((server, r["size"], r))
rows.sort(key=lambda x: (x[1], x[0]))
fmt = "{:<7}{:>6}{:>8}{:>10}{:>10}{:>9}{:>10}{:>10}{:>11}{:>9}{:>9}"
print(fmt.format("server", "N", "joined", "pkt/s", "loss %", "us/pkt", "CPU %", "RSS MiB", "join p50", "lat p50", "lat p99"))
for server, n, r in rows:
    s = r.get("server") or {}
    f = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"
    print(fmt.format(server, n, r["joined"], f(r["packets_per_second"], 0), f(r["loss_percent"], 3),
                     f(s.get("cpu_us_per_packet"), 2), f(s.get("cpu_percent")), f(s.get("rss_mib")),
                     f(r["join_ms"]["p50"]), f(r["latency_ms"]["p50"], 2), f(r["latency_ms"]["p99"], 2)))
EOF
