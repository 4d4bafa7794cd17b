# shellcheck shell=bash
# Test servers for quiver's scripts. Source this file, then:
#
#   trap qv_stop_servers EXIT; trap 'exit 130' INT; trap 'exit 143' TERM
#   qv_start_httpbin [LOG_DIR]      # exports QV_HTTPBIN_URL
#
# Everything listens on 127.0.0.1 only. /usr/bin/python3 is used on purpose: the
# python3 on PATH may be a pyenv one without Debian's httpbin and gunicorn.

QV_PYTHON=/usr/bin/python3
QV_SERVER_PIDS=()      # pids of the servers started here (gunicorn masters)
QV_SERVER_TMPDIRS=()   # log dirs made with mktemp, removed by qv_stop_servers
: "${QV_SERVER_START_TIMEOUT:=20}" # seconds to wait for a server to answer
: "${QV_SERVER_STOP_TIMEOUT:=10}"  # seconds to wait for a graceful stop before KILL

# Prints a TCP port that is free on 127.0.0.1 right now.
qv_free_port() {
    "$QV_PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# _qv_alive PID: true while PID runs (and is not a zombie we have yet to reap).
_qv_alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $state != Z* ]]
}

# Starts httpbin (Debian's python3-httpbin under gunicorn) on a free loopback
# port, waits until it answers, exports QV_HTTPBIN_URL and QV_HTTPBIN_PID.
# The gthread worker with keep-alive matters: the sync worker closes every
# connection, and quiver's tests check connection reuse.
# LOG_DIR (optional) gets httpbin.log; default: a fresh mktemp dir.
qv_start_httpbin() {
    local logdir=${1:-} log port pid url attempt i
    if [[ -z $logdir ]]; then
        logdir=$(mktemp -d "${TMPDIR:-/tmp}/quiver-servers.XXXXXX") || return 1
        QV_SERVER_TMPDIRS+=("$logdir")
    fi
    mkdir -p "$logdir" || return 1
    log=$logdir/httpbin.log

    # The port is only free when probed; if another process grabs it before
    # gunicorn binds, gunicorn logs "Connection in use" and we try a new port.
    for attempt in 1 2 3; do
        port=$(qv_free_port) || return 1
        url=http://127.0.0.1:$port
        "$QV_PYTHON" -m gunicorn -k gthread --threads 32 -w 2 --keep-alive 75 \
            -b "127.0.0.1:$port" httpbin:app >"$log" 2>&1 </dev/null &
        pid=$!
        QV_SERVER_PIDS+=("$pid")
        for ((i = 0; i < QV_SERVER_START_TIMEOUT * 10; i++)); do
            # The log line proves the answer comes from our gunicorn, not from
            # some other server that took the port in the meantime.
            if curl -sf --noproxy '*' --max-time 2 -o /dev/null "$url/get" &&
                grep -qF "Listening at: $url " "$log"; then
                export QV_HTTPBIN_URL=$url QV_HTTPBIN_PID=$pid
                echo "httpbin: $url (pid $pid, log $log)"
                return 0
            fi
            _qv_alive "$pid" || break
            grep -q 'Connection in use' "$log" && break
            sleep 0.1
        done
        if ! grep -q 'Connection in use' "$log"; then
            break # died or never answered: a real failure, not a port race
        fi
        echo "httpbin: port $port taken meanwhile, retrying (attempt $attempt)" >&2
        # Still in its bind loop, with no workers yet; it queues TERM until
        # that loop ends (~5 s), so KILL is both safe and prompt here.
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if _qv_alive "$pid"; then
        echo "httpbin: no answer from $url after ${QV_SERVER_START_TIMEOUT}s; log tail:" >&2
    else
        echo "httpbin: gunicorn exited before answering on $url; log tail:" >&2
    fi
    tail -n 20 "$log" >&2
    return 1
}

# Stops every server started by this shell: TERM (gunicorn's graceful stop),
# then KILL for the master and its workers after QV_SERVER_STOP_TIMEOUT
# seconds. Only pids recorded here are touched. Safe to call more than once.
qv_stop_servers() {
    local pid i dir
    for pid in "${QV_SERVER_PIDS[@]}"; do
        if _qv_alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            for ((i = 0; i < QV_SERVER_STOP_TIMEOUT * 10; i++)); do
                _qv_alive "$pid" || break
                sleep 0.1
            done
            if _qv_alive "$pid"; then
                echo "servers: pid $pid ignored TERM for ${QV_SERVER_STOP_TIMEOUT}s; killing it" >&2
                pkill -KILL -P "$pid" 2>/dev/null || true
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
        wait "$pid" 2>/dev/null || true
    done
    QV_SERVER_PIDS=()
    for dir in "${QV_SERVER_TMPDIRS[@]}"; do
        rm -rf -- "$dir"
    done
    QV_SERVER_TMPDIRS=()
    unset QV_HTTPBIN_URL QV_HTTPBIN_PID
}
