#!/usr/bin/env bash
# Benchmark the gateway against a direct WebSocket client to the bundled simulator.
# Run by hand (not in CI): results vary with the machine; the README records them.
#   scripts/bench.sh [--requests N] [--streams N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin lingma-gateway --example bench
echo "# $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%d)"
exec target/release/examples/bench --bin target/release/lingma-gateway "$@"
