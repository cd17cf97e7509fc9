#!/usr/bin/env bash
# How fast the audit ledger writes and is verified, on SQLite and on PostgreSQL.
#
# `bench_ledger` writes LEDGER_RECORDS call records through the ledger's own writer
# (LEDGER_WRITERS chains at once, as replicas would), then runs the verification of
# `warrant audit verify` over all of them, and prints both rates. PostgreSQL is a
# throw-away server started here on a loopback port (Debian's package), with its
# defaults (fsync on).
#
# Usage: bench/ledger.sh   (release binaries must be built: cargo build --release
#        -p warrant-proxy -p warrant-fixtures --features warrant-fixtures/token)
#
# Environment (all optional):
#   LEDGER_RECORDS=1000000   records in all
#   LEDGER_WRITERS=4         chains written at once
#   LEDGER_BACKENDS=sqlite,postgres
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RECORDS=${LEDGER_RECORDS:-1000000}
WRITERS=${LEDGER_WRITERS:-4}
BACKENDS=${LEDGER_BACKENDS:-sqlite,postgres}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/bench_ledger
[ -x "$BIN" ] || { echo "build first: cargo build --release -p warrant-fixtures --features warrant-fixtures/token" >&2; exit 2; }

WORK=$(mktemp -d /tmp/warrant-ledger-bench.XXXXXX)
PGBIN=""
cleanup() {
    if [ -n "$PGBIN" ] && [ -f "$WORK/pg/postmaster.pid" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; else "$@"; fi; }

for backend in ${BACKENDS//,/ }; do
    echo "== $backend: $RECORDS records, $WRITERS writers"
    case $backend in
        sqlite)
            "$BIN" --data-dir "$WORK/sqlite" --records "$RECORDS" --writers "$WRITERS"
            ;;
        postgres)
            PGBIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
            mkdir -p "$WORK/pg" && [ "$(id -u)" != 0 ] || chown postgres "$WORK" "$WORK/pg"
            as_pg "$PGBIN/initdb" -D "$WORK/pg" -A trust -U warrant >/dev/null
            PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
            as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -o "-p $PORT -k $WORK/pg -c listen_addresses=127.0.0.1" -l "$WORK/pg/log" -w start >/dev/null
            "$BIN" --data-dir "$WORK/unused" --database-url "postgres://warrant@127.0.0.1:$PORT/postgres" \
                --records "$RECORDS" --writers "$WRITERS"
            ;;
        *) echo "unknown backend $backend" >&2; exit 2 ;;
    esac
done
