# Helpers shared by the benchmark scripts (bench/run.sh, allocations.sh, callgrind.sh),
# sourced by them: processes on loopback, started and stopped.

# wait_for_url LOGFILE PID SECONDS: prints the first http:// URL the process logs, or
# fails once it exits or SECONDS have passed.
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

# free_port: a loopback TCP port nobody listens on right now.
free_port() {
    local port
    for _ in $(seq 100); do
        # Below the ephemeral range (32768 and up on Linux): a port there may still be held
        # by a connection of an earlier run, in TIME_WAIT.
        port=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    return 1
}

# stop_pids PID...: SIGTERM, up to 5 s for a graceful exit, then SIGKILL.
stop_pids() {
    local pid
    for pid in "$@"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "$@"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
