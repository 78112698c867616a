#!/usr/bin/env bash
# End-to-end checks with real, unmodified clients (../shared/clients) against the gateway
# running on the bundled Lingma simulator.
#
#   scripts/e2e.sh [path/to/lingma-gateway]      (default: target/debug/lingma-gateway)
#
# Env: SHARED (default ../shared), EXPECT_DIALECT (cosy or acp: both instances must speak it;
# LINGMA_SIM_DIALECT=acp makes the simulator ACP-only), CLIENT_CHECKS (default "openai_sdk anthropic_sdk
# claude_code codex codex_chat"), OPENAI_CHECKS / ANTHROPIC_CHECKS / CLAUDE_CHECKS /
# CODEX_CHECKS (each script's CHECKS), KEEP_LOGS=1.
# Starts the gateway on a free port with an API key, waits for /healthz, runs each client
# script, then stops the gateway with SIGTERM and checks it exited cleanly. Exit status is
# non-zero if any client check failed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-$ROOT/target/debug/lingma-gateway}"
SHARED="${SHARED:-$ROOT/../shared}"
CLIENTS="$SHARED/clients"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lingma-e2e.XXXXXX")"
LOG="$WORK/gateway.log"
KEY="sk-e2e-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
GW_PID=""

cleanup() {
  if [ -n "$GW_PID" ] && kill -0 "$GW_PID" 2>/dev/null; then
    kill -TERM "$GW_PID" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
  fi
  if [ "${KEEP_LOGS:-0}" = 1 ]; then echo "# logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

[ -x "$BIN" ] || { echo "no gateway binary at $BIN (cargo build first)"; exit 2; }
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"   # we cd into $WORK below
cd "$WORK"
LINGMA_GATEWAY_API_KEYS="$KEY" "$BIN" serve --simulator --port 0 --work-dir "$WORK/lingma" --instances 2 \
  >"$LOG" 2>&1 &
GW_PID=$!

ADDR=""
for _ in $(seq 1 200); do
  ADDR=$(sed -n 's/.*listening on http:\/\/\([0-9.:]*\).*/\1/p' "$LOG" | head -n1)
  [ -n "$ADDR" ] && break
  kill -0 "$GW_PID" 2>/dev/null || { echo "gateway exited:"; cat "$LOG"; exit 1; }
  sleep 0.1
done
[ -n "$ADDR" ] || { echo "gateway did not report its address"; cat "$LOG"; exit 1; }
for _ in $(seq 1 300); do
  curl -fsS "http://$ADDR/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://$ADDR/healthz" >/dev/null || { echo "gateway never became healthy"; cat "$LOG"; exit 1; }
# Which Lingma dialect each instance speaks (EXPECT_DIALECT: every instance must speak it).
dialects=""
for _ in $(seq 1 100); do
  dialects="$(curl -fsS "http://$ADDR/healthz" | grep -o '"dialect":"[a-z]*"' | sort | uniq -c | tr -s ' ' | tr '\n' ' ')"
  [ -z "${EXPECT_DIALECT:-}" ] && break
  [ "$dialects" = " 2 \"dialect\":\"$EXPECT_DIALECT\" " ] && break
  sleep 0.1
done
echo "# gateway on http://$ADDR (simulator, 2 instances; dialects:$dialects)"
if [ -n "${EXPECT_DIALECT:-}" ] && [ "$dialects" != " 2 \"dialect\":\"$EXPECT_DIALECT\" " ]; then
  echo "FAIL: expected both instances on the $EXPECT_DIALECT dialect, /healthz says:$dialects"; exit 1
fi

# The simulator's plain answers contain "Lingma simulator"; after a tool round trip it answers
# "Tool result received: <the result>", so EXPECT/EXPECT_TOOL make every check strict.
# Claude Code runs with its own default model name (model_aliases sends claude-* to the
# default model). It cannot force a tool: its prompt carries the simulator's directives, which make
# the simulator call Bash with a command whose output (SIM-TOOL-42) proves a shell ran it.
CC_TOOL_PROMPT='Use the Bash tool to run the command: echo SIM-TOOL-$((6*7)) and then tell me what it printed. [[sim:tool=Bash]] [[sim:cmd=echo SIM-TOOL-$((6*7))]]'
# Codex likewise: its shell tool is exec_command on the Responses wire (Codex 0.169) and
# shell (command as an argv array) on the legacy chat wire (Codex 0.94).
codex_prompt() { echo "Run the shell command: echo SIM-TOOL-\$((6*7)) and tell me what it printed. [[sim:tool=$1]] [[sim:cmd=echo SIM-TOOL-\$((6*7))]]"; }
run_codex() {  # $1 = wire api, $2 = shell tool name
  BASE_URL="http://$ADDR" API_KEY="$KEY" MODEL="${MODEL:-auto}" WIRE_API="$1" EXPECT="Lingma simulator" \
    TOOL_PROMPT="$(codex_prompt "$2")" EXPECT_TOOL="SIM-TOOL-42" EXPECT_TOOL_OUTPUT="SIM-TOOL-42" TOOL_STRICT=1 \
    CHECKS="${CODEX_CHECKS:-text,tool}" TIMEOUT="${CODEX_TIMEOUT:-120}" \
    "$CLIENTS/run_codex.sh"
}
failed=0
for client in ${CLIENT_CHECKS:-openai_sdk anthropic_sdk claude_code codex codex_chat}; do
  echo "# --- $client"
  case "$client" in
    openai_sdk)
      BASE_URL="http://$ADDR" API_KEY="$KEY" MODEL="${MODEL:-auto}" EXPECT="Lingma simulator" \
        EXPECT_TOOL="sunny, 21C" \
        CHECKS="${OPENAI_CHECKS:-models,chat,chat_stream,chat_tools,chat_tools_stream,responses,responses_stream,responses_tools}" \
        "$CLIENTS/run_openai_sdk.sh" || failed=1 ;;
    anthropic_sdk)
      for auth in sdk x-api-key; do
        BASE_URL="http://$ADDR" API_KEY="$KEY" AUTH="$auth" MODEL="${MODEL:-auto}" EXPECT="Lingma simulator" \
          EXPECT_TOOL="sunny, 21C" \
          CHECKS="${ANTHROPIC_CHECKS:-models,messages,messages_stream,tools,tools_stream,count_tokens}" \
          "$CLIENTS/run_anthropic_sdk.sh" || failed=1
      done ;;
    claude_code)
      BASE_URL="http://$ADDR" API_KEY="$KEY" MODEL="${CLAUDE_MODEL:-}" EXPECT="Lingma simulator" \
        TOOL_PROMPT="$CC_TOOL_PROMPT" EXPECT_TOOL="SIM-TOOL-42" EXPECT_TOOL_OUTPUT="SIM-TOOL-42" TOOL_STRICT=1 \
        CHECKS="${CLAUDE_CHECKS:-text,tool}" TIMEOUT="${CLAUDE_TIMEOUT:-120}" \
        "$CLIENTS/run_claude_code.sh" || failed=1 ;;
    codex) run_codex responses exec_command || failed=1 ;;
    codex_chat) run_codex chat shell || failed=1 ;;
    *) echo "unknown client $client"; failed=1 ;;
  esac
done

kill -TERM "$GW_PID"
if wait "$GW_PID"; then echo "# gateway stopped cleanly"; else echo "gateway exit status $?"; failed=1; fi
GW_PID=""
if grep -q "$KEY" "$LOG"; then echo "FAIL the API key appears in the gateway log"; failed=1; fi
if [ $failed -ne 0 ]; then echo "--- gateway log (tail)"; tail -n 60 "$LOG"; fi
exit $failed
