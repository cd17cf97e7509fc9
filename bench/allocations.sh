#!/usr/bin/env bash
# Allocations per `tools/call` through Warrant, counted by a counting allocator.
#
# Allocation counts, like instruction counts, do not move with the machine's load.
# For each upstream kind this starts `bench_upstream` and, in front of it,
# `bench_warrant_counting` (Warrant run exactly as `warrant serve`, with the system
# allocator wrapped by a counting one that rewrites WARRANT_ALLOC_COUNTS every 100 ms),
# then `warrant_bench allocs`: one session, a warm-up, a fixed number of calls one at a
# time between two reads of the counts, minus what Warrant allocates on its own while
# idle (periodic refreshes). It prints a Markdown table, one row per upstream kind.
#
# Usage: bench/allocations.sh   (release binaries must be built: cargo build --release
#        -p warrant-proxy -p warrant-fixtures --features warrant-fixtures/token)
#
# Environment (all optional):
#   ALLOC_UPSTREAM_MODES=sse,stateless  upstream kinds (bench_upstream --mode; or json)
#   ALLOC_GATEWAY=token    token: the default config, every call with a real access token
#                          minted by target/release/bench_token; none: mcp.authorization = "none"
#   ALLOC_CALLS=20000      calls counted per kind
#   ALLOC_WARMUP=2s        calls before counting
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bench/lib.sh"
cd "$ROOT"

MODES=${ALLOC_UPSTREAM_MODES:-sse,stateless}
GATEWAY=${ALLOC_GATEWAY:-token}
CALLS=${ALLOC_CALLS:-20000}
WARMUP=${ALLOC_WARMUP:-2s}
RELEASE_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
WARRANT=$RELEASE_DIR/bench_warrant_counting
BENCH=$RELEASE_DIR/warrant_bench
UPSTREAM=$RELEASE_DIR/bench_upstream
TOKEN_TOOL=$RELEASE_DIR/bench_token
case $GATEWAY in
    none | token) ;;
    *) echo "ALLOC_GATEWAY must be none or token" >&2; exit 2 ;;
esac
for mode in ${MODES//,/ }; do
    case $mode in
        sse | stateless | json) ;;
        *) echo "ALLOC_UPSTREAM_MODES: unknown kind '$mode' (sse, stateless, json)" >&2; exit 2 ;;
    esac
done
for tool in "$WARRANT" "$BENCH" "$UPSTREAM" "$TOKEN_TOOL"; do
    [[ -x $tool ]] || {
        echo "missing $tool: cargo build --release -p warrant-proxy -p warrant-fixtures --features warrant-fixtures/token" >&2
        exit 1
    }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/warrant-allocations.XXXXXX")
PIDS=()
cleanup() {
    stop_pids "${PIDS[@]}"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# count MODE: one kind, one Markdown row on stdout.
count() {
    local mode=$1 dir=$WORK/$1 upstream_pid warrant_pid upstream_url port base token
    local -a headers=()
    mkdir -p "$dir/data"
    "$UPSTREAM" --listen 127.0.0.1:0 --mode "$mode" >"$dir/upstream.log" 2>&1 &
    upstream_pid=$!
    PIDS+=("$upstream_pid")
    upstream_url=$(wait_for_url "$dir/upstream.log" "$upstream_pid" 30) || {
        cat "$dir/upstream.log" >&2
        return 1
    }
    {
        printf '[upstreams.bench]\nurl = "%s"\ntrust_annotations = true\n' "$upstream_url"
        if [[ $GATEWAY == none ]]; then
            printf '\n[mcp]\nauthorization = "none"\n'
        fi
    } >"$dir/warrant.toml"
    port=$(free_port) || { echo "no free loopback port" >&2; return 1; }
    WARRANT_ALLOC_COUNTS=$dir/counts "$WARRANT" serve --config "$dir/warrant.toml" \
        --listen "127.0.0.1:$port" --data-dir "$dir/data" >"$dir/warrant.log" 2>&1 &
    warrant_pid=$!
    PIDS+=("$warrant_pid")
    base=http://127.0.0.1:$port
    for _ in $(seq 300); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/healthz" || true) == 200 ]] && break
        kill -0 "$warrant_pid" 2>/dev/null || { cat "$dir/warrant.log" >&2; return 1; }
        sleep 0.1
    done
    if [[ $GATEWAY == token ]]; then
        token=$("$TOKEN_TOOL" --config "$dir/warrant.toml" --data-dir "$dir/data" --url "$base/mcp")
        headers+=(--header "Authorization: Bearer $token")
    fi
    echo "[allocations] $mode: $CALLS calls through $base/mcp" >&2
    "$BENCH" allocs --url "$base/mcp" --tool bench__echo --counts "$dir/counts" \
        --calls "$CALLS" --warmup "$WARMUP" --json "${headers[@]}" >"$dir/report.json" || {
        tail -n 20 "$dir/warrant.log" >&2
        return 1
    }
    stop_pids "$warrant_pid" "$upstream_pid"
    field() { grep -o "\"$1\": *[0-9.e+-]*" "$dir/report.json" | head -1 | sed 's/.*: *//'; }
    awk -v m="$mode" -v c="$(field calls)" -v a="$(field allocations_per_call)" \
        -v r="$(field reallocations_per_call)" -v b="$(field bytes_per_call)" \
        -v i="$(field idle_allocations_per_s)" 'BEGIN {
        printf "| %s | %d | %.1f | %.1f | %.0f | %.1f |\n", m, c, a, r, b, i
    }'
}

printf 'Allocations per `tools/call` through Warrant (gateway: %s; %s calls one at a time after %s of warm-up)\n\n' \
    "$GATEWAY" "$CALLS" "$WARMUP"
printf '| upstream | calls | allocations per call | reallocations per call | bytes allocated per call | idle allocations/s (subtracted) |\n'
printf '|---|---:|---:|---:|---:|---:|\n'
for mode in ${MODES//,/ }; do
    count "$mode"
done
