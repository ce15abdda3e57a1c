#!/bin/sh
# Runs every test: formatting and lints, unit and integration tests (webrtc-rs clients against the
# real server on loopback), the unit tests of the str0m we carry patched (vendor/PATCHES.md;
# its own lock file and target folder), the browser tests (chromium in a loopback-only namespace), and a few
# seconds of the Jinke-and-Janus lecture bench, each server profiled, so that the load generator,
# its Janus adapter and the profiles' breakdown cannot rot (the full bench is loadtests/bench.sh,
# not a test).
set -eu
cd "$(dirname "$0")/.."
./scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
CARGO_TARGET_DIR=target/str0m cargo test --manifest-path vendor/str0m/Cargo.toml --lib --locked
cargo build --workspace --locked
bench=$(mktemp -d /tmp/jinke-bench.XXXXXX)
OUT=$bench SIZES=5 DURATION=2 WARMUP=1 PROFILE=debug PERF_SECONDS=1 ./loadtests/bench.sh
./loadtests/perf-breakdown.py "$bench/jinke-5-1.perf" "$bench/janus-5-1.perf"
rm -rf "$bench"
./tests/browser/run.sh
