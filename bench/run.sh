#!/usr/bin/env bash
# Benchmark of Warrant's per-call path (one `tools/call`).
#
# Builds the release binaries and, for each kind of upstream in
# BENCH_UPSTREAM_MODES, starts `bench_upstream` (an MCP server with one `echo`
# tool) on loopback and measures `tools/call` with `warrant_bench`: straight
# against the upstream ("direct") and through two Warrants in front of the same
# upstream: "none" (`mcp.authorization = "none"`, the proxy alone) and "token"
# (the default: every request carries a real Warrant access token, minted by
# `bench_token` for this gateway, so each call is verified, checked for
# revocation and decided). Direct and gateway runs alternate, BENCH_ROUNDS times;
# the Markdown report at the end shows medians, one section per upstream kind.
#
# Upstream kinds (bench_upstream --mode):
#   sse        rmcp's sessions (`Mcp-Session-Id`), every answer a text/event-stream
#   stateless  rmcp's stateless service, application/json, no `Mcp-Session-Id` ever
#   json       rmcp's stateless service, application/json, behind a thin layer that
#              hands out session ids (the benchmark's upstream before issue 11)
#
# Usage: bench/run.sh [> report.md]   (from anywhere; everything stays on 127.0.0.1)
# Progress and per-run tables go to stderr, the final Markdown report to stdout.
#
# Environment (all optional):
#   BENCH_UPSTREAM_MODES=sse,stateless  upstream kinds measured, in turn (see above)
#   BENCH_UPSTREAM_MODE=       one kind only (the older knob; BENCH_UPSTREAM_MODES wins)
#   BENCH_CONCURRENCY=1,8,64   concurrency levels
#   BENCH_DURATION=10s         measured window per level
#   BENCH_WARMUP=2s            warm-up per level
#   BENCH_ROUNDS=3             rounds of direct + gateway runs (medians are taken over them)
#   BENCH_GATEWAYS=none,token,keyed  which Warrants to measure ("keyed": as "token", with
#                              the upstream's `auth.mode = "person_key"`: every call goes
#                              on the benchmark person's own connection, with their key
#                              from the vault injected)
#   BENCH_BUILD=1              0 skips `cargo build --release`
#   BENCH_AUTHORIZATION=       Authorization header value for the "token" gateway instead
#                              of a minted token (e.g. "Bearer <token>")
#   BENCH_TOKEN_CMD=           command that prints a bearer token once the "token" Warrant
#                              runs (sent as "Authorization: Bearer <token>"); it sees
#                              WARRANT_BENCH_CONFIG, WARRANT_BENCH_DATA_DIR and
#                              WARRANT_BENCH_URL. Default: target/release/bench_token
#                              (built with `-p warrant-fixtures --features token`)
#   BENCH_UPSTREAM_SESSIONS=1  `sessions` of the Warrants' [upstreams.bench] (how many of a
#                              session upstream's sessions the direct path spreads calls
#                              over; the echo tool keeps no state per session)
#   BENCH_WARRANT_CONFIG_EXTRA=  TOML appended to both generated Warrant configs (the
#                              "none" one already has an [mcp] table)
#   BENCH_WARRANT_START_TIMEOUT=30  seconds to wait for Warrant's /healthz
#   BENCH_OUT=                 also write the Markdown report to this file
#   BENCH_KEEP=0               1 keeps the work directory (logs, JSON reports)
#   WARRANT_BIN=target/release/warrant
#
# Allocations per call: bench/allocations.sh; instructions per call: bench/callgrind.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/lib.sh"
cd "$ROOT"

CONCURRENCY=${BENCH_CONCURRENCY:-1,8,64}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
ROUNDS=${BENCH_ROUNDS:-3}
UPSTREAM_MODES=${BENCH_UPSTREAM_MODES:-${BENCH_UPSTREAM_MODE:-sse,stateless}}
BUILD=${BENCH_BUILD:-1}
AUTHORIZATION=${BENCH_AUTHORIZATION:-}
START_TIMEOUT=${BENCH_WARRANT_START_TIMEOUT:-30}
RELEASE_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
WARRANT=${WARRANT_BIN:-$RELEASE_DIR/warrant}
BENCH=$RELEASE_DIR/warrant_bench
UPSTREAM=$RELEASE_DIR/bench_upstream
TOKEN_TOOL=$RELEASE_DIR/bench_token
GATEWAY_NAMES=${BENCH_GATEWAYS:-none,token,keyed}

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
    stop_pids "${STARTED_PIDS[@]}"
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# http_status URL: the HTTP status of a GET, or 000.
http_status() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || echo 000
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
    elif [[ -z ${BENCH_TOKEN_CMD:-} && -z $AUTHORIZATION ]]; then
        cargo build --release -p warrant-fixtures --features token --bin bench_token \
            || log "warning: building bench_token failed; no runs with tokens"
    fi
fi
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
[[ -x $BENCH && -x $UPSTREAM ]] || die "missing $BENCH or $UPSTREAM (run with BENCH_BUILD=1)"
command -v curl >/dev/null || die "curl is needed to probe Warrant's /healthz"

for mode in ${UPSTREAM_MODES//,/ }; do
    case $mode in
        sse | stateless | json) ;;
        *) die "BENCH_UPSTREAM_MODES: unknown upstream kind '$mode' (sse, stateless, json)" ;;
    esac
done
for name in ${GATEWAY_NAMES//,/ }; do
    case $name in
        none | token | keyed) ;;
        *) die "BENCH_GATEWAYS: unknown gateway '$name' (none, token, keyed)" ;;
    esac
done

declare -A MODE_TITLE=(
    [sse]='rmcp with sessions, answers as SSE (`bench_upstream --mode sse`)'
    [stateless]='rmcp stateless, answers as JSON, no session id (`bench_upstream --mode stateless`)'
    [json]='rmcp stateless, answers as JSON, behind a layer that hands out session ids (`bench_upstream --mode json`)'
)
declare -A TITLE=(
    [none]='Warrant without tokens (`mcp.authorization = "none"`: the proxy alone)'
    [token]='Warrant with tokens (the default: verify, revocation and the decision on every call)'
    [keyed]='Warrant with tokens and a per-person key (`auth.mode = "person_key"`: the person'"'"'s own connection, their key injected)'
)

# measure_kind MODE: starts an upstream of that kind and its gateways, runs the rounds,
# appends the kind's section to $WORK/report-body.md and stops what it started.
measure_kind() {
    local mode=$1 dir=$WORK/$1 name round out
    local -a kind_pids=()
    mkdir -p "$dir"

    # --- upstream ------------------------------------------------------------
    "$UPSTREAM" --listen 127.0.0.1:0 --mode "$mode" >"$dir/upstream.log" 2>&1 &
    UPSTREAM_PID=$!
    STARTED_PIDS+=("$UPSTREAM_PID")
    kind_pids+=("$UPSTREAM_PID")
    UPSTREAM_URL=$(wait_for_url "$dir/upstream.log" "$UPSTREAM_PID" 10) \
        || { cat "$dir/upstream.log" >&2; die "bench_upstream --mode $mode did not start"; }
    log "upstream: $UPSTREAM_URL (pid $UPSTREAM_PID, mode $mode)"

    # --- gateways ------------------------------------------------------------
    GW_PID=() GW_URL=() GW_NOTE=() GW_AUTH=()
    GATEWAYS=()
    for name in ${GATEWAY_NAMES//,/ }; do
        if start_gateway "$name" "$dir"; then
            GATEWAYS+=("$name")
            kind_pids+=("${GW_PID[$name]}")
        fi
    done

    # --- runs ----------------------------------------------------------------
    local -a direct_reports=()
    local -A via_reports=([none]="" [token]="" [keyed]="")
    for round in $(seq "$ROUNDS"); do
        log "$mode: round $round/$ROUNDS: direct"
        bench "$mode-direct-$round" "$UPSTREAM_URL" echo "$UPSTREAM_PID" \
            "$dir/direct-$round.json" || die "$mode: direct run $round failed"
        direct_reports+=(--direct "$dir/direct-$round.json")

        for name in "${GATEWAYS[@]}"; do
            [[ -n ${GW_PID[$name]:-} ]] || continue
            args=()
            if [[ -n ${GW_AUTH[$name]:-} ]]; then
                args+=(--header "Authorization: ${GW_AUTH[$name]}")
            fi
            out=$dir/$name-$round.json
            log "$mode: round $round/$ROUNDS: via Warrant ($name)"
            args+=(--upstream-pid "$UPSTREAM_PID")
            if bench "$mode-$name-$round" "${GW_URL[$name]}" bench__echo "${GW_PID[$name]}" \
                "$out" "${args[@]}"; then
                via_reports[$name]+=" --via $out"
            else
                GW_NOTE[$name]="run $round failed (see the errors above); no more runs through it"
                log "warning: $mode: Warrant ($name): ${GW_NOTE[$name]}"
                # A run that measured but saw errors still reports; keep it.
                [[ -s $out ]] && via_reports[$name]+=" --via $out"
                tail -n 20 "$dir/warrant-$name.log" >&2
                unset "GW_PID[$name]"
            fi
        done
    done

    # --- this kind's section -------------------------------------------------
    {
        printf '\n## Upstream: %s\n\n' "${MODE_TITLE[$mode]}"
        for name in ${GATEWAY_NAMES//,/ }; do
            if [[ -n ${GW_NOTE[$name]:-} ]]; then
                printf -- '- **Warrant (%s): %s**\n\n' "$name" "${GW_NOTE[$name]}"
            fi
        done
        for name in ${GATEWAY_NAMES//,/ }; do
            printf '### %s — %s upstream\n\n' "${TITLE[$name]}" "$mode"
            # shellcheck disable=SC2086 # word splitting of the --via list is intended
            "$BENCH" compare "${direct_reports[@]}" ${via_reports[$name]}
            printf '\n'
        done
        if [[ -n ${via_reports[none]} && -n ${via_reports[token]} ]]; then
            printf '### What the token adds — %s upstream (with tokens minus without, medians)\n\n' \
                "$mode"
            # shellcheck disable=SC2086
            "$BENCH" cost ${via_reports[none]//--via/--without} ${via_reports[token]//--via/--with}
        fi
        if [[ -n ${via_reports[token]} && -n ${via_reports[keyed]} ]]; then
            printf '\n### What a per-person key adds — %s upstream (with the key minus tokens alone, medians)\n\n' \
                "$mode"
            # shellcheck disable=SC2086
            "$BENCH" cost ${via_reports[token]//--via/--without} ${via_reports[keyed]//--via/--with}
        fi
    } >>"$WORK/report-body.md"

    stop_pids "${kind_pids[@]}"
}

# --- gateways ----------------------------------------------------------------
# Two Warrants against the same upstream: "none" (mcp.authorization = "none": the proxy
# alone) and "token" (the default, tokens required: every call verified, checked for
# revocation and decided by the token's Datalog), each with its own config and data.
declare -A GW_PID=() GW_URL=() GW_NOTE=() GW_AUTH=()
GATEWAYS=()
# gateway_note NAME REASON: no runs through this gateway; the reason goes into the report.
gateway_note() {
    GW_NOTE[$1]="not measured: $2"
    log "Warrant ($1) ${GW_NOTE[$1]}"
    return 1
}
# start_gateway NAME DIR: starts Warrant for NAME (none or token) in front of
# $UPSTREAM_URL, with its config, data and log in DIR, and sets GW_PID/GW_URL.
start_gateway() {
    local name=$1 dir=$2 config=$2/warrant-$1.toml data=$2/warrant-$1-data port base pid
    [[ $GATEWAY_BUILT == 1 ]] || gateway_note "$name" "building warrant-proxy failed" || return 1
    [[ -x $WARRANT ]] || gateway_note "$name" "no Warrant binary at $WARRANT" || return 1
    mkdir -p "$data"
    {
        # The benchmark upstream is ours: its annotations set its class (an unreviewed
        # tool would be critical, above the default ceiling, and every call refused).
        printf '[upstreams.bench]\nurl = "%s"\ntrust_annotations = true\nsessions = %s\n' \
            "$UPSTREAM_URL" "${BENCH_UPSTREAM_SESSIONS:-1}"
        if [[ $name == keyed ]]; then
            printf '\n[upstreams.bench.auth]\nmode = "person_key"\n'
        fi
        if [[ $name == none ]]; then
            printf '\n[mcp]\nauthorization = "none"\n'
        fi
        if [[ -n ${BENCH_WARRANT_CONFIG_EXTRA:-} ]]; then
            printf '\n%s\n' "$BENCH_WARRANT_CONFIG_EXTRA"
        fi
    } >"$config"
    port=$(free_port) || gateway_note "$name" "no free loopback port" || return 1
    "$WARRANT" serve --config "$config" --listen "127.0.0.1:$port" --data-dir "$data" \
        >"$dir/warrant-$name.log" 2>&1 &
    pid=$!
    STARTED_PIDS+=("$pid")
    if ! base=$(wait_for_url "$dir/warrant-$name.log" "$pid" "$START_TIMEOUT"); then
        tail -n 40 "$dir/warrant-$name.log" >&2
        gateway_note "$name" "it did not print its URL (its log is above)" || return 1
    fi
    # The printed URL may be the base or the /mcp endpoint; the benchmark calls it on
    # 127.0.0.1 (the token's audience is the configured resource, not the Host).
    base=http://127.0.0.1:$port
    for _ in $(seq $((START_TIMEOUT * 10))); do
        [[ $(http_status "$base/healthz") == 200 ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ $(http_status "$base/healthz") != 200 ]]; then
        tail -n 40 "$dir/warrant-$name.log" >&2
        gateway_note "$name" "$base/healthz never answered 200 (its log is above)" || return 1
    fi
    GW_PID[$name]=$pid
    GW_URL[$name]=$base/mcp
    log "Warrant ($name): ${GW_URL[$name]} (pid $pid)"

    if [[ $name == token || $name == keyed ]]; then
        local token="" cmd=${BENCH_TOKEN_CMD:-}
        if [[ $name == keyed && ( -n $AUTHORIZATION || -n $cmd ) ]]; then
            gateway_note "$name" "its person's key is stored by the default token tool only" || return 1
        fi
        if [[ -n $AUTHORIZATION ]]; then
            GW_AUTH[$name]=$AUTHORIZATION
            return 0
        fi
        if [[ -z $cmd ]]; then
            [[ -x $TOKEN_TOOL ]] || gateway_note "$name" "no $TOKEN_TOOL to mint a token" || return 1
            cmd='"$BENCH_TOKEN_TOOL"'
            if [[ $name == keyed ]]; then
                cmd+=' --person-key bench=bench-person-key-3f9a7c2e'
            fi
        fi
        token=$(BENCH_TOKEN_TOOL=$TOKEN_TOOL WARRANT_BENCH_CONFIG=$config \
            WARRANT_BENCH_DATA_DIR=$data WARRANT_BENCH_URL=${GW_URL[$name]} \
            bash -c "$cmd") || gateway_note "$name" "minting the token failed" || return 1
        [[ -n $token ]] || gateway_note "$name" "the token command printed nothing" || return 1
        GW_AUTH[$name]="Bearer $token"
    fi
}

# --- runs, one upstream kind after the other ---------------------------------
: >"$WORK/report-body.md"
for mode in ${UPSTREAM_MODES//,/ }; do
    measure_kind "$mode"
done

# --- report ------------------------------------------------------------------
cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
{
    printf '# Warrant per-call benchmark\n\n'
    printf -- '- machine: %s CPUs, %s, Linux %s; load average at start: %s\n' "$(nproc)" \
        "${cpu_model:-unknown CPU}" "$(uname -r)" "$LOAD_AT_START"
    printf -- '- upstreams: bench_upstream --mode %s (echo tool), one after the other;' \
        "${UPSTREAM_MODES//,/, }"
    printf ' Warrant opens %s of its sessions (`sessions`)\n' "${BENCH_UPSTREAM_SESSIONS:-1}"
    printf -- '- load: warrant_bench, one keep-alive connection and MCP session per worker;\n'
    printf '  warm-up %s, window %s per level; rounds: %s\n' "$WARMUP" "$DURATION" "$ROUNDS"
    printf -- '- load generator, upstream and Warrant share the same %s CPUs\n' "$(nproc)"
    printf -- '- load average at the end: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
    cat "$WORK/report-body.md"
} >"$WORK/report.md"
cat "$WORK/report.md"
if [[ -n ${BENCH_OUT:-} ]]; then
    cp "$WORK/report.md" "$BENCH_OUT"
fi
