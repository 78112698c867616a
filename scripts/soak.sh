#!/usr/bin/env bash
# Soak the release gateway on its simulator: 100,000 mixed requests at concurrency 64 by
# default, every answer checked, the gateway's RSS after the warm-up and at the end compared.
# Exits non-zero on any error, lost answer or RSS growth over 10 %. Run by hand (not in CI);
# the README records the result.
#   scripts/soak.sh [--requests N] [--concurrency N] [--warmup N] [--instances N]
#                   [--progress SECS] [--timeout SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin lingma-gateway --example soak
echo "# $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%d)"
exec target/release/examples/soak --bin target/release/lingma-gateway "$@"
