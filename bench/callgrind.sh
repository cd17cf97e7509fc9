#!/usr/bin/env bash
# Instructions per `tools/call` through Warrant, counted by callgrind.
#
# Wall-clock numbers move with whatever else runs on the machine; instruction counts
# do not. This starts `bench_upstream`, starts Warrant under
# `valgrind --tool=callgrind` with instrumentation off, switches it on once Warrant
# serves, drives `tools/call` with `warrant_bench` (one worker by default, no
# warm-up), and divides the instructions Warrant executed by the calls made.
# Kernel time (syscalls, scheduling) is not counted: compare syscalls with strace.
# valgrind does not emulate the CPU's SHA extensions, so SHA-256 (the token's cache key)
# runs its portable code here: tens of instructions per byte of token, several times
# what the same hash costs natively on a CPU with SHA-NI.
#
# Usage: bench/callgrind.sh   (release binaries must be built; see bench/run.sh)
#
# Environment (all optional):
#   CG_UPSTREAM_MODE=sse   the upstream's kind (bench_upstream --mode): sse (sessions,
#                          answers as SSE), stateless (JSON, no session id) or json
#   CG_GATEWAY=token       token: the default config, every call with a real access token
#                          minted by target/release/bench_token (verify, revocation and the
#                          decision are counted); none: mcp.authorization = "none"; keyed:
#                          as token, the upstream with `auth.mode = "person_key"` (the
#                          person's own connection, their key from the vault injected)
#   CG_DURATION=10s        how long to drive calls (under callgrind)
#   CG_CONCURRENCY=1       workers
#   CG_OUT=                keep the callgrind profile at this path (for callgrind_annotate)
#   WARRANT_BIN=target/release/warrant
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/lib.sh"
cd "$ROOT"

GATEWAY=${CG_GATEWAY:-token}
UPSTREAM_MODE=${CG_UPSTREAM_MODE:-sse}
DURATION=${CG_DURATION:-10s}
CONCURRENCY=${CG_CONCURRENCY:-1}
RELEASE_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
WARRANT=${WARRANT_BIN:-$RELEASE_DIR/warrant}
BENCH=$RELEASE_DIR/warrant_bench
UPSTREAM=$RELEASE_DIR/bench_upstream
TOKEN_TOOL=$RELEASE_DIR/bench_token
case $GATEWAY in
    none | token | keyed) ;;
    *) echo "CG_GATEWAY must be none, token or keyed" >&2; exit 2 ;;
esac
case $UPSTREAM_MODE in
    sse | stateless | json) ;;
    *) echo "CG_UPSTREAM_MODE must be sse, stateless or json" >&2; exit 2 ;;
esac
if [[ $GATEWAY != none && ! -x $TOKEN_TOOL ]]; then
    echo "missing $TOKEN_TOOL: cargo build --release -p warrant-fixtures --features token --bin bench_token" >&2
    exit 1
fi

command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/warrant-callgrind.XXXXXX")
PIDS=()
cleanup() {
    stop_pids "${PIDS[@]}"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$UPSTREAM" --listen 127.0.0.1:0 --mode "$UPSTREAM_MODE" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
UPSTREAM_URL=$(wait_for_url "$WORK/upstream.log" "${PIDS[0]}" 60) || {
    cat "$WORK/upstream.log" >&2
    exit 1
}

mkdir -p "$WORK/data"
{
    printf '[upstreams.bench]\nurl = "%s"\ntrust_annotations = true\n' "$UPSTREAM_URL"
    if [[ $GATEWAY == none ]]; then
        printf '\n[mcp]\nauthorization = "none"\n'
    fi
    if [[ $GATEWAY == keyed ]]; then
        printf '\n[upstreams.bench.auth]\nmode = "person_key"\n'
    fi
} >"$WORK/warrant.toml"
# Below the ephemeral range (32768 and up on Linux), where connections of earlier runs linger.
port=$((20000 + RANDOM % 12000))
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.out" \
    "$WARRANT" serve --config "$WORK/warrant.toml" --listen "127.0.0.1:$port" \
    --data-dir "$WORK/data" >"$WORK/warrant.log" 2>&1 &
WARRANT_PID=$!
PIDS+=("$WARRANT_PID")
base=http://127.0.0.1:$port
for _ in $(seq 600); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/healthz" || true) == 200 ]] && break
    kill -0 "$WARRANT_PID" 2>/dev/null || { cat "$WORK/warrant.log" >&2; exit 1; }
    sleep 0.2
done

HEADERS=()
if [[ $GATEWAY != none ]]; then
    person_key=()
    if [[ $GATEWAY == keyed ]]; then
        person_key=(--person-key bench=bench-person-key-3f9a7c2e)
    fi
    token=$("$TOKEN_TOOL" --config "$WORK/warrant.toml" --data-dir "$WORK/data" --url "$base/mcp" \
        "${person_key[@]}")
    HEADERS+=(--header "Authorization: Bearer $token")
    # One call before counting: the token's first verification (signatures, identity)
    # and its first decision are a cost per token, not per call.
    "$BENCH" --url "$base/mcp" --tool bench__echo --concurrency 1 --duration 1s \
        --warmup 0s --timeout 30s "${HEADERS[@]}" >&2 || true
fi

callgrind_control -i on "$WARRANT_PID" >/dev/null 2>&1
callgrind_control -z "$WARRANT_PID" >/dev/null 2>&1
status=0
"$BENCH" --url "$base/mcp" --tool bench__echo --concurrency "$CONCURRENCY" \
    --duration "$DURATION" --warmup 0s --timeout 30s --json "${HEADERS[@]}" >"$WORK/report.json" \
    || status=$?
callgrind_control -d "$WARRANT_PID" >/dev/null 2>&1
callgrind_control -i off "$WARRANT_PID" >/dev/null 2>&1

if [[ $status != 0 ]]; then
    echo "calls failed:" >&2
    grep -A3 '"first_errors"' "$WORK/report.json" >&2 || true
    tail -n 5 "$WORK/warrant.log" >&2
fi
calls=$(grep -o '"calls": *[0-9]*' "$WORK/report.json" | head -1 | grep -o '[0-9]*$')
profile=$(ls -t "$WORK"/callgrind.out* | grep -v '\.out$' | head -1 || true)
[[ -n $profile ]] || profile=$WORK/callgrind.out
instructions=$(grep -m1 '^totals:' "$profile" | awk '{print $2}')
[[ -n $instructions ]] || instructions=$(grep -m1 '^summary:' "$profile" | awk '{print $2}')
if [[ -n ${CG_OUT:-} ]]; then
    cp "$profile" "$CG_OUT"
fi
awk -v u="$UPSTREAM_MODE" -v g="$GATEWAY" -v i="$instructions" -v c="$calls" -v w="$CONCURRENCY" 'BEGIN {
    printf "upstream %s, gateway %s, concurrency %d: %d calls, %d instructions, %.0f instructions per call\n", u, g, w, c, i, i / c
}'
