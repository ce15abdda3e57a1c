#!/bin/sh
# Installs what the tests need on a fresh Debian machine (as root): the wasm32 target, Debian's
# chromium, Node.js with npm, iproute2 and util-linux (namespaces, and `tc` for shaped links), Janus (the
# bench's comparison server), libopus and pkg-config (the load generator's audio), curl and python3
# (the bench script), perf (the bench's profiles), and the browser tests' npm packages. Quick when
# everything is already there.
set -eu
cd "$(dirname "$0")/.."
rustup target add wasm32-unknown-unknown >/dev/null
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v node >/dev/null || missing="$missing nodejs"
command -v npm >/dev/null || missing="$missing npm"
command -v ip >/dev/null || missing="$missing iproute2"
command -v unshare >/dev/null || missing="$missing util-linux"
command -v janus >/dev/null || missing="$missing janus"
command -v curl >/dev/null || missing="$missing curl"
command -v python3 >/dev/null || missing="$missing python3"
command -v pkg-config >/dev/null || missing="$missing pkg-config"
[ -e /usr/include/opus/opus.h ] || missing="$missing libopus-dev"
command -v perf >/dev/null || missing="$missing linux-perf"
if [ -n "$missing" ]; then
  echo "installing:$missing"
  apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
