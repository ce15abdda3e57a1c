#!/usr/bin/env bash
# The lecture benchmark, Jinke and Janus side by side: one teacher (real VP8 + Opus) to N students.
# Each server in turn is pinned to core 0 and the load generator to core 1, inside a network
# namespace this script creates (lo plus a veth with 127.0.0.2 for the servers and 127.0.0.3 for the
# clients: Janus refuses loopback interfaces). Nothing leaves the namespace. For each N, Jinke runs
# then Janus (VideoRoom, `event_loops = 2`); N stops growing once either loses more than 1%.
# First it measures the ceiling: GCM encryption plus plain, batched and GSO UDP sends per packet.
#
#   loadtests/bench.sh                 # N = 50 200 500 1000, 10 s windows
#   SIZES="100 2000" DURATION=20 loadtests/bench.sh
#   SERVERS=jinke loadtests/bench.sh   # one server only
#   SIZES=200 ROUNDS=5 loadtests/bench.sh   # five rounds of Jinke then Janus at each N: each
#                                      # round's ratio and their median (this machine drifts by
#                                      # ±15% in minutes; a single pair can mislead)
#   SIZES=5 DURATION=2 PROFILE=debug loadtests/bench.sh   # the smoke run scripts/test.sh does
#   SIMULCAST=1 SERVERS=jinke loadtests/bench.sh          # the teacher's camera in three
#                                      # simulcast layers, as browsers send it (Jinke only)
#   JINKE_SERVER=/tmp/jinke-before loadtests/bench.sh     # another build of the server
#                                      # (loadtests/pair.sh runs builds back to back)
#   SERVERS=jinke SERVER_CORE=0-3 JINKE_MEDIA_THREADS=4 LOAD_CORE=4-11 LOAD_THREADS=8 \
#     SIZES="1000 2000" loadtests/bench.sh    # on a bigger machine: four shards, and a generator
#                                      # of eight threads (one saturates near 1,000 students)
#   BIN=/path/to/binaries SERVERS=jinke loadtests/bench.sh # prebuilt jinke, jinke-load and
#                                      # jinke-ceiling, on a machine without cargo
#                                      # (loadtests/bundle.sh packs them, Janus too)
#   JANUS_LIB=DIR loadtests/bench.sh   # Janus's plugins and transports from DIR/plugins and
#                                      # DIR/transports (loadtests/janus-portable.sh packs them)
#   PERF_SECONDS=10 SIZES=500 DURATION=20 loadtests/bench.sh  # `perf record -g` on each server
#                                      # for 10 s of its window, into $OUT/SERVER-N-ROUND.perf;
#                                      # loadtests/perf-breakdown.py sums where the time went
#
# Exits non-zero when a run had corrupt packets, or failed clients or missing joins at the first
# (smallest) N (errors, not performance); further up, failures and loss above 1% only stop N from
# growing.
# Needs root (unshare --net), taskset, python3, and for Janus iproute2's `ip` and Debian's janus
# (installed when missing). Jinke alone runs without `ip` or curl.
# Results (JSON per run) are left in $OUT (default: a fresh folder under /tmp). BENCHMARKS.md
# records the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"50 200 500 1000"}
SERVERS=${SERVERS:-"jinke janus"}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-1}
# A ROUNDS that seq cannot count would run nothing and print an empty table.
if ! [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]]; then
  echo "ROUNDS must be a whole number of at least 1, not '$ROUNDS'" >&2
  exit 2
fi
WARMUP=${WARMUP:-3}
SERVER_CORE=${SERVER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
LOAD_THREADS=${LOAD_THREADS:-1}
JANUS_EVENT_LOOPS=${JANUS_EVENT_LOOPS:-2}
JANUS_LIB=${JANUS_LIB:-/usr/lib/x86_64-linux-gnu/janus}
# One media thread: the server gets one core (taskset), as Janus does.
JINKE_MEDIA_THREADS=${JINKE_MEDIA_THREADS:-1}
PROFILE=${PROFILE:-release}
BIN=${BIN:-target/$PROFILE}
SIMULCAST=${SIMULCAST:-0}
PERF_SECONDS=${PERF_SECONDS:-0}
# The profile starts once the students are in (warm-up plus a second) and must end within the
# window. Sampling costs the server time (Jinke at N=500: 4.00-4.55 us a packet profiled, 3.68-4.20
# not, the same day; BENCHMARKS.md): a profiled run's figures are not for comparing.
if [ "$PERF_SECONDS" != 0 ]; then
  if ! [[ "$PERF_SECONDS" =~ ^[1-9][0-9]*$ ]] || [ "$PERF_SECONDS" -ge "$DURATION" ]; then
    echo "PERF_SECONDS must be a whole number of seconds that fits in DURATION less one: $PERF_SECONDS" >&2
    exit 2
  fi
  command -v perf >/dev/null || { echo "PERF_SECONDS needs perf (Debian: linux-perf)" >&2; exit 2; }
fi
if [ "$SIMULCAST" = 1 ] && [[ " $SERVERS " == *" janus "* ]]; then
  echo "SIMULCAST=1 is for Jinke only (the generator's Janus publisher sends one layer): SERVERS=jinke" >&2
  exit 2
fi
if [ "$LOAD_THREADS" != 1 ] && [[ " $SERVERS " == *" janus "* ]]; then
  echo "LOAD_THREADS is for Jinke only (the generator's Janus clients share one session): SERVERS=jinke" >&2
  exit 2
fi

if [ "${JINKE_BENCH_IN_NS:-}" != 1 ]; then
  if [ "$BIN" != "target/$PROFILE" ]; then
    : # prebuilt binaries
  elif [ "$PROFILE" = release ]; then
    cargo build --release --locked -p jinke -p jinke-load --bins
  else
    cargo build --locked -p jinke -p jinke-load --bins
  fi
  if [[ " $SERVERS " == *" janus "* ]] && ! command -v janus >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq janus >/dev/null
  fi
  export OUT=${OUT:-$(mktemp -d /tmp/jinke-bench.XXXXXX)}
  mkdir -p "$OUT"
  exec unshare --net -- env JINKE_BENCH_IN_NS=1 OUT="$OUT" "$0" "$@"
fi

SERVER_IP=127.0.0.2
CLIENT_IP=127.0.0.3
if command -v ip >/dev/null; then
  ip link set lo up
else # a machine without iproute2: SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP
  python3 -c 'import fcntl, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sH14x", fcntl.ioctl(s, 0x8913, struct.pack("16sH14x", b"lo", 0)))[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))'
fi
# Janus refuses loopback interfaces: its addresses go on a veth. Jinke's work on lo alone, all
# of 127.0.0.0/8 being local.
if [[ " $SERVERS " == *" janus "* ]]; then
  ip link add bench0 type veth peer name bench1
  ip addr add "$SERVER_IP/32" dev bench0
  ip addr add "$CLIENT_IP/32" dev bench0
  ip link set bench0 up
  ip link set bench1 up
fi
ulimit -n "$(ulimit -Hn)"

KEY=bench-key-0123456789abcdef
work=$(mktemp -d)
server_pid=""
# Janus with hundreds of sessions can take minutes to stop on SIGTERM: give it 20 s, then KILL.
stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap 'stop_server; rm -rf "$work"' EXIT

wait_http() {
  local hostport=${1#http://}
  hostport=${hostport%%/*}
  for _ in $(seq 100); do
    if command -v curl >/dev/null; then
      curl -s -o /dev/null "$1" && return 0
    else # no curl: the port accepting is enough
      (exec 3<>"/dev/tcp/${hostport%:*}/${hostport#*:}") 2>/dev/null && return 0
    fi
    sleep 0.1
  done
  echo "server at $1 did not come up" >&2
  exit 1
}

start_jinke() {
  rm -rf "$work/jinke" && mkdir -p "$work/jinke"
  RUST_LOG=warn taskset -c "$SERVER_CORE" "${JINKE_SERVER:-$BIN/jinke}" serve --http "$SERVER_IP:18500" \
    --udp "$SERVER_IP:18501" --media-threads "$JINKE_MEDIA_THREADS" --data-dir "$work/jinke" \
    --api-key "$KEY" &
  server_pid=$!
  wait_http "http://$SERVER_IP:18500/"
  LOAD_ARGS=(--target jinke --url "http://$SERVER_IP:18500" --api-key "$KEY")
  if [ "$SIMULCAST" = 1 ]; then LOAD_ARGS+=(--simulcast); fi
}

start_janus() {
  local conf="$work/janus"
  rm -rf "$conf" && mkdir -p "$conf"
  for f in loadtests/janus/*.jcfg; do
    sed -e "s#@DIR@#$conf#; s#@EVENT_LOOPS@#$JANUS_EVENT_LOOPS#; s#@RTP_PORTS@#20000-60000#" \
        -e "s#@JANUS_IP@#$SERVER_IP#; s#@HTTP_PORT@#18088#; s#@JANUS_LIB@#$JANUS_LIB#" "$f" \
        > "$conf/$(basename "$f")"
  done
  taskset -c "$SERVER_CORE" janus -C "$conf/janus.jcfg" -F "$conf" > "$OUT/janus.log" 2>&1 &
  server_pid=$!
  wait_http "http://$SERVER_IP:18088/janus/info"
  LOAD_ARGS=(--target janus --url "http://$SERVER_IP:18088/janus")
}

echo "ceiling on core $SERVER_CORE (GCM seal + UDP send per packet: 1200 bytes, then a lecture's mix):"
taskset -c "$SERVER_CORE" "$BIN/jinke-ceiling" | tee "$OUT/ceiling.txt"
echo
echo "servers on core $SERVER_CORE, generator on core $LOAD_CORE; results in $OUT"
errors=0
first=1
status=0
for n in $SIZES; do
  over=0
  for round in $(seq "$ROUNDS"); do
    for server in $SERVERS; do
      result="$OUT/$server-lecture-$n-$round.json"
      "start_$server"
      perf_pid=""
      if [ "$PERF_SECONDS" != 0 ]; then
        # perf itself on the generator's cores: the server's pays only the samples.
        (sleep $((WARMUP + 1)) && exec taskset -c "$LOAD_CORE" perf record -q -F 1999 -g \
          -p "$server_pid" -o "$OUT/$server-$n-$round.perf" -- sleep "$PERF_SECONDS") \
          > "$OUT/$server-$n-$round.perf.log" 2>&1 &
        perf_pid=$!
      fi
      taskset -c "$LOAD_CORE" "$BIN/jinke-load" "${LOAD_ARGS[@]}" --bind-ip "$CLIENT_IP" \
        --scenario lecture -n "$n" --warmup "$WARMUP" --duration "$DURATION" --threads "$LOAD_THREADS" \
        --server-pid "$server_pid" --json > "$result"
      if [ -n "$perf_pid" ]; then wait "$perf_pid" || echo "  perf failed: $OUT/$server-$n-$round.perf.log"; fi
      stop_server
      loss=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["loss_percent"])' "$result")
      echo "  $server N=$n round $round done (loss $loss%)"
      # Packets not as sent are always an error. Failed or missing joins are one at the first
      # (smallest) N, where every server must cope; further up they mean the server is overloaded.
      python3 - "$result" "$n" <<'CHECK' || status=$?
import json, sys
r, n = json.load(open(sys.argv[1])), int(sys.argv[2])
if r["corrupt"]:
    print(f"  ERROR: {r['corrupt']} packets not as sent")
    sys.exit(1)
failed = []
if r["failed"]: failed.append(f"{r['failed']} clients failed: {r['first_error']}")
if r["joined"] < n: failed.append(f"only {r['joined']} of {n} students received media")
if failed:
    print("  " + "; ".join(failed))
    sys.exit(2)
CHECK
      case "${status:-0}" in
        0) ;;
        2) if [ "$first" = 1 ]; then errors=1; else over=1; fi ;;
        *) errors=1 ;;
      esac
      status=0
      if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 1.0 else 1)' "$loss"; then over=1; fi
    done
  done
  first=0
  if [ "$over" = 1 ]; then
    echo "  a server lost more than 1% or failed clients: stopping here"
    break
  fi
done

python3 - "$OUT" <<'EOF'
import glob, json, os, statistics, sys
out = sys.argv[1]
rows = []
for path in glob.glob(os.path.join(out, "*-lecture-*-*.json")):
    server, _, _, round_ = os.path.basename(path)[: -len(".json")].split("-")
    r = json.load(open(path))
    rows.append((server, r["size"], int(round_), r))
rows.sort(key=lambda x: (x[1], x[2], x[0]))
fmt = "{:<7}{:>6}{:>8}{:>10}{:>10}{:>9}{:>10}{:>10}{:>11}{:>9}{:>9}{:>11}{:>10}{:>7}"
print(fmt.format("server", "N", "joined", "pkt/s", "loss %", "us/pkt", "CPU %", "RSS MiB", "join p50", "lat p50", "lat p99",
                 "audio p99", "read p99", "B/pkt"))
us = {}
for server, n, round_, r in rows:
    s = r.get("server") or {}
    us[(server, n, round_)] = s.get("cpu_us_per_packet")
    f = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"
    print(fmt.format(server, n, r["joined"], f(r["packets_per_second"], 0), f(r["loss_percent"], 3),
                     f(s.get("cpu_us_per_packet"), 2), f(s.get("cpu_percent")), f(s.get("rss_mib")),
                     f(r["join_ms"]["p50"]), f(r["latency_ms"]["p50"], 2), f(r["latency_ms"]["p99"], 2),
                     f(r["audio_latency_ms"]["p99"], 2), f((r.get("handled_latency_ms") or {}).get("p99"), 2),
                     f(r.get("payload_bytes_per_packet"), 0)))
print()
print("CPU per forwarded packet, Janus / Jinke (higher is better for Jinke), each round's pair:")
for n in sorted({n for _, n, _, _ in rows}):
    ratios = []
    for round_ in sorted({k for _, m, k, _ in rows if m == n}):
        a, b = us.get(("jinke", n, round_)), us.get(("janus", n, round_))
        if a and b:
            ratios.append(b / a)
    if ratios:
        each = ", ".join(f"{x:.2f}x" for x in ratios)
        median = f" (median {statistics.median(ratios):.2f}x)" if len(ratios) > 1 else ""
        print(f"  N={n}: {each}{median}")
EOF
exit "$errors"
