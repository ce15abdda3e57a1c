#!/bin/sh
# Runs the browser tests inside a fresh network namespace that has only a loopback interface, so
# Chromium's ICE candidates and all test traffic stay on 127.0.0.1. Needs root (unshare --net),
# Debian's chromium, and `jinke` built (JINKE_BIN, default target/debug/jinke).
set -eu
cd "$(dirname "$0")/../.."
root=$(pwd)
: "${JINKE_BIN:=$root/target/debug/jinke}"
export JINKE_BIN
[ -x "$JINKE_BIN" ] || { echo "build jinke first: $JINKE_BIN is missing" >&2; exit 1; }
[ -x /usr/bin/chromium ] || { echo "Debian chromium is missing: apt-get install chromium" >&2; exit 1; }
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund)
fi
exec unshare --net -- sh -c 'ip link set lo up && cd tests/browser && exec node --test --test-concurrency=1 lesson.test.mjs'
