#!/usr/bin/env bash
# Scale-out check: two gateways behind Debian's nginx, configured with
# scripts/deploy/nginx.conf (the same file, its upstream servers, listen and access_log
# replaced).
#
#   scripts/scaleout.sh [path/to/lingma-gateway]      (default: target/debug/lingma-gateway)
#
# Env: NGINX (default /usr/sbin/nginx; `apt-get install nginx` when it is missing),
# KEEP_LOGS=1 (keep the temporary directory with every log).
#
# Starts two gateways on the bundled simulator (free ports, temporary work dirs, an API
# key) and nginx in front of them (prefix, pid, temp and log paths in a temporary
# directory, `daemon off`), then checks through nginx:
#   a) affinity: multi-turn conversations, each sent with one affinity header (one per
#      kind the gateway reads), stay on one gateway: every turn's request id is in that
#      gateway's access log, and the simulator's [[sim:turn]] answers count 1, 2, 3 on one
#      Lingma session, which happens only if each turn reached the gateway that remembers
#      the conversation. A control sends a next turn to the other gateway directly: a
#      session-cache miss, still answered (turn 1 of a new session);
#   b) spread: requests with distinct affinity values, and with none, reach both gateways
#      (each value twice, both times on the same gateway);
#   c) streaming: chat completions and Anthropic messages arrive through nginx as SSE,
#      event by event while the simulator is still producing;
#   d) draining: a gateway stopped with SIGTERM while it streams finishes that stream, and
#      the requests nginx would send it meanwhile are answered by the other gateway;
#   e) smuggling: bodies the gateway answers without reading, each hiding a request after
#      1 MiB of padding (for /internal/, an unfinished head, a slow chat), never yield a
#      second request, and the clients that reuse nginx's pooled connection after them get
#      their own answers;
# plus: the API key is passed through (no key: the gateway's 401), /internal/ is not
# exposed, each gateway's /internal/stats agrees with its access log, nginx's log names
# the same gateway as the gateways' logs, no log contains the key, and every gateway exits
# 0. Exits non-zero with a message on the first failure; stops and reaps everything it
# started.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-$ROOT/target/debug/lingma-gateway}"
EXAMPLE="$ROOT/scripts/deploy/nginx.conf"
NGINX="${NGINX:-/usr/sbin/nginx}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lingma-scaleout.XXXXXX")"
NGX="$WORK/nginx"
OUT="$WORK/out"
KEY="sk-scaleout-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
RUN="$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')"   # makes ids unique per run
GW_PIDS=("" "")
GW_ADDR=("" "")
NGINX_PID=""
CURL_PID=""
LB=""
OK=0
start_time=$(date +%s)

# reap PID SECONDS: wait up to SECONDS for PID to exit; its exit status, 124 if it still runs.
reap() {
  local rc=0
  for _ in $(seq 1 $(( $2 * 10 ))); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$1" 2>/dev/null && return 124
  wait "$1" 2>/dev/null || rc=$?
  return $rc
}
# stop PID: SIGTERM, up to 30 s to exit (a gateway drains for up to shutdown_grace_sec,
# then stops its Lingmas), else SIGKILL; reaped either way. Returns its exit status.
stop() {
  local rc=0
  kill -TERM "$1" 2>/dev/null || true
  reap "$1" 30 || rc=$?
  if [ $rc = 124 ]; then
    echo "# process $1 ignored SIGTERM for 30 s: SIGKILL"
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
  return $rc
}
cleanup() {
  set +e
  for pid in "$CURL_PID" "$NGINX_PID" "${GW_PIDS[@]}"; do [ -z "$pid" ] || stop "$pid"; done
  # Only if a gateway had to be killed: its simulators, found by our unique work dir.
  for pid in $(ps -eo pid=,args= | grep -F "$WORK/" | grep -v grep | awk '{print $1}'); do
    echo "# stopping leftover process $pid"; kill -KILL "$pid" 2>/dev/null
  done
  if [ "$OK" != 1 ]; then
    for f in "$WORK"/gw0/gateway.log "$WORK"/gw1/gateway.log "$NGX"/error.log "$NGX"/access.log; do
      [ -s "$f" ] && { echo "--- ${f#"$WORK"/} (tail)"; tail -n 25 "$f"; }
    done
  fi
  if [ "${KEEP_LOGS:-0}" = 1 ]; then echo "# logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

fail() { echo "FAIL $*" >&2; exit 1; }
pass() { echo "PASS $*"; }

# --- prerequisites -----------------------------------------------------------------------
[ -x "$BIN" ] || fail "no gateway binary at $BIN (cargo build first)"
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
[ -f "$EXAMPLE" ] || fail "no nginx example at $EXAMPLE"
command -v curl >/dev/null || fail "curl is needed (apt-get install curl)"
if [ ! -x "$NGINX" ]; then
  [ "$NGINX" = /usr/sbin/nginx ] || fail "no nginx at $NGINX"
  [ "$(id -u)" = 0 ] || fail "nginx is not installed and this is not root: apt-get install nginx"
  echo "# installing Debian's nginx (package nginx provides /usr/sbin/nginx)"
  # Where no policy-rc.d forbids it, the package also starts the system's nginx service on
  # port 80; this script uses its own instance only and leaves that one alone.
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx; } \
    >"$WORK/apt.log" 2>&1 || { tail -n 20 "$WORK/apt.log"; fail "apt-get install nginx failed"; }
fi
echo "# $("$NGINX" -v 2>&1)"
mkdir -p "$NGX/temp" "$OUT"

# --- two gateways ------------------------------------------------------------------------
start_gateway() {  # $1 = index
  local dir="$WORK/gw$1"
  mkdir -p "$dir"
  # Its own directory as cwd (no ./gateway.ini), no config file from the environment.
  ( cd "$dir" && exec env -u LINGMA_GATEWAY_CONFIG LINGMA_GATEWAY_API_KEYS="$KEY" \
      "$BIN" serve --simulator --host 127.0.0.1 --port 0 --work-dir "$dir/lingma" --instances 1 ) \
    >"$dir/gateway.log" 2>&1 &
  GW_PIDS[$1]=$!
}
wait_gateway() {  # $1 = index; sets GW_ADDR[$1] once /healthz answers 200
  local log="$WORK/gw$1/gateway.log" addr=""
  for _ in $(seq 1 200); do
    addr=$(sed -n 's/.*listening on http:\/\/\([0-9.:]*\).*/\1/p' "$log" | head -n1)
    [ -n "$addr" ] && break
    kill -0 "${GW_PIDS[$1]}" 2>/dev/null || fail "gateway $1 exited at startup"
    sleep 0.1
  done
  [ -n "$addr" ] || fail "gateway $1 did not log its address"
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "http://$addr/healthz" 2>/dev/null && { GW_ADDR[$1]=$addr; return; }
    sleep 0.1
  done
  fail "gateway $1 on $addr never became healthy"
}
start_gateway 0
start_gateway 1
wait_gateway 0
wait_gateway 1
echo "# gateway 0 on ${GW_ADDR[0]}, gateway 1 on ${GW_ADDR[1]} (simulator, 1 instance each)"

# --- nginx around the example ------------------------------------------------------------
# The example with our two gateways as its upstream servers (the parameters of its first
# server line kept, the other lines dropped), our port, our access log. Refuses an example
# whose shape changed, rather than testing something else.
render() {  # $1 = port
  awk -v servers="${GW_ADDR[0]} ${GW_ADDR[1]}" -v listen="127.0.0.1:$1" -v alog="$NGX/access.log" '
    BEGIN { n = split(servers, addr, " ") }
    /^[ \t]*upstream[ \t]+lingma_gateways[ \t]*\{/ { inup = 1; print; next }
    inup && /^[ \t]*\}/ { inup = 0; print; next }
    inup && /^[ \t]*server[ \t]/ {
      if (!servers_done) {
        for (i = 1; i <= n; i++) { line = $0; sub(/server[ \t]+[^ \t;]+/, "server " addr[i], line); print line }
        servers_done = 1
      }
      next
    }
    /^[ \t]*listen[ \t]/ { sub(/listen[ \t]+[^;]*;/, "listen " listen ";"); listens++ }
    /^[ \t]*access_log[ \t]/ { sub(/access_log[ \t]+[^ \t;]+/, "access_log " alog); alogs++ }
    { print }
    END {
      if (!servers_done || listens != 1 || alogs != 1) {
        printf "example not as expected: upstream servers %s, listen lines %d, access_log lines %d\n",
          servers_done ? "found" : "missing", listens, alogs > "/dev/stderr"
        exit 1
      }
    }' "$EXAMPLE" >"$NGX/lingma-gateway.conf"
}
# The main configuration: everything nginx writes goes under $NGX.
user_line=""
if [ "$(id -u)" = 0 ]; then
  # As root, nginx's workers run as nobody; they must be able to reach their temp paths.
  user_line="user nobody nogroup;"
  chmod 711 "$WORK"; chmod 755 "$NGX"
fi
cat >"$NGX/nginx.conf" <<EOF
# Written by scripts/scaleout.sh: a throw-away nginx around scripts/deploy/nginx.conf.
$user_line
daemon off;
worker_processes 1;
pid $NGX/nginx.pid;
error_log $NGX/error.log notice;
events { worker_connections 512; }
http {
    client_body_temp_path $NGX/temp/client_body;
    proxy_temp_path $NGX/temp/proxy;
    fastcgi_temp_path $NGX/temp/fastcgi;
    uwsgi_temp_path $NGX/temp/uwsgi;
    scgi_temp_path $NGX/temp/scgi;
    include $NGX/lingma-gateway.conf;
}
EOF
free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$(( 20000 + RANDOM % 40000 ))
    if command -v ss >/dev/null; then
      [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ] && { echo "$p"; return; }
    elif ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"; return
    fi
  done
  return 1
}
for attempt in 1 2 3 4 5; do
  port=$(free_port) || fail "found no free port"
  render "$port" || fail "could not render $EXAMPLE"
  "$NGINX" -t -q -p "$NGX/" -c "$NGX/nginx.conf" -e "$NGX/error.log" \
    || fail "nginx -t refused the rendered example ($NGX/lingma-gateway.conf)"
  "$NGINX" -p "$NGX/" -c "$NGX/nginx.conf" -e "$NGX/error.log" &
  NGINX_PID=$!
  for _ in $(seq 1 100); do
    kill -0 "$NGINX_PID" 2>/dev/null || break
    curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null && { LB="127.0.0.1:$port"; break; }
    sleep 0.1
  done
  [ -n "$LB" ] && break
  if kill -0 "$NGINX_PID" 2>/dev/null; then fail "nginx runs but does not answer on port $port"; fi
  wait "$NGINX_PID" 2>/dev/null || true
  NGINX_PID=""
  grep -q "Address already in use" "$NGX/error.log" 2>/dev/null || fail "nginx did not start"
  echo "# port $port was taken meanwhile, trying another (attempt $attempt)"
done
[ -n "$LB" ] || fail "nginx could not bind a free port"
echo "# nginx on http://$LB (pid $NGINX_PID) in front of both"

# --- helpers -----------------------------------------------------------------------------
AUTH_H="Authorization: Bearer $KEY"   # the credential header post sends ("" = none)
# post PATH ID BODY [curl args...]: through nginx with X-Request-Id ID; prints the status,
# the body goes to $OUT/ID.
post() {
  local path=$1 id=$2 body=$3 a=(); shift 3
  [ -z "$AUTH_H" ] || a=(-H "$AUTH_H")
  curl -sS --max-time 30 -o "$OUT/$id" -w '%{http_code}' "http://$LB$path" "${a[@]}" \
    -H 'Content-Type: application/json' -H "X-Request-Id: $id" "$@" --data-binary "$body"
}
# Which gateway served each request, from the gateways' own access logs (`access: <id> …`).
# note ID ROUTE queues a request; settle waits until every queued one is logged (the line
# is written just after the last byte) and records it in SERVED and ROUTE_COUNT.
declare -A SERVED=()        # request id -> gateway
declare -A ROUTE_COUNT=()   # "gateway route" -> requests
declare -A PENDING=()       # request id -> route
declare -A LOGGED=()
note() { PENDING[$1]=$2; }
scan_logs() {  # LOGGED: request id -> 0, 1, or "both"
  local g id
  LOGGED=()
  for g in 0 1; do
    while read -r id; do
      if [ -n "${LOGGED[$id]:-}" ] && [ "${LOGGED[$id]}" != "$g" ]; then LOGGED[$id]=both; else LOGGED[$id]=$g; fi
    done < <(awk '$3 == "access:" { print $4 }' "$WORK/gw$g/gateway.log")
  done
}
settle() {
  local id g missing
  for _ in $(seq 1 100); do
    scan_logs
    missing=""
    for id in "${!PENDING[@]}"; do [ -n "${LOGGED[$id]:-}" ] || { missing=$id; break; }; done
    [ -z "$missing" ] && break
    sleep 0.05
  done
  [ -z "$missing" ] || fail "request $missing is in no gateway's access log"
  for id in "${!PENDING[@]}"; do
    g=${LOGGED[$id]}
    [ "$g" != both ] || fail "request $id is in both gateways' access logs"
    SERVED[$id]=$g
    ROUTE_COUNT["$g ${PENDING[$id]}"]=$(( ${ROUTE_COUNT["$g ${PENDING[$id]}"]:-0} + 1 ))
  done
  PENDING=()
}
turn_of() { grep -o 'turn [0-9]* of session [0-9a-f-]*' "$OUT/$1" | head -n1; }
json_str() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }

# --- a) affinity: conversations stay on one gateway --------------------------------------
# A conversation of three turns, each asking the simulator for its turn number in the Lingma
# session. Clients send the whole history every turn, except with previous_response_id.
# converse NAME API HEADER: API is chat | responses (whole input, store false, as Codex) |
# responses-chain (previous_response_id) | messages.
declare -A CONV_GW=() CONV_HIST=()
converse() {
  local name=$1 api=$2 header=$3 hist="" session="" prev="" q id code ans n s g body path ids=()
  for turn in 1 2 3; do
    q="{\"role\":\"user\",\"content\":\"$(json_str "Question $turn of $name. [[sim:turn]]")\"}"
    hist="${hist:+$hist,}$q"
    case "$api" in
      chat) path=/v1/chat/completions
        body="{\"model\":\"auto\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},$hist]}" ;;
      responses) path=/v1/responses
        body="{\"model\":\"auto\",\"store\":false,\"input\":[{\"role\":\"developer\",\"content\":\"Be brief.\"},$hist]}" ;;
      responses-chain) path=/v1/responses
        body="{\"model\":\"auto\",\"instructions\":\"Be brief.\",${prev:+\"previous_response_id\":\"$prev\",}\"input\":[$q]}" ;;
      messages) path=/v1/messages
        body="{\"model\":\"auto\",\"max_tokens\":256,\"system\":\"Be brief.\",\"messages\":[$hist]}" ;;
    esac
    id="sc-$RUN-$name-t$turn"
    ids+=("$id")
    code=$(post "$path" "$id" "$body" -H "$header")
    [ "$code" = 200 ] || fail "a) $name turn $turn: HTTP $code: $(head -c 300 "$OUT/$id")"
    note "$id" "$path"
    ans=$(turn_of "$id") || fail "a) $name turn $turn: no turn in the answer: $(head -c 300 "$OUT/$id")"
    n=$(echo "$ans" | awk '{print $2}'); s=$(echo "$ans" | awk '{print $5}')
    [ "$turn" = 1 ] && session=$s
    [ "$n" = "$turn" ] && [ "$s" = "$session" ] \
      || fail "a) $name turn $turn answered '$ans' (expected turn $turn of session $session): the conversation was not continued"
    hist="$hist,{\"role\":\"assistant\",\"content\":\"$(json_str "$ans")\"}"
    prev=$(grep -o '"id":"resp_[0-9a-f]*"' "$OUT/$id" | head -n1 | cut -d'"' -f4 || true)
  done
  settle
  for id in "${ids[@]}"; do
    g=${SERVED[$id]}
    [ "$g" = "${SERVED[${ids[0]}]}" ] || fail "a) $name: $id went to gateway $g, turn 1 to gateway ${SERVED[${ids[0]}]}"
  done
  CONV_GW[$name]=$g
  CONV_HIST[$name]=$hist
  pass "a) $name ($path, $header): 3 turns on gateway $g, answered as turns 1,2,3 of one Lingma session"
}
echo "# --- a) affinity ($(( $(date +%s) - start_time ))s)"
converse affinity chat "X-Session-Affinity: conv-$RUN-a"
converse codex chat "Session-Id: conv-$RUN-b"
converse codex-old responses "session_id: conv-$RUN-c"   # needs underscores_in_headers on
converse chain responses-chain "X-Session-Affinity: conv-$RUN-d"
AUTH_H="x-api-key: $KEY" converse claude-code messages "X-Claude-Code-Session-Id: conv-$RUN-e"

# Control: the next turn of the first conversation sent straight to the other gateway is a
# miss there (turn 1 of a new session: still an answer); through nginx it goes on (turn 4).
home=${CONV_GW[affinity]}; other=$(( 1 - home ))
hist="${CONV_HIST[affinity]},{\"role\":\"user\",\"content\":\"Question 4 of affinity. [[sim:turn]]\"}"
body="{\"model\":\"auto\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},$hist]}"
id="sc-$RUN-control-direct"
code=$(curl -sS --max-time 30 -o "$OUT/$id" -w '%{http_code}' "http://${GW_ADDR[$other]}/v1/chat/completions" \
  -H "$AUTH_H" -H 'Content-Type: application/json' -H "X-Request-Id: $id" --data-binary "$body")
ans=$(turn_of "$id") || true
[ "$code" = 200 ] && [[ "$ans" == "turn 1 of session "* ]] \
  || fail "a) control: turn 4 sent to gateway $other directly: HTTP $code '$ans' (expected a new session's turn 1)"
note "$id" /v1/chat/completions
id="sc-$RUN-control-lb"
code=$(post /v1/chat/completions "$id" "$body" -H "X-Session-Affinity: conv-$RUN-a")
ans=$(turn_of "$id") || true
[ "$code" = 200 ] && [[ "$ans" == "turn 4 of session "* ]] \
  || fail "a) control: turn 4 through nginx: HTTP $code '$ans' (expected turn 4)"
note "$id" /v1/chat/completions
settle
[ "${SERVED[$id]}" = "$home" ] || fail "a) control: turn 4 through nginx went to gateway ${SERVED[$id]}, not $home"
pass "a) control: turn 4 sent to the other gateway directly is a miss there ('turn 1' of a new session), through nginx it continues on gateway $home ('turn 4')"

# --- b) spread ---------------------------------------------------------------------------
echo "# --- b) spread ($(( $(date +%s) - start_time ))s)"
KEYS=40; PLAIN=40; MIN=6   # each gateway must get at least MIN of each kind (15 %)
keyed=(0 0); plain=(0 0)
for round in 1 2; do
  for k in $(seq 1 $KEYS); do
    id="sc-$RUN-key$k-r$round"
    code=$(post /v1/chat/completions "$id" '{"model":"auto","messages":[{"role":"user","content":"hi"}]}' \
      -H "X-Session-Affinity: user-$RUN-$k")
    [ "$code" = 200 ] || fail "b) keyed request $id: HTTP $code"
    note "$id" /v1/chat/completions
  done
done
for k in $(seq 1 $PLAIN); do
  id="sc-$RUN-plain$k"
  code=$(post /v1/chat/completions "$id" '{"model":"auto","messages":[{"role":"user","content":"hi"}]}')
  [ "$code" = 200 ] || fail "b) request $id without affinity: HTTP $code"
  note "$id" /v1/chat/completions
done
settle
for k in $(seq 1 $KEYS); do
  g=${SERVED[sc-$RUN-key$k-r1]}; g2=${SERVED[sc-$RUN-key$k-r2]}
  [ "$g" = "$g2" ] || fail "b) affinity value user-$RUN-$k went to gateway $g, then to gateway $g2"
  keyed[g]=$(( keyed[g] + 1 ))
done
for k in $(seq 1 $PLAIN); do
  g=${SERVED[sc-$RUN-plain$k]}; plain[g]=$(( plain[g] + 1 ))
done
[ "${keyed[0]}" -ge $MIN ] && [ "${keyed[1]}" -ge $MIN ] \
  || fail "b) $KEYS affinity values split ${keyed[0]}/${keyed[1]} between the gateways (each needs >= $MIN)"
pass "b) $KEYS affinity values, each sent twice: both times on the same gateway; values per gateway ${keyed[0]}/${keyed[1]}"
[ "${plain[0]}" -ge $MIN ] && [ "${plain[1]}" -ge $MIN ] \
  || fail "b) $PLAIN requests without affinity split ${plain[0]}/${plain[1]} (each gateway needs >= $MIN)"
pass "b) $PLAIN requests without an affinity header: ${plain[0]}/${plain[1]} per gateway"

# --- c) streaming through nginx ----------------------------------------------------------
echo "# --- c) streaming ($(( $(date +%s) - start_time ))s)"
# stream NAME PATH BODY [curl args...]: timestamps every line as it arrives.
stream() {
  local name=$1 path=$2 body=$3; shift 3
  local id="sc-$RUN-$name"
  curl -sS -N --max-time 30 -D "$OUT/$id.head" "http://$LB$path" -H 'Content-Type: application/json' \
    -H "X-Request-Id: $id" "$@" --data-binary "$body" |
    while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done >"$OUT/$id.lines"
  grep -qi '^content-type: text/event-stream' "$OUT/$id.head" \
    || fail "c) $name: not an event stream: $(head -n1 "$OUT/$id.head")"
}
# spread_of ID PATTERN: seconds between the first and the last line matching PATTERN.
spread_of() {
  { grep -E "^[0-9.,]+ $2" "$OUT/$1.lines" || true; } | tr ',' '.' | awk 'NR==1{a=$1} {b=$1} END{printf "%.2f", b-a}'
}
# 20 chunks, 100 ms apart: about 2 s from the first to the last if nothing holds them back.
stream chat-stream /v1/chat/completions \
  '{"model":"auto","stream":true,"messages":[{"role":"user","content":"Stream please [[sim:chunks=20]] [[sim:delay=100]]"}]}' \
  -H "$AUTH_H" -H "X-Session-Affinity: stream-$RUN"
id="sc-$RUN-chat-stream"
deltas=$(grep -c '"content":"c[0-9]' "$OUT/$id.lines" || true)
[ "$deltas" = 20 ] || fail "c) chat stream: $deltas content deltas, expected 20"
grep -v " $" "$OUT/$id.lines" | tail -n1 | grep -q "data: \[DONE\]" || fail "c) chat stream did not end with [DONE]"
t=$(spread_of "$id" 'data: \{')
awk -v t="$t" 'BEGIN{exit !(t >= 1.0)}' || fail "c) chat stream: its events arrived within ${t}s of each other: held back, not streamed"
note "$id" /v1/chat/completions
pass "c) chat completions stream: 20 deltas and [DONE] as SSE, first to last event ${t}s apart (streamed, not buffered)"

stream messages-stream /v1/messages \
  '{"model":"auto","max_tokens":256,"stream":true,"messages":[{"role":"user","content":"Stream please [[sim:chunks=10]] [[sim:delay=100]]"}]}' \
  -H "x-api-key: $KEY" -H 'anthropic-version: 2023-06-01' -H "X-Claude-Code-Session-Id: stream-$RUN"
id="sc-$RUN-messages-stream"
for ev in message_start content_block_start content_block_delta content_block_stop message_delta message_stop; do
  grep -q " event: $ev\$" "$OUT/$id.lines" || fail "c) messages stream has no $ev event"
done
t=$(spread_of "$id" 'event: content_block_delta')
awk -v t="$t" 'BEGIN{exit !(t >= 0.5)}' || fail "c) messages stream: deltas arrived within ${t}s: held back, not streamed"
note "$id" /v1/messages
settle
pass "c) Anthropic messages stream (x-api-key): every event type in order of arrival, deltas ${t}s apart"

# --- e) smuggling through nginx's pooled upstream connections ----------------------------
echo "# --- e) smuggling ($(( $(date +%s) - start_time ))s)"
# Each attack is a body the gateway answers without reading (POST /healthz: 405), sent
# through nginx on one affinity value so that the victims that follow reuse the same
# pooled upstream connection. Its body is 1 MiB of padding (more than any drain) and then
# a request nginx never saw: a complete one for /internal/ (blocked by nginx), an
# unfinished one that would take over the next request's head (and its key), and a slow
# chat whose answer would go to the next client. None may ever be parsed as a request:
# the smuggled request ids are in no gateway's log, and every victim gets its own answer.
smuggle_body() {  # smuggle_body FILE TAIL: 1 MiB of padding, then TAIL
  { head -c 1048576 /dev/zero | tr '\0' 'p'; printf '%b' "$2"; } >"$1"
}
attack_affinity="smuggle-$RUN"
ask='{"model":"auto","messages":[{"role":"user","content":"I am the victim VICTIM"}]}'
smuggle_body "$WORK/smuggle1" "GET /internal/stats HTTP/1.1\r\nHost: gw\r\nX-Request-Id: smuggled1-$RUN\r\n\r\n"
smuggle_body "$WORK/smuggle2" "GET /v1/models HTTP/1.1\r\nHost: gw\r\nX-Request-Id: smuggled2-$RUN\r\nX-Swallow: "
slow_chat='{"model":"auto","messages":[{"role":"user","content":"ATTACKER TEXT [[sim:chunks=5]] [[sim:delay=200]]"}]}'
smuggle_body "$WORK/smuggle3" "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n$AUTH_H\r\nX-Request-Id: smuggled3-$RUN\r\nContent-Type: application/json\r\nContent-Length: ${#slow_chat}\r\n\r\n$slow_chat"
victims=0
for n in 1 2 3; do
  code=$(post /healthz "sc-$RUN-attack$n" "@$WORK/smuggle$n" -H "X-Session-Affinity: $attack_affinity")
  [ "$code" = 405 ] || fail "e) attack $n: POST /healthz through nginx got HTTP $code, expected the gateway's 405"
  note "sc-$RUN-attack$n" /healthz
  for v in 1 2 3 4; do
    id="sc-$RUN-victim$n-$v"
    code=$(post /v1/chat/completions "$id" "${ask/VICTIM/$id}" -H "X-Session-Affinity: $attack_affinity")
    [ "$code" = 200 ] || fail "e) victim $id after attack $n: HTTP $code: $(head -c 300 "$OUT/$id")"
    grep -q "I am the victim $id" "$OUT/$id" \
      || fail "e) victim $id after attack $n got another request's answer: $(head -c 300 "$OUT/$id")"
    note "$id" /v1/chat/completions
    victims=$(( victims + 1 ))
  done
done
settle
g=${SERVED[sc-$RUN-attack1]}
for n in 1 2 3; do
  [ "${SERVED[sc-$RUN-attack$n]}" = "$g" ] || fail "e) the attacks went to different gateways"
  if grep -q "access: smuggled$n-$RUN " "$WORK"/gw0/gateway.log "$WORK"/gw1/gateway.log; then
    fail "e) the request smuggled in attack $n's body was served: $(grep -h "access: smuggled$n-$RUN " "$WORK"/gw*/gateway.log)"
  fi
done
pass "e) three smuggling bodies through nginx (a complete /internal/ request, an unfinished head, a slow chat, each after 1 MiB of padding the gateway never read): each got its 405 alone, no smuggled request reached a parser, and the $victims requests that reused the pooled connection after them each got their own answer"

# --- credentials and operator routes through nginx ---------------------------------------
code=$(AUTH_H="" post /v1/chat/completions "sc-$RUN-nokey" '{"model":"auto","messages":[{"role":"user","content":"hi"}]}')
[ "$code" = 401 ] && grep -q '"error"' "$OUT/sc-$RUN-nokey" \
  || fail "a request without a key got HTTP $code, expected the gateway's 401: $(head -c 200 "$OUT/sc-$RUN-nokey")"
note "sc-$RUN-nokey" /v1/chat/completions
settle
code=$(curl -sS -o /dev/null -w '%{http_code}' "http://$LB/internal/stats" -H "$AUTH_H")
[ "$code" = 404 ] || fail "/internal/stats through nginx: HTTP $code, the example should not expose it"
pass "credentials: no key gets the gateway's 401 through nginx; /internal/ is not exposed (404)"

# --- the gateways' own counts, and nginx's view ------------------------------------------
stats_count() {  # stats_count GATEWAY ROUTE: its /internal/stats count of ROUTE
  local stats
  stats=$(curl -fsS "http://${GW_ADDR[$1]}/internal/stats" -H "$AUTH_H") || fail "gateway $1: /internal/stats failed"
  { grep -o "\"$2\":[0-9]*" <<<"$stats" || echo ":0"; } | head -n1 | cut -d: -f2
}
for g in 0 1; do
  for route in /v1/chat/completions /v1/responses /v1/messages; do
    want=${ROUTE_COUNT["$g $route"]:-0}
    got=$(stats_count "$g" "$route")
    [ "$got" = "$want" ] || fail "gateway $g /internal/stats counts $got $route requests, its access log $want"
  done
done
declare -A UPSTREAM=()   # request id -> the gateway address nginx logged
while read -r rid up; do UPSTREAM[$rid]=$up; done < <(
  sed -n 's/.* upstream=\([^ ]*\) .* rid=\([^ ]*\)$/\2 \1/p' "$NGX/access.log")
checked=0
for id in "${!SERVED[@]}"; do
  [ "$id" = "sc-$RUN-control-direct" ] && continue   # did not go through nginx
  [ "${UPSTREAM[$id]:-}" = "${GW_ADDR[${SERVED[$id]}]}" ] \
    || fail "nginx logged $id as sent to '${UPSTREAM[$id]:-nothing}', but gateway ${SERVED[$id]} (${GW_ADDR[${SERVED[$id]}]}) served it"
  checked=$(( checked + 1 ))
done
pass "each gateway's /internal/stats matches its access log; nginx's upstream_addr names the same gateway for all $checked requests through it"

# --- d) draining -------------------------------------------------------------------------
echo "# --- d) draining ($(( $(date +%s) - start_time ))s)"
# A 3 s stream on gateway 0 (through an affinity value from b) that went there), then
# SIGTERM to gateway 0: the stream must finish, and requests with values that map to
# gateway 0 get a 503 there (it is draining), which nginx resends to gateway 1. The first
# carries a 1.2 MB body, more than client_body_buffer_size: nginx has spooled it to a
# temporary file and resends it from there (with proxy_request_buffering off it could not,
# and the client would get the 503).
k0s=()
for k in $(seq 1 $KEYS); do
  [ "${SERVED[sc-$RUN-key$k-r1]}" = 0 ] && k0s+=("$k")
done
id="sc-$RUN-drain-stream"
curl -sS -N --max-time 30 "http://$LB/v1/chat/completions" -H "$AUTH_H" -H 'Content-Type: application/json' \
  -H "X-Request-Id: $id" -H "X-Session-Affinity: user-$RUN-${k0s[0]}" --data-binary \
  '{"model":"auto","stream":true,"messages":[{"role":"user","content":"Long one [[sim:chunks=30]] [[sim:delay=100]]"}]}' \
  >"$OUT/$id" &
CURL_PID=$!
for _ in $(seq 1 50); do grep -q '"content":"c1' "$OUT/$id" 2>/dev/null && break; sleep 0.05; done
grep -q '"content":"c1' "$OUT/$id" || fail "d) the long stream did not start"
{ printf '{"model":"auto","messages":[{"role":"user","content":"A long question: '
  head -c 1200000 /dev/zero | tr '\0' 'x'; printf '"}]}'; } >"$WORK/big.json"
kill -TERM "${GW_PIDS[0]}"
for _ in $(seq 1 50); do grep -q "shutting down" "$WORK/gw0/gateway.log" && break; sleep 0.05; done
drained=0; retried=0
for k in "${k0s[@]:1:5}"; do
  rid="sc-$RUN-drain-key$k"
  body='{"model":"auto","messages":[{"role":"user","content":"hi"}]}'
  [ $drained = 0 ] && body="@$WORK/big.json"
  code=$(post /v1/chat/completions "$rid" "$body" -H "X-Session-Affinity: user-$RUN-$k")
  [ "$code" = 200 ] || fail "d) request $rid (its gateway is draining): HTTP $code: $(head -c 200 "$OUT/$rid")"
  # Answered by gateway 1; gateway 0 may have refused it first (503, then nginx resent it).
  for _ in $(seq 1 40); do grep -q "access: $rid " "$WORK/gw1/gateway.log" && break; sleep 0.05; done
  grep -q "access: $rid POST /v1/chat/completions 200 " "$WORK/gw1/gateway.log" \
    || fail "d) request $rid was not answered by gateway 1"
  if grep -q "access: $rid " "$WORK/gw0/gateway.log"; then
    grep -q "access: $rid POST /v1/chat/completions 503 " "$WORK/gw0/gateway.log" \
      || fail "d) the draining gateway answered $rid: $(grep "access: $rid " "$WORK/gw0/gateway.log")"
    retried=$(( retried + 1 ))
  elif [ $drained = 0 ]; then
    fail "d) the 1.2 MB request never reached the draining gateway, so its resending was not tested"
  fi
  drained=$(( drained + 1 ))
done
code=0; reap "$CURL_PID" 30 || code=$?
CURL_PID=""
[ "$code" = 0 ] || fail "d) the stream on the draining gateway failed (curl status $code)"
grep -q 'data: \[DONE\]' "$OUT/$id" && [ "$(grep -c '"content":"c[0-9]' "$OUT/$id")" = 30 ] \
  || fail "d) the stream on the draining gateway did not finish whole"
code=0; reap "${GW_PIDS[0]}" 30 || code=$?
[ "$code" != 124 ] || fail "d) gateway 0 still runs 30 s after SIGTERM"
GW_PIDS[0]=""
[ "$code" = 0 ] || fail "d) gateway 0 exited with status $code after SIGTERM"
pass "d) gateway 0 stopped with SIGTERM mid-stream: its stream finished (30 deltas, [DONE]), it exited 0, and $drained requests meant for it were answered by gateway 1: $retried refused with 503 by the draining gateway and resent by nginx (the first with a 1.2 MB body), the rest sent to gateway 1 at once"

# --- stop --------------------------------------------------------------------------------
stop "$NGINX_PID" || true; NGINX_PID=""
code=0; stop "${GW_PIDS[1]}" || code=$?
GW_PIDS[1]=""
[ "$code" = 0 ] || fail "gateway 1 exited with status $code after SIGTERM"
if grep -lF "$KEY" "$WORK"/gw0/gateway.log "$WORK"/gw1/gateway.log "$NGX"/access.log "$NGX"/error.log 2>/dev/null; then
  fail "the API key appears in the logs above"
fi
left=$(ps -eo pid=,args= | grep -F "$WORK" | grep -v grep || true)
[ -z "$left" ] || fail "processes left running: $left"
pass "nginx and both gateways stopped (gateways exit 0, every simulator reaped); the key is in no log"
OK=1
echo "# scaleout: all checks passed in $(( $(date +%s) - start_time ))s"
