#!/bin/sh
# Starts Jinke with a demo lesson: prints the API key and teacher/student join links.
# Extra arguments go to `jinke serve` (for example --http 0.0.0.0:8080 --announce-ip 192.0.2.10).
set -eu
cd "$(dirname "$0")/.."
rustup target add wasm32-unknown-unknown >/dev/null
exec cargo run --release -- serve --dev "$@"
