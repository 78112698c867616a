#!/usr/bin/env bash
# Hostile traffic at full scale (issue 13's findings), run by hand, not in CI; the README
# records the result. Builds the release gateway and the `hostile` example
# (scripts/bench/hostile.rs), then runs each attack for --seconds (default 60) against a
# fresh release gateway on its simulator (1 instance, an API key, malloc_tuning as shipped):
#   smuggling          bodies answered unread (1 MiB Content-Length, chunked, refused
#                      Expect: 100-continue) ending in `GET /capabilities`: never served
#   slow-bodies        300 keyless + 300 keyed connections trickling a chat body, 1 byte/2 s
#   pipelining         3,000 pipelined 15 KB heads never read; four senders of 1.8 MB heads
#   long-answer        [[sim:chunks=100000]] streamed and read, then chats on that instance
#   memory             400 MB chunk-size lines; 30 MB / 7 MiB Responses inputs, store: true;
#                      four 29 MB bodies of 800,000 tiny messages at once
#   non-reading        32 streams of 8 MB answers (2,000 deltas of 4 KiB), never read
#   worker-exhaustion  48 slow streams on max_workers = gateway_max_in_flight = 16
#   flood              keyless gateway: foreign Host/Origin (403), control bytes, NUL,
#                      bare LF, forged log lines in request lines (400)
# while probes send GET /healthz and a keyed chat (its answer checked exactly) every second,
# each on a fresh connection.
#
# An attack fails (and the script exits 1) if any probe got no answer, a wrong one, or one
# slower than 1 s (a 503 counts as answered only in worker-exhaustion; in long-answer a chat
# probe's second starts when the simulator's long answer it queued behind ends, since the
# simulator reads nothing while it writes a zero-delay turn), if the attack's own outcome
# does not hold (see each attack in hostile.rs), or if the gateway's RSS leaves these bounds:
#   peak (VmHWM) <= RSS at the start + 512 MiB. Bodies are the largest legitimate holder:
#     max_buffered_body_bytes (256 MiB by default) for all bodies at once, plus what the
#     handlers build from the admitted ones, and each chat's answer waiting for a slow
#     client (at most 4 MiB a chat). Measured peaks (2026-12-02): +39 MiB for 600
#     trickling connections, +202 to +246 MiB for memory (four 29 MB bodies and a 30 MB one
#     at once), +204 to +207 MiB for non-reading (32 answers held up to their bound, plus socket
#     buffers), under +11 MiB for the others.
#   RSS --settle seconds (default 5) after the attack's connections closed <= RSS at the
#     start + 64 MiB (memory: + 128 MiB, as the Responses store may keep its
#     responses_store_max_bytes of 64 MiB of the stored inputs): "comes back to within a
#     small margin". Measured: +0.3 to +46 MiB (memory: +78 MiB).
# An attack whose gateway passes --rss-abort MiB (default 3072) is stopped there and fails.
#   scripts/hostile.sh [--seconds N] [--only NAME[,NAME...]] [--settle SECS] [--rss-abort MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin lingma-gateway --example hostile
echo "# $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%d)"
exec target/release/examples/hostile --bin target/release/lingma-gateway "$@"
