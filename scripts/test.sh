#!/bin/sh
# Runs every test: formatting and lints, unit and integration tests (webrtc-rs clients against the
# real server on loopback), then the browser tests (chromium in a loopback-only namespace).
set -eu
cd "$(dirname "$0")/.."
./scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
cargo build --locked
./tests/browser/run.sh
