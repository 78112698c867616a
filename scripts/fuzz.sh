#!/usr/bin/env bash
# Longer fuzzing with the property tests of src/fuzz/ (the LSP frame decoder and the OpenAI,
# Responses and Anthropic request decoders): release build with overflow checks, a fresh
# random seed each round, every property running until the round's time is up.
#
#   scripts/fuzz.sh [SECONDS]            (default 300)
#
# Env: ROUND_SECS (default 50, under libtest's 60 s "running for over" notices): length of a
# round; each round starts from a new seed.
# A failing case prints its own seed and input; replay it (in any build) with
#   LINGMA_FUZZ_SEED=<seed> LINGMA_FUZZ_ITERS=1 cargo test --lib <property>
# Exit status: 0 when every round passed, 1 at the first failure.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
TOTAL="${1:-300}"
ROUND="${ROUND_SECS:-50}"
case "$TOTAL$ROUND" in
  *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]  (ROUND_SECS=N)" >&2; exit 2 ;;
esac

# Arithmetic overflow and debug assertions fail a case, as in `cargo test`, at release speed.
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
export CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true
# The properties, not the runner's own tests (one of which fails a property on purpose).
run() { cargo test --release --lib -q fuzz:: -- --skip fuzz::tests "$@"; }
echo "# building (release, overflow checks on)"
cargo test --release --lib --no-run -q

end=$((SECONDS + TOTAL))
round=0
while ((SECONDS < end)); do
  left=$((end - SECONDS))
  secs=$((left < ROUND ? left : ROUND))
  seed="$(od -An -N8 -tu8 /dev/urandom | tr -d ' \n')"
  round=$((round + 1))
  echo "# round $round: LINGMA_FUZZ_SEED=$seed, ${secs}s per property"
  # All properties at once, so a round takes its time whatever the number of cores.
  if ! LINGMA_FUZZ_SEED="$seed" LINGMA_FUZZ_SECS="$secs" run --nocapture --test-threads=64; then
    echo "# FAILED in round $round (first seed $seed): replay the failing case with the" \
      "LINGMA_FUZZ_SEED=... command above" >&2
    exit 1
  fi
done
echo "# $round round(s), no failure"
