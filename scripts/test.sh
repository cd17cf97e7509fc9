#!/usr/bin/env bash
# Runs Warrant's whole test suite on a fresh Debian machine with Rust:
#   1. installs what the tests need and is missing (PostgreSQL, Node.js, Python's venv and
#      Chromium from Debian, the Node MCP peers and the conformance suite from the npm registry,
#      the Python MCP SDK from PyPI, cargo-nextest),
#   2. starts a throw-away PostgreSQL on a loopback port in a temporary directory,
#   3. builds the workspace once (debug) and runs every test with cargo-nextest, once on
#      SQLite and once on PostgreSQL.
# Everything it starts listens on 127.0.0.1 and is stopped when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- 1. What the tests need ------------------------------------------------------------
need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing ${need_apt[*]} (Debian packages)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
for dir in tests/node tests/conformance; do
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    say "installing the Node packages of $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done

if [ ! -x tests/python/.venv/bin/python ] || [ tests/python/requirements.txt -nt tests/python/.venv/installed ]; then
  say "installing the Python MCP SDK (tests/python)"
  python3 -m venv tests/python/.venv
  tests/python/.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
  touch tests/python/.venv/installed
fi

# --- 2. A throw-away PostgreSQL on loopback ---------------------------------------------
PGBIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
PGTMP=$(mktemp -d /tmp/warrant-pg.XXXXXX)
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
  else
    local port
    while :; do
      port=$(( (RANDOM << 1 | RANDOM & 1) % 20000 + 40000 ))
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
  fi
}
PGPORT=$(free_port)
pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  pg "$PGBIN/pg_ctl" -D "$PGTMP/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PGTMP"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chown postgres: "$PGTMP"
say "starting PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT"
pg "$PGBIN/initdb" -D "$PGTMP/data" -A trust -U warrant --no-sync >/dev/null
pg "$PGBIN/pg_ctl" -D "$PGTMP/data" -l "$PGTMP/pg.log" -w start \
  -o "-p $PGPORT -k $PGTMP -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" >/dev/null
export WARRANT_TEST_DATABASE_URL="postgres://warrant@127.0.0.1:$PGPORT/postgres"
export WARRANT_TEST_REQUIRE_POSTGRES=1

# --- 3. Build once, test everything ------------------------------------------------------
say "building the workspace (debug)"
cargo build --workspace --all-targets --locked
# A failing test's output ends with its panic message rather than a backtrace (CI shows
# the end of the output); WARRANT_TEST_BACKTRACE=1 brings backtraces back.
export RUST_BACKTRACE="${WARRANT_TEST_BACKTRACE:-0}"
say "running the tests on SQLite"
WARRANT_TEST_BACKEND=sqlite cargo nextest run --workspace --locked --no-fail-fast "$@"
say "running the tests on PostgreSQL"
WARRANT_TEST_BACKEND=postgres cargo nextest run --workspace --locked --no-fail-fast "$@"
