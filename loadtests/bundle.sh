#!/usr/bin/env bash
# Packs what loadtests/bench.sh needs on a machine without cargo or a package registry (the
# 16-core machine lent to some sessions: BENCHMARKS.md): release builds of jinke, jinke-load and
# jinke-ceiling, stripped, libopus (jinke-load's one library beyond glibc), and Janus with `ip`
# (loadtests/janus-portable.sh). One tarball, unpacked as jinke-bundle/:
#
#   loadtests/bundle.sh /tmp/jinke-bundle.tar.xz        # here
#   tar xJf jinke-bundle.tar.xz -C /tmp                 # there, in a checkout of the same commit
#   B=/tmp/jinke-bundle; LD_LIBRARY_PATH=$B/lib PATH=$B/janus-portable/bin:$PATH \
#     JANUS_LIB=$B/janus-portable/janus BIN=$B/bin loadtests/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# = 1 ] || { echo "usage: $0 OUTPUT.tar.xz" >&2; exit 2; }
out=$(realpath "$1")
cargo build --release --locked -p jinke -p jinke-load --bins
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/jinke-bundle
mkdir -p "$root/bin" "$root/lib"
cp target/release/{jinke,jinke-load,jinke-ceiling} "$root/bin/"
strip "$root"/bin/*
opus=$(ldd target/release/jinke-load | awk '/libopus/{print $3}')
[ -n "$opus" ] || { echo "jinke-load does not link libopus here" >&2; exit 1; }
cp -L "$opus" "$root/lib/"
loadtests/janus-portable.sh "$stage/janus.tar.xz"
tar xJf "$stage/janus.tar.xz" -C "$root"
tar cJf "$out" -C "$stage" jinke-bundle
echo "$out: $(du -h "$out" | cut -f1) (commit $(git rev-parse --short HEAD))"
