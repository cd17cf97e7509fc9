#!/usr/bin/env bash
# How fast the audit log's pages read 10 million records on PostgreSQL.
#
# A throw-away PostgreSQL (Debian's package, defaults) on a loopback port gets Warrant's
# schema (`warrant keys list` runs the migrations), then AUDIT_RECORDS generated ledger
# records: 8 writers, 1,000 people, 200 agents, 20 upstreams with 500 tools, one call in
# ten refused, risk classes, a few rare kinds (`consent.given`, `sign_in`). Then the
# query the audit log runs for a page (`consent::ledger::query::page`: newest first, 51
# rows, keyset) is timed with EXPLAIN ANALYZE for each filter, on the first page and on
# a page half-way back, best of 3.
#
# Usage: bench/audit_pages.sh   (needs target/release/warrant or target/debug/warrant)
#
# Environment (optional): AUDIT_RECORDS=10000000
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RECORDS=${AUDIT_RECORDS:-10000000}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
# The newer of the release and debug builds (its migrations are the schema measured).
WARRANT=$(ls -t "$TARGET/release/warrant" "$TARGET/debug/warrant" 2>/dev/null | head -n 1)
[ -n "$WARRANT" ] || { echo "build first: cargo build -p warrant-proxy" >&2; exit 2; }
echo "schema from $WARRANT"

WORK=$(mktemp -d /tmp/warrant-audit-bench.XXXXXX)
PGBIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
cleanup() {
    if [ -f "$WORK/pg/postmaster.pid" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$(printf '%q ' "$@")"; else "$@"; fi; }

mkdir -p "$WORK/pg" && { [ "$(id -u)" != 0 ] || chown postgres "$WORK" "$WORK/pg"; }
as_pg "$PGBIN/initdb" -D "$WORK/pg" -A trust -U warrant >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -o "-p $PORT -k $WORK/pg -c listen_addresses=127.0.0.1" -l "$WORK/pg/log" -w start >/dev/null
URL="postgres://warrant@127.0.0.1:$PORT/postgres"
"$WARRANT" keys list --data-dir "$WORK/data" --database-url "$URL" >/dev/null
PSQL=$(dirname "$PGBIN")/bin/psql
[ -x "$PSQL" ] || PSQL=$(command -v psql)
q() { as_pg "$PSQL" -h "$WORK/pg" -p "$PORT" -U warrant -d postgres -At "$@"; }

echo "generating $RECORDS records…"
start=$(date +%s)
q -c "INSERT INTO consent_ledger_records
SELECT 'w' || (g % 8), g, 1757000000000000 + g * 777600,
  CASE WHEN g % 1000 = 0 THEN 'consent.given' WHEN g % 1000 = 1 THEN 'sign_in'
       WHEN g % 2 = 0 THEN 'call' ELSE 'call.outcome' END,
  'user-' || ((g * 7919) % 1000), 'agent-' || ((g * 104729) % 200), 'up-' || (g % 20),
  'tool-' || ((g * 31) % 500),
  CASE WHEN g % 2 = 0 THEN (CASE WHEN g % 20 = 0 THEN 'deny' ELSE 'allow' END) END,
  CASE WHEN g % 50 = 0 THEN 'critical' WHEN g % 10 = 0 THEN 'high'
       WHEN g % 3 = 0 THEN 'medium' ELSE 'low' END,
  '{\"reason\":\"generated record ' || g || '\",\"latency_us\":' || (g % 5000) || '}',
  md5(g::text) || md5((g + 1)::text), md5((g + 2)::text) || md5((g + 3)::text)
FROM generate_series(1::bigint, ${RECORDS}::bigint) AS g" >/dev/null
q -c "VACUUM ANALYZE consent_ledger_records" >/dev/null
echo "generated in $(( $(date +%s) - start )) s; $(q -c "SELECT pg_size_pretty(pg_total_relation_size('consent_ledger_records'))") with indexes"

COLUMNS_="writer, seq, at, kind, user_id, agent, upstream, tool, decision, risk, detail, prev_hash, hash"
MID=$(( 1757000000000000 + RECORDS / 2 * 777600 ))
DEEP="AND at <= $MID AND (at < $MID OR (at = $MID AND (writer < 'w3' OR (writer = 'w3' AND seq < $((RECORDS / 2))))))"
DAY=$(( 1757000000000000 + RECORDS / 3 * 777600 ))
printf '%-36s %10s %10s\n' "filter" "first page" "half-way"
while IFS='|' read -r name where; do
    line=$(printf '%-36s' "$name")
    for extra in "" "$DEEP"; do
        best=""
        for _ in 1 2 3; do
            ms=$(q -c "EXPLAIN (ANALYZE, FORMAT JSON) SELECT $COLUMNS_ FROM consent_ledger_records WHERE 1 = 1 $where $extra ORDER BY at DESC, writer DESC, seq DESC LIMIT 51" \
                | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Execution Time"])')
            best=$(python3 -c "print(min(float('$ms'), float('${best:-1e9}')))")
        done
        line="$line $(printf '%8.1f ms' "$best")"
    done
    echo "$line"
done <<LIST
none|
person|AND user_id = 'user-417'
agent|AND agent = 'agent-17'
upstream|AND upstream = 'up-3'
upstream + tool|AND upstream = 'up-3' AND tool = 'tool-93'
refused|AND decision = 'deny'
risk critical|AND risk = 'critical'
kind consent.given|AND kind = 'consent.given'
person + kind sign_in|AND user_id = 'user-417' AND kind = 'sign_in'
a day + person|AND at >= $DAY AND at < $(( DAY + 86400000000 )) AND user_id = 'user-417'
person + refused (matches none)|AND user_id = 'user-417' AND decision = 'deny'
tool + refused (matches none)|AND tool = 'tool-93' AND decision = 'deny'
agent + upstream + refused (none)|AND agent = 'agent-17' AND upstream = 'up-3' AND decision = 'deny'
LIST
