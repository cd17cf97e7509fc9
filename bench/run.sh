#!/usr/bin/env bash
# Benchmark of Warrant's per-call path (one `tools/call`).
#
# Builds the release binaries, starts `bench_upstream` (an MCP server with one
# `echo` tool) on loopback, and measures `tools/call` with `warrant_bench`:
# straight against the upstream ("direct") and, if target/release/warrant
# exists, through Warrant ("via Warrant"). Direct and gateway runs alternate,
# BENCH_ROUNDS times; the Markdown table at the end shows medians.
#
# Usage: bench/run.sh [> report.md]   (from anywhere; everything stays on 127.0.0.1)
# Progress and per-run tables go to stderr, the final Markdown report to stdout.
#
# Environment (all optional):
#   BENCH_CONCURRENCY=1,8,64   concurrency levels
#   BENCH_DURATION=10s         measured window per level
#   BENCH_WARMUP=2s            warm-up per level
#   BENCH_ROUNDS=3             direct/gateway run pairs (medians are taken over them)
#   BENCH_UPSTREAM_MODE=json   bench_upstream --mode: json (application/json) or sse
#   BENCH_BUILD=1              0 skips `cargo build --release`
#   BENCH_AUTHORIZATION=       Authorization header value for calls through Warrant
#                              (e.g. "Bearer <token>")
#   BENCH_TOKEN_CMD=           command that prints a bearer token once Warrant runs (sent as
#                              "Authorization: Bearer <token>"); it sees WARRANT_BENCH_CONFIG,
#                              WARRANT_BENCH_DATA_DIR and WARRANT_BENCH_URL
#   BENCH_WARRANT_CONFIG_EXTRA=  TOML appended to the generated Warrant config
#   BENCH_WARRANT_START_TIMEOUT=30  seconds to wait for Warrant's /healthz
#   BENCH_OUT=                 also write the Markdown report to this file
#   BENCH_KEEP=0               1 keeps the work directory (logs, JSON reports)
#   WARRANT_BIN=target/release/warrant
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CONCURRENCY=${BENCH_CONCURRENCY:-1,8,64}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
ROUNDS=${BENCH_ROUNDS:-3}
UPSTREAM_MODE=${BENCH_UPSTREAM_MODE:-json}
BUILD=${BENCH_BUILD:-1}
AUTHORIZATION=${BENCH_AUTHORIZATION:-}
START_TIMEOUT=${BENCH_WARRANT_START_TIMEOUT:-30}
RELEASE_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
WARRANT=${WARRANT_BIN:-$RELEASE_DIR/warrant}
BENCH=$RELEASE_DIR/warrant_bench
UPSTREAM=$RELEASE_DIR/bench_upstream

WORK=$(mktemp -d "${TMPDIR:-/tmp}/warrant-bench.XXXXXX")
STARTED_PIDS=() # servers, stopped on exit
BENCH_PID=""    # the warrant_bench run in progress, if any

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() {
    local pid
    if [[ -n $BENCH_PID ]]; then
        kill -TERM "$BENCH_PID" 2>/dev/null || true
        wait "$BENCH_PID" 2>/dev/null || true
    fi
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        # Up to 5 s for a graceful exit, then SIGKILL.
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for_url LOGFILE PID SECONDS: prints the first http:// URL the process logs.
wait_for_url() {
    local file=$1 pid=$2 seconds=$3 url
    for _ in $(seq $((seconds * 10))); do
        url=$(grep -o -m1 'http://[^[:space:]"]*' "$file" 2>/dev/null || true)
        if [[ -n $url ]]; then
            printf '%s\n' "$url"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# http_status URL: the HTTP status of a GET, or 000.
http_status() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || echo 000
}

# free_port: a loopback TCP port nobody listens on right now.
free_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    return 1
}

# bench LABEL URL TOOL PID OUT [ARGS...]: one warrant_bench run, JSON report saved
# to OUT; its table goes to stderr, so stdout carries only the final Markdown.
# It runs in the background so that a signal interrupts `wait` at once.
bench() {
    local label=$1 url=$2 tool=$3 pid=$4 out=$5 status=0
    shift 5
    "$BENCH" --url "$url" --tool "$tool" --pid "$pid" --label "$label" \
        --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" \
        --save "$out" "$@" >&2 &
    BENCH_PID=$!
    wait "$BENCH_PID" || status=$?
    BENCH_PID=""
    return "$status"
}

# --- build -------------------------------------------------------------------
GATEWAY_BUILT=1
if [[ $BUILD == 1 ]]; then
    log "building release binaries"
    # The bench tools alone first, so a broken gateway (or another fixture)
    # does not stop the direct measurement.
    cargo build --release -p warrant-fixtures --bin bench_upstream --bin warrant_bench \
        || die "building the benchmark tools failed"
    if ! cargo build --release -p warrant-proxy; then
        log "warning: building warrant-proxy failed; only direct runs"
        GATEWAY_BUILT=0
    fi
fi
[[ -x $BENCH && -x $UPSTREAM ]] || die "missing $BENCH or $UPSTREAM (run with BENCH_BUILD=1)"
command -v curl >/dev/null || die "curl is needed to probe Warrant's /healthz"

# --- upstream ----------------------------------------------------------------
"$UPSTREAM" --listen 127.0.0.1:0 --mode "$UPSTREAM_MODE" >"$WORK/upstream.log" 2>&1 &
UPSTREAM_PID=$!
STARTED_PIDS+=("$UPSTREAM_PID")
UPSTREAM_URL=$(wait_for_url "$WORK/upstream.log" "$UPSTREAM_PID" 10) \
    || { cat "$WORK/upstream.log" >&2; die "bench_upstream did not start"; }
log "upstream: $UPSTREAM_URL (pid $UPSTREAM_PID, mode $UPSTREAM_MODE)"

# --- gateway -----------------------------------------------------------------
GATEWAY=0
GATEWAY_NOTE=""
# skip_gateway REASON: no runs through Warrant; the reason goes into the report.
skip_gateway() {
    GATEWAY_NOTE="not measured: $1"
    log "Warrant $GATEWAY_NOTE; only direct runs"
    return 1
}
start_gateway() {
    [[ $GATEWAY_BUILT == 1 ]] || skip_gateway "building warrant-proxy failed" || return 1
    [[ -x $WARRANT ]] || skip_gateway "no Warrant binary at $WARRANT" || return 1
    local config=$WORK/warrant.toml data=$WORK/warrant-data port base
    mkdir -p "$data"
    {
        printf '[upstreams.bench]\nurl = "%s"\n' "$UPSTREAM_URL"
        if [[ -n ${BENCH_WARRANT_CONFIG_EXTRA:-} ]]; then
            printf '\n%s\n' "$BENCH_WARRANT_CONFIG_EXTRA"
        fi
    } >"$config"
    port=$(free_port) || skip_gateway "no free loopback port" || return 1
    "$WARRANT" serve --config "$config" --listen "127.0.0.1:$port" --data-dir "$data" \
        >"$WORK/warrant.log" 2>&1 &
    WARRANT_PID=$!
    STARTED_PIDS+=("$WARRANT_PID")
    if ! base=$(wait_for_url "$WORK/warrant.log" "$WARRANT_PID" "$START_TIMEOUT"); then
        tail -n 40 "$WORK/warrant.log" >&2
        skip_gateway "it did not print its URL (its log is above)" || return 1
    fi
    # The printed URL may be the base or the /mcp endpoint.
    base=${base%/}
    base=${base%/mcp}
    for _ in $(seq $((START_TIMEOUT * 10))); do
        [[ $(http_status "$base/healthz") == 200 ]] && break
        kill -0 "$WARRANT_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [[ $(http_status "$base/healthz") != 200 ]]; then
        tail -n 40 "$WORK/warrant.log" >&2
        skip_gateway "$base/healthz never answered 200 (its log is above)" || return 1
    fi
    WARRANT_URL=$base/mcp
    log "Warrant: $WARRANT_URL (pid $WARRANT_PID)"

    if [[ -n ${BENCH_TOKEN_CMD:-} ]]; then
        local token
        token=$(WARRANT_BENCH_CONFIG=$config WARRANT_BENCH_DATA_DIR=$data \
            WARRANT_BENCH_URL=$WARRANT_URL bash -c "$BENCH_TOKEN_CMD") \
            || skip_gateway "BENCH_TOKEN_CMD failed" || return 1
        AUTHORIZATION="Bearer $token"
    fi
}
if start_gateway; then
    GATEWAY=1
fi

VIA_ARGS=()
if [[ -n $AUTHORIZATION ]]; then
    VIA_ARGS+=(--header "Authorization: $AUTHORIZATION")
fi

# --- runs --------------------------------------------------------------------
DIRECT_REPORTS=()
VIA_REPORTS=()
for round in $(seq "$ROUNDS"); do
    log "round $round/$ROUNDS: direct"
    bench "direct-$round" "$UPSTREAM_URL" echo "$UPSTREAM_PID" "$WORK/direct-$round.json" \
        || die "direct run $round failed"
    DIRECT_REPORTS+=(--direct "$WORK/direct-$round.json")

    if [[ $GATEWAY == 1 ]]; then
        log "round $round/$ROUNDS: via Warrant"
        if bench "via-$round" "$WARRANT_URL" bench__echo "$WARRANT_PID" \
            "$WORK/via-$round.json" "${VIA_ARGS[@]}"; then
            VIA_REPORTS+=(--via "$WORK/via-$round.json")
        else
            GATEWAY_NOTE="run $round through Warrant failed (see the errors above); no more gateway runs"
            log "warning: $GATEWAY_NOTE"
            # A run that measured but saw errors still reports; keep it.
            [[ -s $WORK/via-$round.json ]] && VIA_REPORTS+=(--via "$WORK/via-$round.json")
            tail -n 20 "$WORK/warrant.log" >&2
            GATEWAY=0
        fi
    fi
done

# --- report ------------------------------------------------------------------
cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
{
    printf '## Warrant per-call benchmark\n\n'
    printf -- '- machine: %s CPUs, %s, Linux %s\n' "$(nproc)" "${cpu_model:-unknown CPU}" "$(uname -r)"
    printf -- '- upstream: bench_upstream --mode %s (echo tool); load: warrant_bench, one keep-alive\n' \
        "$UPSTREAM_MODE"
    printf '  connection and MCP session per worker; warm-up %s, window %s per level; rounds: %s\n' \
        "$WARMUP" "$DURATION" "$ROUNDS"
    printf -- '- load generator, upstream and Warrant share the same %s CPUs\n' "$(nproc)"
    if [[ -n $GATEWAY_NOTE ]]; then
        printf -- '- **Warrant: %s**\n' "$GATEWAY_NOTE"
    fi
    printf '\n'
    "$BENCH" compare "${DIRECT_REPORTS[@]}" "${VIA_REPORTS[@]}"
} >"$WORK/report.md"
cat "$WORK/report.md"
if [[ -n ${BENCH_OUT:-} ]]; then
    cp "$WORK/report.md" "$BENCH_OUT"
fi
