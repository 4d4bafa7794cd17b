# shellcheck shell=bash
# Test servers for quiver's scripts. Source this file, then:
#
#   trap qv_stop_servers EXIT; trap 'exit 130' INT; trap 'exit 143' TERM
#   qv_start_httpbin [LOG_DIR]      # exports QV_HTTPBIN_URL
#   qv_start_tls [LOG_DIR]          # exports QV_TLS_URL, QV_TLS_CA
#   qv_start_proxy [LOG_DIR]        # exports QV_PROXY_URL
#   qv_start_nginx [LOG_DIR]        # exports QV_NGINX_URL, QV_NGINX_TLS_URL, QV_NGINX_CA
#   qv_start_faults [LOG_DIR]       # exports QV_FAULTS_URL
#   qv_start_mtls [LOG_DIR]         # exports QV_MTLS_URL, QV_MTLS12_URL, QV_MTLS_DIR, ...
#   qv_start_socks [LOG_DIR]        # exports QV_SOCKS_PORT
#   qv_start_auth_proxy [LOG_DIR]   # exports QV_AUTH_PROXY_URL, QV_AUTH_PROXY_USER, ...
#   qv_start_tls_proxy [LOG_DIR]    # exports QV_TLS_PROXY_URL, QV_TLS_PROXY_CA
#   qv_start_sink [LOG_DIR]         # exports QV_SINK_URL
#
# Everything listens on 127.0.0.1 only. /usr/bin/python3 is used on purpose: the
# python3 on PATH may be a pyenv one without Debian's httpbin and gunicorn.

QV_PYTHON=/usr/bin/python3
QV_TEST_SERVERS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../tests/servers" && pwd)
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
        "$QV_PYTHON" -m gunicorn -k gthread --threads 64 -w 2 --keep-alive 75 \
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

# _qv_logdir [DIR]: sets _qv_dir to DIR (created), or to a fresh mktemp dir
# that qv_stop_servers removes. (Not a $(...) function: the list of dirs to
# remove must grow in this shell.)
_qv_logdir() {
    _qv_dir=${1:-}
    if [[ -z $_qv_dir ]]; then
        _qv_dir=$(mktemp -d "${TMPDIR:-/tmp}/quiver-servers.XXXXXX") || return 1
        # nginx's workers run as another user when started as root: let them in.
        chmod 0755 "$_qv_dir"
        QV_SERVER_TMPDIRS+=("$_qv_dir")
    fi
    mkdir -p "$_qv_dir"
}

# _qv_start_py_server NAME LOG PROBE SCRIPT [ARG...]
# Starts tests/servers/SCRIPT --port P ARG... (P a free loopback port) with
# its output in LOG, and waits (QV_SERVER_START_TIMEOUT) until "PROBE P"
# succeeds and the log says it listens on P (so the answer is from this
# process, not from whatever else may hold the port). If the port was taken
# in the meantime ("Address already in use"), tries again with a new one.
# Sets _qv_port and _qv_pid; on failure prints the log tail and returns 1.
_qv_start_py_server() {
    local name=$1 log=$2 probe=$3 script=$4 attempt i port pid
    shift 4
    for attempt in 1 2 3; do
        port=$(qv_free_port) || return 1
        "$QV_PYTHON" "$QV_TEST_SERVERS_DIR/$script" --port "$port" "$@" >"$log" 2>&1 </dev/null &
        pid=$!
        QV_SERVER_PIDS+=("$pid")
        for ((i = 0; i < QV_SERVER_START_TIMEOUT * 10; i++)); do
            # -s: the log may not exist yet, in the instant after the start.
            if grep -qsE "listening on [a-z0-9]+://127\.0\.0\.1:$port\$" "$log" &&
                "$probe" "$port"; then
                _qv_port=$port _qv_pid=$pid
                return 0
            fi
            _qv_alive "$pid" || break
            sleep 0.1
        done
        if _qv_alive "$pid" || ! grep -q 'Address already in use' "$log"; then
            break # never answered, or died for another reason: a real failure
        fi
        echo "$name: port $port taken meanwhile, retrying (attempt $attempt)" >&2
        wait "$pid" 2>/dev/null || true
    done
    if _qv_alive "$pid"; then
        echo "$name: no answer on 127.0.0.1:$port after ${QV_SERVER_START_TIMEOUT}s; log tail:" >&2
        kill -TERM "$pid" 2>/dev/null || true
    else
        echo "$name: $script exited before answering on 127.0.0.1:$port; log tail:" >&2
    fi
    tail -n 20 "$log" >&2
    return 1
}

# _qv_tls_certs DIR: makes a throwaway CA (DIR/ca.pem, DIR/ca.key) and a
# server certificate signed by it (DIR/server.pem, DIR/server.key) for
# IP 127.0.0.1 and DNS localhost, valid for two days. Fresh keys every time.
_qv_tls_certs() {
    local dir=$1 out
    mkdir -p "$dir" || return 1
    rm -f "$dir"/ca.pem "$dir"/ca.key "$dir"/server.pem "$dir"/server.key "$dir"/server.csr \
        "$dir"/server.ext
    printf '%s\n' "subjectAltName = IP:127.0.0.1, DNS:localhost" \
        "basicConstraints = critical, CA:FALSE" \
        "keyUsage = critical, digitalSignature, keyEncipherment" \
        "extendedKeyUsage = serverAuth" >"$dir/server.ext"
    if ! out=$(
        set -e
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 2 -subj "/CN=quiver test CA" \
            -addext "basicConstraints = critical, CA:TRUE" \
            -addext "keyUsage = critical, keyCertSign, cRLSign" 2>&1
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$dir/server.key" -out "$dir/server.csr" -subj "/CN=127.0.0.1" 2>&1
        openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
            -set_serial "0x$(openssl rand -hex 8)" -days 2 -extfile "$dir/server.ext" \
            -out "$dir/server.pem" 2>&1
    ); then
        echo "tls: making test certificates in $dir failed:" >&2
        printf '%s\n' "$out" >&2
        return 1
    fi
}

_qv_probe_tls() {
    local body
    body=$(curl -s --noproxy '*' --max-time 2 --cacert "$QV_TLS_CA" "https://127.0.0.1:$1/hello") &&
        [[ $body == "hello tls" ]]
}

_qv_probe_proxy() {
    # A request that is not in absolute form gets the proxy's own 400.
    curl -s --noproxy '*' --max-time 2 -o /dev/null -D - "http://127.0.0.1:$1/" |
        grep -qi '^Via: quiver-test-proxy'
}

# _qv_tls_extras DIR: for the certificates of _qv_tls_certs in DIR, a CA
# directory (DIR/capath, hashed for OpenSSL) and the server key's pin
# (DIR/server.pin: "sha256//BASE64", libcurl's form).
_qv_tls_extras() {
    local dir=$1 out
    if ! out=$(
        set -eo pipefail
        mkdir -p "$dir/capath"
        cp "$dir/ca.pem" "$dir/capath/ca.pem"
        openssl rehash "$dir/capath" 2>&1
        printf 'sha256//%s\n' "$(openssl x509 -in "$dir/server.pem" -pubkey -noout |
            openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)" \
            >"$dir/server.pin"
    ); then
        echo "tls: making the CA directory and pin in $dir failed:" >&2
        printf '%s\n' "$out" >&2
        return 1
    fi
}

# Starts tests/servers/tls_server.py (HTTPS: GET /hello → "hello tls") on a
# free loopback port with a certificate made now by a throwaway CA, waits
# until it answers, exports QV_TLS_URL (https://127.0.0.1:PORT), QV_TLS_CA
# (the CA file to trust), QV_TLS_CAPATH (a CA directory holding it),
# QV_TLS_PIN (the server key's sha256// pin) and QV_TLS_PID.
# LOG_DIR (optional) gets tls.log and tls/ (certificates); default: mktemp.
qv_start_tls() {
    local logdir
    _qv_logdir "${1:-}" || return 1
    logdir=$_qv_dir
    _qv_tls_certs "$logdir/tls" || return 1
    _qv_tls_extras "$logdir/tls" || return 1
    export QV_TLS_CA=$logdir/tls/ca.pem QV_TLS_CAPATH=$logdir/tls/capath
    QV_TLS_PIN=$(cat "$logdir/tls/server.pin") || return 1
    export QV_TLS_PIN
    _qv_start_py_server tls "$logdir/tls.log" _qv_probe_tls tls_server.py \
        --cert "$logdir/tls/server.pem" --key "$logdir/tls/server.key" || return 1
    export QV_TLS_URL=https://127.0.0.1:$_qv_port QV_TLS_PID=$_qv_pid
    echo "tls: $QV_TLS_URL (pid $QV_TLS_PID, CA $QV_TLS_CA, log $logdir/tls.log)"
}

# Starts tests/servers/proxy.py (a forward proxy for http:// to 127.0.0.1 and
# localhost only; adds "Via: quiver-test-proxy") on a free loopback port,
# waits until it answers, exports QV_PROXY_URL and QV_PROXY_PID.
# LOG_DIR (optional) gets proxy.log (one line per request); default: mktemp.
qv_start_proxy() {
    local logdir
    _qv_logdir "${1:-}" || return 1
    logdir=$_qv_dir
    _qv_start_py_server proxy "$logdir/proxy.log" _qv_probe_proxy proxy.py || return 1
    export QV_PROXY_URL=http://127.0.0.1:$_qv_port QV_PROXY_PID=$_qv_pid
    echo "proxy: $QV_PROXY_URL (pid $QV_PROXY_PID, log $logdir/proxy.log)"
}

# _qv_client_cert DIR NAME CA: a client certificate DIR/NAME.pem (CN NAME,
# for TLS client authentication) and its key DIR/NAME.key, issued by
# CA.pem/CA.key in DIR.
_qv_client_cert() {
    local dir=$1 name=$2 ca=$3
    printf '%s\n' "basicConstraints = critical, CA:FALSE" \
        "keyUsage = critical, digitalSignature" "extendedKeyUsage = clientAuth" >"$dir/client.ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "/CN=$name" 2>&1 &&
        openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.pem" -CAkey "$dir/$ca.key" \
            -set_serial "0x$(openssl rand -hex 8)" -days 2 -extfile "$dir/client.ext" \
            -out "$dir/$name.pem" 2>&1
}

_qv_probe_mtls() {
    local body
    body=$(curl -s --noproxy '*' --max-time 2 --cacert "$QV_MTLS_DIR/ca.pem" \
        --cert "$QV_MTLS_DIR/client.pem" --key "$QV_MTLS_DIR/client.key" \
        "https://127.0.0.1:$1/whoami") && [[ $body == "client" ]]
}

# Starts two tests/servers/tls_server.py that demand a client certificate
# issued by a throwaway CA (mutual TLS; GET /whoami answers the client
# certificate's common name): one up to TLS 1.3 (QV_MTLS_URL), one capped
# at TLS 1.2 (QV_MTLS12_URL). QV_MTLS_DIR holds ca.pem (the CA of the
# servers and clients), client.pem with client.key (CN "client"),
# client-enc.key (the same key encrypted with the password in
# QV_MTLS_KEY_PASSWORD), and rogue.pem with rogue.key (CN "rogue", from
# another CA, which the servers reject).
qv_start_mtls() {
    local logdir dir out
    _qv_logdir "${1:-}" || return 1
    logdir=$_qv_dir
    dir=$logdir/mtls
    _qv_tls_certs "$dir" || return 1
    export QV_MTLS_KEY_PASSWORD=quiver-key-secret
    if ! out=$(
        set -e
        _qv_client_cert "$dir" client ca
        openssl pkey -in "$dir/client.key" -aes256 -passout "pass:$QV_MTLS_KEY_PASSWORD" \
            -out "$dir/client-enc.key" 2>&1
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$dir/rogue-ca.key" -out "$dir/rogue-ca.pem" -days 2 -subj "/CN=rogue CA" \
            -addext "basicConstraints = critical, CA:TRUE" \
            -addext "keyUsage = critical, keyCertSign, cRLSign" 2>&1
        _qv_client_cert "$dir" rogue rogue-ca
    ); then
        echo "mtls: making client certificates in $dir failed:" >&2
        printf '%s\n' "$out" >&2
        return 1
    fi
    export QV_MTLS_DIR=$dir
    _qv_start_py_server mtls "$logdir/mtls.log" _qv_probe_mtls tls_server.py \
        --cert "$dir/server.pem" --key "$dir/server.key" --client-ca "$dir/ca.pem" || return 1
    export QV_MTLS_URL=https://127.0.0.1:$_qv_port
    _qv_start_py_server mtls12 "$logdir/mtls12.log" _qv_probe_mtls tls_server.py \
        --cert "$dir/server.pem" --key "$dir/server.key" --client-ca "$dir/ca.pem" \
        --max-tls 1.2 || return 1
    export QV_MTLS12_URL=https://127.0.0.1:$_qv_port
    echo "mtls: $QV_MTLS_URL and $QV_MTLS12_URL (TLS 1.2), certificates in $dir"
}

_qv_probe_socks() {
    # A SOCKS5 greeting offering "no authentication" gets it accepted.
    "$QV_PYTHON" -c 'import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
s.sendall(b"\x05\x01\x00")
sys.exit(s.recv(2) != b"\x05\x00")' "$1" 2>/dev/null
}

# Starts tests/servers/socks.py (SOCKS5 without authentication, SOCKS4 and
# 4a; targets: 127.0.0.1, localhost and any name under .quiver.test, which
# it resolves to 127.0.0.1) on a free loopback port, exports QV_SOCKS_PORT.
qv_start_socks() {
    local logdir
    _qv_logdir "${1:-}" || return 1
    logdir=$_qv_dir
    _qv_start_py_server socks "$logdir/socks.log" _qv_probe_socks socks.py || return 1
    export QV_SOCKS_PORT=$_qv_port
    echo "socks: 127.0.0.1:$QV_SOCKS_PORT (pid $_qv_pid, log $logdir/socks.log)"
}

_qv_probe_auth_proxy() {
    curl -s --noproxy '*' --max-time 2 -o /dev/null -D - "http://127.0.0.1:$1/" |
        grep -qi '^Via: quiver-test-proxy'
}

# Starts tests/servers/proxy.py demanding credentials (QV_AUTH_PROXY_USER,
# QV_AUTH_PROXY_PASSWORD) on a free loopback port; exports
# QV_AUTH_PROXY_URL (without the credentials).
qv_start_auth_proxy() {
    local logdir
    _qv_logdir "${1:-}" || return 1
    logdir=$_qv_dir
    export QV_AUTH_PROXY_USER=quiver QV_AUTH_PROXY_PASSWORD=proxy-secret
    _qv_start_py_server auth_proxy "$logdir/auth_proxy.log" _qv_probe_auth_proxy proxy.py \
        --auth "$QV_AUTH_PROXY_USER:$QV_AUTH_PROXY_PASSWORD" || return 1
    export QV_AUTH_PROXY_URL=http://127.0.0.1:$_qv_port
    echo "auth proxy: $QV_AUTH_PROXY_URL (pid $_qv_pid, log $logdir/auth_proxy.log)"
}

_qv_probe_tls_proxy() {
    curl -s --noproxy '*' --max-time 2 --cacert "$QV_TLS_PROXY_CA" -o /dev/null -D - \
        "https://127.0.0.1:$1/" | grep -qi '^Via: quiver-test-proxy'
}

# Starts tests/servers/proxy.py as an HTTPS proxy (TLS to the proxy, with a
# certificate for 127.0.0.1 from a throwaway CA) on a free loopback port;
# exports QV_TLS_PROXY_URL (https://127.0.0.1:PORT) and QV_TLS_PROXY_CA.
qv_start_tls_proxy() {
    local logdir
    _qv_logdir "${1:-}" || return 1
    logdir=$_qv_dir
    _qv_tls_certs "$logdir/tls_proxy" || return 1
    export QV_TLS_PROXY_CA=$logdir/tls_proxy/ca.pem
    _qv_start_py_server tls_proxy "$logdir/tls_proxy.log" _qv_probe_tls_proxy proxy.py \
        --cert "$logdir/tls_proxy/server.pem" --key "$logdir/tls_proxy/server.key" || return 1
    export QV_TLS_PROXY_URL=https://127.0.0.1:$_qv_port
    echo "tls proxy: $QV_TLS_PROXY_URL (pid $_qv_pid, log $logdir/tls_proxy.log)"
}

_qv_probe_faults() {
    local body
    body=$(curl -s --noproxy '*' --max-time 2 "http://127.0.0.1:$1/ok") && [[ $body == "ok" ]]
}

# Starts tests/servers/faults.py (the fault-injection server: one path per
# misbehaviour, see its docstring; GET /ok answers "ok") on a free loopback
# port, waits until it answers, exports QV_FAULTS_URL and QV_FAULTS_PID.
# LOG_DIR (optional) gets faults.log (one line per request); default: mktemp.
qv_start_faults() {
    local logdir
    _qv_logdir "${1:-}" || return 1
    logdir=$_qv_dir
    _qv_start_py_server faults "$logdir/faults.log" _qv_probe_faults faults.py || return 1
    export QV_FAULTS_URL=http://127.0.0.1:$_qv_port QV_FAULTS_PID=$_qv_pid
    echo "faults: $QV_FAULTS_URL (pid $QV_FAULTS_PID, log $logdir/faults.log)"
}

_qv_probe_sink() {
    local body
    body=$(curl -s --noproxy '*' --max-time 2 "http://127.0.0.1:$1/hello") && [[ $body == "sink" ]]
}

# Starts tests/servers/sink.py (an upload sink: answers the SHA-256 and size
# of any request body it reads; see its docstring) on a free loopback port,
# waits until it answers, exports QV_SINK_URL and QV_SINK_PID.
# LOG_DIR (optional) gets sink.log (one line per request); default: mktemp.
qv_start_sink() {
    local logdir
    _qv_logdir "${1:-}" || return 1
    logdir=$_qv_dir
    _qv_start_py_server sink "$logdir/sink.log" _qv_probe_sink sink.py || return 1
    export QV_SINK_URL=http://127.0.0.1:$_qv_port QV_SINK_PID=$_qv_pid
    echo "sink: $QV_SINK_URL (pid $QV_SINK_PID, log $logdir/sink.log)"
}

# Starts nginx (one worker, see tests/servers/nginx.conf.in) serving /small
# (100 bytes) and /64k (65,536 bytes) over HTTP/1.1 and over HTTPS with HTTP/2,
# /big (64 MiB of random bytes) and /nginx_status (stub_status: connections
# accepted); HTTP/1.1 on a Unix socket too. Exports QV_NGINX_URL,
# QV_NGINX_TLS_URL, QV_NGINX_CA (the CA to trust), QV_NGINX_SOCKET (the
# socket's path) and QV_NGINX_WWW (the directory it serves).
qv_start_nginx() {
    local dir http https pid attempt i
    _qv_logdir "${1:-}" || return 1
    dir=$_qv_dir/nginx
    mkdir -p "$dir/www" "$dir/tmp" || return 1
    _qv_tls_certs "$dir/tls" || return 1
    head -c 100 /dev/zero | tr '\0' 'q' >"$dir/www/small"
    head -c 65536 /dev/urandom >"$dir/www/64k"
    # Large bodies (streaming tests); the bench makes its own, larger one.
    head -c $((64 << 20)) /dev/urandom >"$dir/www/big"
    for attempt in 1 2 3; do
        http=$(qv_free_port) && https=$(qv_free_port) || return 1
        [[ $http != "$https" ]] || continue
        sed -e "s|@DIR@|$dir|g" -e "s|@HTTP_PORT@|$http|g" -e "s|@HTTPS_PORT@|$https|g" \
            "$QV_TEST_SERVERS_DIR/nginx.conf.in" >"$dir/nginx.conf"
        : >"$dir/error.log"
        nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stderr.log" 2>&1 \
            </dev/null &
        pid=$!
        QV_SERVER_PIDS+=("$pid")
        for ((i = 0; i < QV_SERVER_START_TIMEOUT * 10; i++)); do
            if curl -sf --noproxy '*' --max-time 2 -o /dev/null "http://127.0.0.1:$http/small" &&
                curl -sf --noproxy '*' --max-time 2 --cacert "$dir/tls/ca.pem" -o /dev/null \
                    "https://127.0.0.1:$https/small"; then
                export QV_NGINX_URL=http://127.0.0.1:$http QV_NGINX_TLS_URL=https://127.0.0.1:$https
                export QV_NGINX_CA=$dir/tls/ca.pem QV_NGINX_SOCKET=$dir/nginx.sock QV_NGINX_WWW=$dir/www
                echo "nginx: $QV_NGINX_URL and $QV_NGINX_TLS_URL (pid $pid, dir $dir)"
                return 0
            fi
            _qv_alive "$pid" || break
            sleep 0.1
        done
        grep -q 'Address already in use' "$dir/error.log" "$dir/stderr.log" || break
        echo "nginx: a port was taken meanwhile, retrying (attempt $attempt)" >&2
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    echo "nginx: did not come up; log tail:" >&2
    tail -n 20 "$dir/error.log" "$dir/stderr.log" >&2
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
    unset QV_HTTPBIN_URL QV_HTTPBIN_PID QV_TLS_URL QV_TLS_CA QV_TLS_PID QV_PROXY_URL QV_PROXY_PID \
        QV_NGINX_URL QV_NGINX_TLS_URL QV_NGINX_CA QV_FAULTS_URL QV_FAULTS_PID QV_TLS_CAPATH \
        QV_TLS_PIN QV_NGINX_SOCKET QV_MTLS_URL QV_MTLS12_URL QV_MTLS_DIR QV_MTLS_KEY_PASSWORD \
        QV_SOCKS_PORT QV_AUTH_PROXY_URL QV_AUTH_PROXY_USER QV_AUTH_PROXY_PASSWORD \
        QV_TLS_PROXY_URL QV_TLS_PROXY_CA QV_NGINX_WWW QV_SINK_URL QV_SINK_PID
}
