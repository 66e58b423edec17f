#!/usr/bin/env bash
# Benchmark on loopback: the same load, in alternating rounds, against the upstream directly, kedge,
# nginx and haproxy (WORKERS workers / threads each, 1 by default), for five workloads:
#   http    HTTP/1.1 keep-alive (wrk)                  -> upstream nginx (HTTP/1.1)
#   https   HTTPS, HTTP/2 over TLS (h2load, ALPN h2)   -> upstream nginx (HTTP/1.1)
#   grpc    gRPC unary, h2c (h2load, framed request)   -> bench/grpc-upstream.ts
#   stream  gRPC server-streaming, h2c (bench/grpc-stream-client.ts) -> bench/grpc-upstream.ts
#   body    HTTP/1.1 POST of a 1 MB body (wrk + bench/post-body.lua) -> upstream nginx
# plus kedge's idle RSS (one process, and the supervisor and each worker of `workers: 2`), its RSS
# with 10,000 idle keep-alive connections held, and its start-up time (bench/startup.ts,
# bench/idle-workers.ts, bench/idle-conns.ts). Markdown report: bench/results/latest.md (bench/report.ts).
# See bench/README.md for what each number means.
#
# Knobs (env): ROUNDS=3 DURATION=5 (s per measured run) WARMUP=2 (s, per target, unmeasured)
#   WORKLOADS="http https grpc stream body" RESOURCES=1 (0: skip idle/10k/start-up)
#   http: CONNS=50 THREADS=1 (wrk)          https: H2_CONNS=10 H2_STREAMS=10 (h2load -c / -m)
#   grpc: GRPC_CONNS=10 GRPC_STREAMS=10     stream: STREAM_CONNS=10 STREAM_CALLS=10 STREAM_MSGS=100
#   body: BODY_CONNS=10 BODY_BYTES=1048576  resources: IDLE_CONNS=10000 IDLE_HOLD=5 STARTS=9 IDLE_SETTLE=2
#   KEDGE_BIN=path: measure that binary instead of (re)building dist/kedge
#   WORKERS="1" (kedge workers, nginx worker_processes, haproxy nbthread; "1 2": both, alternating,
#   and the scaling from one to the other)
set -euo pipefail

ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-5} WARMUP=${WARMUP:-2}
WORKLOADS=${WORKLOADS:-"http https grpc stream body"} RESOURCES=${RESOURCES:-1} PROXY_HEADERS=${PROXY_HEADERS:-1}
CONNS=${CONNS:-50} THREADS=${THREADS:-1}
H2_CONNS=${H2_CONNS:-10} H2_STREAMS=${H2_STREAMS:-10}
GRPC_CONNS=${GRPC_CONNS:-10} GRPC_STREAMS=${GRPC_STREAMS:-10}
STREAM_CONNS=${STREAM_CONNS:-10} STREAM_CALLS=${STREAM_CALLS:-10} STREAM_MSGS=${STREAM_MSGS:-100}
BODY_CONNS=${BODY_CONNS:-10} BODY_BYTES=${BODY_BYTES:-1048576}
IDLE_CONNS=${IDLE_CONNS:-10000} IDLE_HOLD=${IDLE_HOLD:-5} STARTS=${STARTS:-9} IDLE_SETTLE=${IDLE_SETTLE:-2}
# Every TLS 1.3 handshake negotiates the same cipher, whatever each server prefers (kedge's
# BoringSSL would pick AES-128-GCM, OpenSSL's nginx and haproxy AES-256-GCM).
TLS13_CIPHERS=${TLS13_CIPHERS:-TLS_AES_128_GCM_SHA256}
WORKERS=${WORKERS:-1}

read -ra WL <<<"$WORKLOADS"
read -ra WK <<<"$WORKERS"
for n in "${WK[@]}"; do
  [[ $n =~ ^[1-9][0-9]?$ ]] || { echo "WORKERS: each count must be a whole number from 1 to 99, got $n" >&2; exit 2; }
done
((${#WK[@]} >= 1)) && [[ $(printf '%s\n' "${WK[@]}" | sort -u | wc -l) == "${#WK[@]}" ]] ||
  { echo "WORKERS: one or more distinct counts, e.g. \"1 2\"" >&2; exit 2; }
# A target is a proxy at one worker count (kedge2: kedge with 2 workers); direct (the upstream
# itself) does not depend on the count and runs once per round.
TARGETS=(direct)
for n in "${WK[@]}"; do TARGETS+=("kedge$n" "nginx$n" "haproxy$n"); done
proxy_of() { echo "${1%%[0-9]*}"; }     # kedge2 -> kedge
workers_in() { echo "${1##*[a-z]}"; }  # kedge2 -> 2
for w in "${WL[@]}"; do
  case $w in http | https | grpc | stream | body) ;; *) echo "unknown workload $w (http https grpc stream body)" >&2; exit 2 ;; esac
done
for v in ROUNDS DURATION WARMUP CONNS THREADS H2_CONNS H2_STREAMS GRPC_CONNS GRPC_STREAMS STREAM_CONNS \
  STREAM_CALLS STREAM_MSGS BODY_CONNS BODY_BYTES IDLE_CONNS IDLE_HOLD STARTS IDLE_SETTLE; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a positive integer" >&2; exit 2; }
done
[[ $RESOURCES == [01] ]] || { echo "RESOURCES must be 0 or 1" >&2; exit 2; }
# Load time is workloads x targets (direct + 3 per worker count) x (rounds x duration + warm-up). Capped so that `npm run bench`
# stays under ~8 minutes including set-up and the resource measurements; a longer run would also
# hide a hang.
LOAD_S=$((${#WL[@]} * ${#TARGETS[@]} * (ROUNDS * DURATION + WARMUP)))
if ((LOAD_S > 400)); then
  echo "ROUNDS/DURATION/WARMUP too large: ${LOAD_S}s of load > 400s (keep the run under ~8 minutes; fewer WORKLOADS allow more, e.g. WORKERS=\"1 2\" WORKLOADS=\"http https grpc\")" >&2
  exit 2
fi
((IDLE_HOLD <= 30 && STARTS <= 30)) || { echo "IDLE_HOLD and STARTS are capped at 30" >&2; exit 2; }

cd "$(dirname "$0")/.."
ROOT=$PWD
RESULTS=$ROOT/bench/results
BUN=$ROOT/node_modules/.bin/bun

log() { echo "bench: $*" >&2; }

# --- prerequisites ---------------------------------------------------------------------------
missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  log "installing ${missing[*]} (Debian packages)"
  $SUDO apt-get update -qq
  # Debian's postinst may start the system nginx/haproxy services; ours run on their own ports and
  # files, and those services are left as the package manager set them up.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[[ -x $BUN ]] || { log "installing npm dependencies"; npm ci --silent; }
if [[ -n ${KEDGE_BIN:-} ]]; then
  KEDGE_BIN=$(realpath "$KEDGE_BIN")
  [[ -x $KEDGE_BIN ]] || { log "KEDGE_BIN=$KEDGE_BIN is not executable"; exit 2; }
else
  KEDGE_BIN=$ROOT/dist/kedge
  # Any source file newer than the binary means the binary would not measure the current code.
  if [[ ! -x dist/kedge ]] || [[ -n $(find src package.json -newer dist/kedge -print -quit) ]]; then
    log "building dist/kedge"
    npm run --silent build >/dev/null
  fi
fi

# 10,000 client connections need 10,000 descriptors in kedge and in the client (each inherits this).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if ((RESOURCES)) && [[ $(ulimit -n) =~ ^[0-9]+$ ]] && (($(ulimit -n) < IDLE_CONNS + 200)); then
  log "ulimit -n is $(ulimit -n): too low for IDLE_CONNS=$IDLE_CONNS, expect failed connections"
fi

# --- temp dir and cleanup ----------------------------------------------------------------------
TMP=$(mktemp -d /tmp/kedge-bench.XXXXXX)
# h2load's per-request log gets a directory of its own: kedge watches the directory of its config
# and certificate files ($TMP), and a write there per request woke it (inotify) thousands of times a second.
mkdir -p "$TMP/load"
PIDS=()   # everything we started; killed in reverse order on exit
stop_pid() {  # pid: TERM, up to 3s, then KILL
  kill -TERM "$1" 2>/dev/null || return 0
  # kedge drains for up to graceful_shutdown (10s); don't make the user wait for that.
  for _ in $(seq 30); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
forget_pid() {  # pid: stopped already, drop it from PIDS
  local keep=() p
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
cleanup() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port nothing answers on. Racy in theory, fine on a bench box; `taken` avoids picking one twice.
# Picked outside the ephemeral range: a client socket's TIME_WAIT on a port (thousands after the
# idle-connections test) makes bind() on it fail, even with SO_REUSEADDR.
read -r EPH_LO EPH_HI </proc/sys/net/ipv4/ip_local_port_range
if ((EPH_LO - 10000 >= 4000)); then PORT_BASE=10000 PORT_SPAN=$((EPH_LO - 10000))
elif ((65535 - EPH_HI >= 4000)); then PORT_BASE=$((EPH_HI + 1)) PORT_SPAN=$((65535 - EPH_HI))
else PORT_BASE=20000 PORT_SPAN=40000; fi
taken=" "
free_port() {
  local p
  while :; do
    p=$((PORT_BASE + RANDOM % PORT_SPAN))
    [[ $taken == *" $p "* ]] && continue
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    taken+="$p "; echo "$p"; return
  done
}
retry() {  # description, command...: up to 10s
  local what=$1; shift
  for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "timed out waiting for $what"; return 1
}

# Ports. U_*: upstreams; K_*/N_*/H_*: kedge, nginx, haproxy per workload; KA_*: kedge admin ports.
declare -A PORT
for w in http https grpc stream body; do
  PORT[up/$w]=$(free_port)
  for t in "${TARGETS[@]:1}"; do PORT[$w/$t]=$(free_port); PORT[admin/$w/$t]=$(free_port); done
done
PORT[https/direct]=$(free_port)  # the upstream's own TLS listener
for w in http grpc stream body; do PORT[$w/direct]=${PORT[up/$w]}; done
# The resource measurements' kedge (bench/startup.ts, bench/idle-conns.ts): every listener on.
for l in http tls h2c admin; do PORT[res/$l]=$(free_port); done

# --- TLS material --------------------------------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$TMP/tls.key" -out "$TMP/tls.crt" 2>/dev/null
cat "$TMP/tls.crt" "$TMP/tls.key" >"$TMP/tls.pem"  # haproxy wants both in one file

# --- nginx instances ---------------------------------------------------------------------------
# Own prefix, pid, logs and temp paths so no system nginx file is touched. keepalive_requests is
# raised everywhere so no target pays for reconnects the others don't (nginx default is 1000).
# Every upstream nginx answers /_bench/status (stub_status): its accepted-connection counter shows
# how many upstream connections each run opened.
NGINX_WORKERS=1
nginx_conf() {  # name, http-level lines, server-level lines; worker_processes $NGINX_WORKERS
  cat >"$TMP/$1.conf" <<EOF
worker_processes $NGINX_WORKERS;
daemon off;
pid $TMP/$1.pid;
error_log $TMP/$1.err warn;
events { worker_connections 20000; }
http {
  access_log off;
  default_type text/plain;
  client_body_temp_path $TMP/$1-body;
  proxy_temp_path $TMP/$1-proxy;
  fastcgi_temp_path $TMP/$1-fastcgi;
  uwsgi_temp_path $TMP/$1-uwsgi;
  scgi_temp_path $TMP/$1-scgi;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  http2_max_concurrent_streams 128;
  ssl_certificate $TMP/tls.crt;
  ssl_certificate_key $TMP/tls.key;
  ssl_protocols TLSv1.2 TLSv1.3;
  $2
  server {
    $3
  }
}
EOF
}
start_nginx() {  # name
  nginx -p "$TMP" -e "$TMP/$1.err" -c "$TMP/$1.conf" &
  PIDS+=($!)
}

UPSTREAM_LOCATIONS='location / { return 200 "hello world\n"; } location = /_bench/status { stub_status; }'
nginx_conf up-http "" "listen 127.0.0.1:${PORT[up/http]}; $UPSTREAM_LOCATIONS"
nginx_conf up-https "" "listen 127.0.0.1:${PORT[up/https]}; listen 127.0.0.1:${PORT[https/direct]} ssl http2; $UPSTREAM_LOCATIONS"
# What kedge does to every HTTP request and response, asked of nginx and haproxy too: X-Forwarded-For,
# -Proto and -Host and a request id to the backend; the request id and the backend's name to the client.
# PROXY_HEADERS=0: they proxy bare, as before 2026-11-24 (kedge still adds its headers).
PROXY_PASS='proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";'
((PROXY_HEADERS)) && PROXY_PASS+='
  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto $scheme;
  proxy_set_header X-Forwarded-Host $host; proxy_set_header X-Request-Id $request_id;
  add_header X-Request-Id $request_id always; add_header X-Backend-Name up always;'
# nginx keeps at most `keepalive` idle upstream connections: sized for every request in flight, or
# it would close and reopen upstream connections on every request beyond that.
keepalive_pool() { echo "upstream up { server 127.0.0.1:$1; keepalive $(($2 > 64 ? $2 : 64)); keepalive_requests 1000000; keepalive_timeout 120s; }"; }
# Body upstream: answers only once it has read the whole body (in memory), like an application
# would. `return` alone answers before reading it, and a proxy that gets the answer while still
# sending the body has to close one of its connections (nginx proxy_pass then drops the client's).
# The body is read by proxy_pass (its request buffering) and not forwarded: the same nginx answers
# a bodiless /_bench/ok over a kept-alive connection to itself.
nginx_conf up-body "client_max_body_size 0; client_body_buffer_size $((BODY_BYTES + 65536)); $(keepalive_pool "${PORT[up/body]}" 16)" \
  "listen 127.0.0.1:${PORT[up/body]};
    location / { proxy_pass http://up/_bench/ok; proxy_http_version 1.1; proxy_set_header Connection \"\";
      proxy_pass_request_body off; proxy_set_header Content-Length \"\"; }
    location = /_bench/ok { return 200 \"hello world\\n\"; }
    location = /_bench/status { stub_status; }"

# One nginx per workload and worker count. With more than one worker it listens with `reuseport`,
# so the kernel spreads connections over its workers as it does over kedge's (SO_REUSEPORT), rather
# than whichever worker epoll wakes first.
GRPC_INFLIGHT=$((GRPC_CONNS * GRPC_STREAMS)) STREAM_INFLIGHT=$((STREAM_CONNS * STREAM_CALLS))
for n in "${WK[@]}"; do
  NGINX_WORKERS=$n reuse=""; ((n > 1)) && reuse=" reuseport"
  nginx_conf "nginx-http-$n" "$(keepalive_pool "${PORT[up/http]}" "$CONNS")" \
    "listen 127.0.0.1:${PORT[http/nginx$n]}$reuse; location / { $PROXY_PASS }"
  nginx_conf "nginx-https-$n" "$(keepalive_pool "${PORT[up/https]}" $((H2_CONNS * H2_STREAMS)))" \
    "listen 127.0.0.1:${PORT[https/nginx$n]} ssl http2$reuse; location / { $PROXY_PASS }"
  # Streamed to the upstream like kedge and haproxy do, instead of spooled to a temp file first.
  nginx_conf "nginx-body-$n" "client_max_body_size 0; $(keepalive_pool "${PORT[up/body]}" "$BODY_CONNS")" \
    "listen 127.0.0.1:${PORT[body/nginx$n]}$reuse; location / { $PROXY_PASS proxy_request_buffering off; }"
  # gRPC: plaintext HTTP/2 (h2c prior knowledge) listener. nginx does not multiplex upstream: one
  # upstream connection per in-flight call, so the keepalive pool covers all the calls in flight.
  for w in grpc stream; do
    inflight=$GRPC_INFLIGHT; [[ $w == stream ]] && inflight=$STREAM_INFLIGHT
    nginx_conf "nginx-$w-$n" "$(keepalive_pool "${PORT[up/$w]}" "$inflight")" \
      "listen 127.0.0.1:${PORT[$w/nginx$n]} http2$reuse; location / { grpc_pass grpc://up; }"
  done
done
NGINX_WORKERS=1
((GRPC_STREAMS <= 128 && STREAM_CALLS <= 128)) || { log "GRPC_STREAMS/STREAM_CALLS > 128 (http2_max_concurrent_streams)"; exit 2; }
((H2_STREAMS <= 100)) || { log "H2_STREAMS > 100 (haproxy's default h2 stream limit)"; exit 2; }

# --- haproxy instances -------------------------------------------------------------------------
# One thread like nginx's one worker and kedge's one JS thread; HTTP mode on both sides, idle
# server connections reused by any client (`http-reuse always`, like the other two's pools) and
# kept for 120s like theirs (haproxy's default purges idle ones every 5s, so each round would
# start by reconnecting after the other targets' runs).
haproxy_conf() {  # name, bind parameters, server parameters, upstream port, frontend lines, nbthread
  cat >"$TMP/$1.cfg" <<EOF
global
  nbthread ${6:-1}
  maxconn 4096
defaults
  mode http
  maxconn 4096
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  timeout http-keep-alive 120s
  http-reuse always
  default-server pool-purge-delay 120s
frontend fe
  bind 127.0.0.1:$2
  ${5:-}
  default_backend be
backend be
  server up 127.0.0.1:$4 $3
EOF
}
# The HTTP frontends do what kedge does (see PROXY_PASS); the gRPC ones pass calls through as they are.
haproxy_http() {  # scheme
  ((PROXY_HEADERS)) || return 0
  echo "option forwardfor
  http-request set-header X-Forwarded-Proto $1
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  unique-id-format %{+X}o%ci%cp%fi%fp%Ts%rt%pid
  unique-id-header X-Request-Id
  http-response set-header X-Request-Id %[unique-id]
  http-response set-header X-Backend-Name %b"
}
for n in "${WK[@]}"; do
  haproxy_conf "haproxy-http-$n" "${PORT[http/haproxy$n]}" "" "${PORT[up/http]}" "$(haproxy_http http)" "$n"
  haproxy_conf "haproxy-https-$n" "${PORT[https/haproxy$n]} ssl crt $TMP/tls.pem alpn h2,http/1.1" "" "${PORT[up/https]}" "$(haproxy_http https)" "$n"
  haproxy_conf "haproxy-grpc-$n" "${PORT[grpc/haproxy$n]} proto h2" "proto h2" "${PORT[up/grpc]}" "" "$n"
  haproxy_conf "haproxy-stream-$n" "${PORT[stream/haproxy$n]} proto h2" "proto h2" "${PORT[up/stream]}" "" "$n"
  haproxy_conf "haproxy-body-$n" "${PORT[body/haproxy$n]}" "" "${PORT[up/body]}" "$(haproxy_http http)" "$n"
done
start_haproxy() {  # name; -db: foreground, one process (no master): its pid is the one measured
  haproxy -db -f "$TMP/$1.cfg" >"$TMP/$1.out" 2>"$TMP/$1.err" &
  PIDS+=($!)
}

# --- kedge configs ---------------------------------------------------------------------------
kedge_conf() {  # name, server fields, route section, workers
  cat >"$TMP/$1.json" <<EOF
{"server":{"bind_address":"127.0.0.1",$2,"log_level":"error","workers":${4:-1}},
 $3}
EOF
}
http_routes() { echo "\"http\":{\"backends\":[{\"name\":\"bench\",\"static\":{\"addresses\":[\"127.0.0.1:$1\"]}}],\"routes\":[{\"backend_name\":\"bench\",\"path_rules\":[\"/*\"]}]}"; }
grpc_routes() { echo "\"grpc\":{\"backends\":[{\"name\":\"bench_grpc\",\"static\":{\"addresses\":[\"127.0.0.1:$1\"]}}],\"routes\":[{\"backend_name\":\"bench_grpc\",\"service_name_matcher\":\"*\"}]}"; }
TLS_FILES="\"tls_cert_file\":\"$TMP/tls.crt\",\"tls_key_file\":\"$TMP/tls.key\""
# One process (tree) per workload and worker count, so CPU and peak RSS of each are that target's own.
for n in "${WK[@]}"; do
  t=kedge$n
  kedge_conf "kedge-http-$n" "\"http_port\":${PORT[http/$t]},\"admin_port\":${PORT[admin/http/$t]}" "$(http_routes "${PORT[up/http]}")" "$n"
  kedge_conf "kedge-https-$n" "\"http_tls_port\":${PORT[https/$t]},$TLS_FILES,\"admin_port\":${PORT[admin/https/$t]}" "$(http_routes "${PORT[up/https]}")" "$n"
  kedge_conf "kedge-grpc-$n" "\"h2c_port\":${PORT[grpc/$t]},\"admin_port\":${PORT[admin/grpc/$t]}" "$(grpc_routes "${PORT[up/grpc]}")" "$n"
  kedge_conf "kedge-stream-$n" "\"h2c_port\":${PORT[stream/$t]},\"admin_port\":${PORT[admin/stream/$t]}" "$(grpc_routes "${PORT[up/stream]}")" "$n"
  kedge_conf "kedge-body-$n" "\"http_port\":${PORT[body/$t]},\"admin_port\":${PORT[admin/body/$t]}" "$(http_routes "${PORT[up/body]}")" "$n"
done
# Resource measurements: an edge-like config with every listener and both kinds of routes, one
# process (workers: 1), so startup.ts and idle-conns.ts read the RSS of the process that serves.
kedge_conf kedge-res "\"http_port\":${PORT[res/http]},\"http_tls_port\":${PORT[res/tls]},\"h2c_port\":${PORT[res/h2c]},$TLS_FILES,\"admin_port\":${PORT[res/admin]}" \
  "$(http_routes "${PORT[up/http]}"), $(grpc_routes "${PORT[up/grpc]}")"
# The same with 2 workers, for the issue's per-worker target: bench/idle-workers.ts reads the RSS and
# PSS of the supervisor and of each worker.
kedge_conf kedge-res-2 "\"http_port\":${PORT[res/http]},\"http_tls_port\":${PORT[res/tls]},\"h2c_port\":${PORT[res/h2c]},$TLS_FILES,\"admin_port\":${PORT[res/admin]}" \
  "$(http_routes "${PORT[up/http]}"), $(grpc_routes "${PORT[up/grpc]}")" 2
start_kedge() {  # name
  "$KEDGE_BIN" --config "$TMP/$1.json" >"$TMP/$1.out" 2>"$TMP/$1.err" &
  PIDS+=($!)
}

# --- start everything ------------------------------------------------------------------------
declare -A PID_OF   # upstream name or workload/target -> pid (nginx: the master; kedge: the supervisor)
for n in up-http up-https up-body; do start_nginx "$n"; PID_OF[$n]=${PIDS[-1]}; done
for w in grpc stream; do
  "$BUN" bench/grpc-upstream.ts "${PORT[up/$w]}" "$STREAM_MSGS" >"$TMP/up-$w.out" 2>"$TMP/up-$w.err" &
  PIDS+=($!); PID_OF[up-$w]=$!
done
for w in "${WL[@]}"; do
  for n in "${WK[@]}"; do
    start_kedge "kedge-$w-$n"; PID_OF[$w/kedge$n]=${PIDS[-1]}
    start_nginx "nginx-$w-$n"; PID_OF[$w/nginx$n]=${PIDS[-1]}
    start_haproxy "haproxy-$w-$n"; PID_OF[$w/haproxy$n]=${PIDS[-1]}
  done
done

# One gRPC call: 5-byte gRPC prefix (uncompressed, big-endian length) + message; the upstream
# ignores the message. Unary answers one 17-byte message, /Stream answers STREAM_MSGS of them.
GRPC_PATH=/bench.Echo/Unary STREAM_PATH=/bench.Echo/Stream
printf '\x00\x00\x00\x00\x05hello' >"$TMP/grpc-request.bin"
grpc_call() {  # url, response body file; prints response headers and trailers
  curl -sS --http2-prior-knowledge --max-time 5 -D - -o "$2" -H 'content-type: application/grpc' \
    -H 'te: trailers' --data-binary @"$TMP/grpc-request.bin" "$1"
}
head -c "$BODY_BYTES" /dev/zero | tr '\0' x >"$TMP/body.bin"

declare -A URL
for w in http body; do for t in "${TARGETS[@]}"; do URL[$w/$t]="http://127.0.0.1:${PORT[$w/$t]}/"; done; done
for t in "${TARGETS[@]}"; do
  URL[https/$t]="https://127.0.0.1:${PORT[https/$t]}/"
  URL[grpc/$t]="http://127.0.0.1:${PORT[grpc/$t]}$GRPC_PATH"
  URL[stream/$t]="http://127.0.0.1:${PORT[stream/$t]}$STREAM_PATH"
done

for n in up-http up-body; do retry "$n" curl -sf "http://127.0.0.1:${PORT[up/${n#up-}]}/"; done
retry up-https curl -sf "http://127.0.0.1:${PORT[up/https]}/"
for w in grpc stream; do retry "up-$w" grpc_call "${URL[$w/direct]}" /dev/null; done
for w in "${WL[@]}"; do
  for t in "${TARGETS[@]:1}"; do
    [[ $(proxy_of "$t") == kedge ]] && retry "$t-$w admin" curl -sf "http://127.0.0.1:${PORT[admin/$w/$t]}/_healthz"
    case $w in
      https) retry "$t-$w" curl -skf "${URL[$w/$t]}" ;;
      grpc | stream) retry "$t-$w" grpc_call "${URL[$w/$t]}" /dev/null ;;
      *) retry "$t-$w" curl -sf "${URL[$w/$t]}" ;;
    esac
  done
done

# --- every target must do the same work ------------------------------------------------------
fail_verify() { log "$1"; tail -n 5 "$TMP"/*.err >&2; exit 1; }
for w in "${WL[@]}"; do
  for t in "${TARGETS[@]}"; do
    u=${URL[$w/$t]}
    case $w in
      http)
        body=$(curl -sf -D "$TMP/head-$t" "$u") || fail_verify "GET $u failed"
        [[ $body == "hello world" ]] || fail_verify "unexpected body from $u: $body"
        # The proxies tag the response with a request id (kedge's x-kedge-request-id; PROXY_PASS).
        [[ $t == direct || ($(proxy_of "$t") != kedge && $PROXY_HEADERS == 0) ]] || grep -qiE '^x-(kedge-)?request-id: ' "$TMP/head-$t" || fail_verify "$u: no request id in the response" ;;
      https)
        got=$(curl -skf --http2 -w '|%{http_version}' "$u") || fail_verify "GET $u failed"
        [[ $got == $'hello world\n|2' ]] || fail_verify "$u: expected 'hello world' over HTTP/2, got: $got" ;;
      body)
        got=$(curl -sf -H 'content-type: application/octet-stream' --data-binary @"$TMP/body.bin" "$u") ||
          fail_verify "POST $BODY_BYTES bytes to $u failed"
        [[ $got == "hello world" ]] || fail_verify "unexpected body from $u: $got" ;;
      grpc | stream)
        # HTTP 200, grpc-status 0 in the trailers and byte for byte the upstream's messages.
        # Up to three tries: the Bun node:http2 upstream leaves ~3% of streaming calls without their
        # trailers (direct calls too, 2026-11-24), which would otherwise stop one run in ten.
        for try in 1 2 3; do
          hdrs=$(grpc_call "$u" "$TMP/grpc-response-$w-$t.bin" | tr -d '\r') && break
          ((try < 3)) || fail_verify "gRPC call to $t at $u failed three times"
          log "gRPC call to $t at $u failed (try $try of 3)"
        done
        if ! grep -q '^HTTP/2 200' <<<"$hdrs" || ! grep -qx 'grpc-status: 0' <<<"$hdrs"; then
          echo "$hdrs" >&2; fail_verify "gRPC call to $u did not return grpc-status 0"
        fi
        cmp -s "$TMP/grpc-response-$w-direct.bin" "$TMP/grpc-response-$w-$t.bin" ||
          fail_verify "gRPC response from $u differs from the upstream's" ;;
    esac
  done
done
GRPC_MESSAGE_BYTES=17
if [[ -f $TMP/grpc-response-stream-direct.bin ]]; then
  size=$(stat -c %s "$TMP/grpc-response-stream-direct.bin")
  ((size == STREAM_MSGS * GRPC_MESSAGE_BYTES)) || fail_verify "stream upstream sent $size bytes, not $STREAM_MSGS messages"
fi

# --- what is measured --------------------------------------------------------------------------
# The processes whose cost is attributed to a target, all of them: kedge's supervisor and its
# workers, nginx's master and workers, the haproxy process (one, with its threads); for direct, the
# upstream itself. Looked up again before every run, so a restarted kedge worker is followed.
declare -A UPSTREAM_PID UPSTREAM_STATUS
for w in http https body grpc stream; do
  UPSTREAM_PID[$w]=${PID_OF[up-$w]}
  UPSTREAM_STATUS[$w]="http://127.0.0.1:${PORT[up/$w]}/_bench/status"
done
tree_of() { echo "$1 $(pgrep -P "$1" | tr '\n' ' ')"; }  # a process and its children
measured_pids() {  # workload, target
  if [[ $2 == direct ]]; then tree_of "${UPSTREAM_PID[$1]}"; else tree_of "${PID_OF[$1/$2]}"; fi
}
for w in "${WL[@]}"; do
  for t in "${TARGETS[@]}"; do
    pids=$(measured_pids "$w" "$t") n=1; [[ $t == direct ]] || n=$(workers_in "$t")
    read -ra ps <<<"$pids"
    # nginx: master + n workers; kedge: one process, or a supervisor + n workers; haproxy: one.
    case $(proxy_of "$t") in
      nginx) want=$((n + 1)) ;; kedge) want=$((n > 1 ? n + 1 : 1)) ;; haproxy) want=1 ;; *) want=0 ;;
    esac
    ((want == 0 || ${#ps[@]} == want)) || fail_verify "$w $t: expected $want processes, found ${#ps[@]} ($pids)"
  done
done

# utime+stime (fields 14, 15) of each pid, in order. comm (field 2) may hold spaces: cut after ')'.
cpu_ticks_each() {
  local pid s f out=()
  for pid in $1; do
    s=$(<"/proc/$pid/stat"); s=${s##*) }; read -ra f <<<"$s"
    out+=($((f[11] + f[12])))
  done
  echo "${out[*]}"
}
sum() { local x t=0; for x in $1; do t=$((t + x)); done; echo "$t"; }
cpu_ticks() { sum "$(cpu_ticks_each "$1")"; }
# The sum of each process's peak (VmHWM): what the target as a whole held at most, give or take
# pages its processes share and peaks that did not coincide.
peak_rss_kb() {
  local pid total=0 kb
  for pid in $1; do
    kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status"); total=$((total + kb))
  done
  echo "$total"
}
# Connections the upstream has accepted so far (nginx stub_status, or the gRPC upstream's count of
# HTTP/2 sessions), not counting the one asking.
upstream_accepts() {  # workload
  local out
  case $1 in
    grpc | stream) out=$(curl -sf --http2-prior-knowledge --max-time 2 "${UPSTREAM_STATUS[$1]}") || { echo -1; return; } ;;
    *) out=$(curl -sf --max-time 2 "${UPSTREAM_STATUS[$1]}" | sed -n 3p | awk '{print $1}') || { echo -1; return; } ;;
  esac
  echo "${out:--1}"
}

# h2load --log-file rows are: start time (µs), HTTP status (-1: stream failed), µs to end of
# response. h2load itself prints no percentiles; nearest-rank ones are computed here.
latency_summary() {  # log file
  if [[ ! -s $1 ]]; then echo "bench: h2load wrote no per-request log"; return; fi
  awk -F'\t' '{ n[$2]++ } END { printf "bench: log statuses"; for (s in n) printf " %s=%d", s, n[s]; print "" }' "$1"
  awk -F'\t' '$2 != -1 { print $3 }' "$1" | sort -n | awk '
    function pct(p,  i) { i = int((p * NR + 99) / 100); return v[i < 1 ? 1 : i] }
    { v[NR] = $1 }
    END { if (NR) printf "bench: latency us n=%d p50=%d p90=%d p99=%d max=%d\n", NR, pct(50), pct(90), pct(99), v[NR] }'
  rm -f "$1"
}

run_load() {  # workload, seconds, url, outfile; timeout guards against the load tool itself hanging
  local lim=$(($2 + 20))
  case $1 in
    http) timeout $lim wrk -t"$THREADS" -c"$CONNS" -d"$2s" --timeout 2s --latency "$3" >"$4" 2>&1 || true ;;
    body)
      timeout $lim wrk -t"$THREADS" -c"$BODY_CONNS" -d"$2s" --timeout 5s --latency -s bench/post-body.lua "$3" -- "$BODY_BYTES" \
        >"$4" 2>&1 || true
      echo "bench: request body bytes $BODY_BYTES" >>"$4" ;;
    https)
      timeout $lim h2load -t1 -c"$H2_CONNS" -m"$H2_STREAMS" -D "$2" --tls13-ciphers="$TLS13_CIPHERS" \
        --log-file="$TMP/load/h2load.log" "$3" >"$4" 2>&1 || true
      latency_summary "$TMP/load/h2load.log" >>"$4"
      echo "bench: expected response data bytes 12" >>"$4" ;;  # "hello world\n"
    grpc)
      timeout $lim h2load -t1 -c"$GRPC_CONNS" -m"$GRPC_STREAMS" -D "$2" -d "$TMP/grpc-request.bin" \
        -H 'content-type: application/grpc' -H 'te: trailers' --log-file="$TMP/load/h2load.log" "$3" >"$4" 2>&1 || true
      latency_summary "$TMP/load/h2load.log" >>"$4"
      # An OK call carries exactly this many DATA bytes; report.ts checks the total against it.
      echo "bench: expected response data bytes $GRPC_MESSAGE_BYTES" >>"$4" ;;
    stream)
      local hostport=${3#http://} path
      path=/${hostport#*/}; hostport=${hostport%%/*}
      timeout $lim "$BUN" bench/grpc-stream-client.ts "${hostport#*:}" "$path" "$STREAM_CONNS" "$STREAM_CALLS" "$2" \
        "$STREAM_MSGS" >"$4" 2>&1 || true ;;
  esac
}
result_line() {  # workload, outfile
  case $1 in
    http | body) grep -h 'Requests/sec' "$2" || echo 'no result' ;;
    https | grpc) { grep -h '^finished in' "$2" && grep -h '^requests:' "$2"; } | tr '\n' ' ' || echo 'no result' ;;
    stream) grep -h '^bench-stream:' "$2" | cut -d' ' -f2-8 || echo 'no result' ;;
  esac
}
describe() {  # workload
  case $1 in
    http) echo "HTTP/1.1: wrk -t$THREADS -c$CONNS -d${DURATION}s" ;;
    https) echo "HTTPS h2: h2load -c$H2_CONNS -m$H2_STREAMS -D $DURATION over TLS" ;;
    grpc) echo "gRPC unary: h2load -c$GRPC_CONNS -m$GRPC_STREAMS -D $DURATION" ;;
    stream) echo "gRPC server-streaming: $STREAM_CONNS conns x $STREAM_CALLS calls x $STREAM_MSGS messages, ${DURATION}s" ;;
    body) echo "POST $BODY_BYTES bytes: wrk -t$THREADS -c$BODY_CONNS -d${DURATION}s" ;;
  esac
}

mkdir -p "$RESULTS/last-run"; rm -f "$RESULTS/last-run/"*
RAW=$RESULTS/last-run/raw.tsv
printf 'workload\ttarget\tworkers\tround\tcpu_ticks\tupstream_ticks\trss_kb\talive\tupstream_conns\tload_file\tcpu_split\n' >"$RAW"

# --- resources: idle RSS, start-up, 10k idle connections ---------------------------------------
if ((RESOURCES)); then
  log "kedge idle RSS and start-up time ($STARTS starts)"
  timeout 120 "$BUN" bench/startup.ts "$KEDGE_BIN" "$TMP/kedge-res.json" "${PORT[res/http]}" "$STARTS" "$IDLE_SETTLE" \
    >"$RESULTS/last-run/startup.txt" 2>"$TMP/kedge-startup.err" || log "bench/startup.ts failed"
  grep -h '^bench-' "$RESULTS/last-run/startup.txt" >&2 || true
  log "kedge idle RSS with 2 workers"
  timeout 60 "$BUN" bench/idle-workers.ts "$KEDGE_BIN" "$TMP/kedge-res-2.json" "${PORT[res/http]}" 2 "$IDLE_SETTLE" \
    >"$RESULTS/last-run/idle-workers.txt" 2>"$TMP/kedge-idle-workers.err" || log "bench/idle-workers.ts failed"
  grep -h '^bench-' "$RESULTS/last-run/idle-workers.txt" >&2 || true

  log "kedge with $IDLE_CONNS idle keep-alive connections held for ${IDLE_HOLD}s"
  start_kedge kedge-res; KRES=${PIDS[-1]}
  if retry kedge-res curl -sf "http://127.0.0.1:${PORT[res/admin]}/_healthz"; then
    timeout $((IDLE_HOLD + 90)) "$BUN" bench/idle-conns.ts "${PORT[res/http]}" "$KRES" "$IDLE_CONNS" "$IDLE_HOLD" \
      >"$RESULTS/last-run/idle-conns.txt" 2>&1 || log "bench/idle-conns.ts failed"
    kill -0 "$KRES" 2>/dev/null || echo "bench-idle-conns: kedge died" >>"$RESULTS/last-run/idle-conns.txt"
    grep -h '^bench-' "$RESULTS/last-run/idle-conns.txt" >&2 || true
  fi
  stop_pid "$KRES"; forget_pid "$KRES"
fi

# --- load: workloads one after the other, targets alternating within each -----------------------
for w in "${WL[@]}"; do
  # JIT, connection pools and page cache warm up here, unmeasured.
  for t in "${TARGETS[@]}"; do run_load "$w" "$WARMUP" "${URL[$w/$t]}" "$TMP/warmup.txt"; done

  log "measuring $(describe "$w"): $ROUNDS rounds x ${TARGETS[*]}"
  for r in $(seq "$ROUNDS"); do
    for t in "${TARGETS[@]}"; do
      pids=$(measured_pids "$w" "$t") ups=$(measured_pids "$w" direct)
      if ! kill -0 $pids 2>/dev/null; then
        log "$w $t: measured process is gone, skipping round $r"; continue
      fi
      out=$RESULTS/last-run/$w-$t-$r.txt
      before=$(cpu_ticks_each "$pids") ubefore=$(cpu_ticks "$ups") abefore=$(upstream_accepts "$w")
      run_load "$w" "$DURATION" "${URL[$w/$t]}" "$out"
      # A process that exited (a kedge worker restarted: a new pid) spoils the count: the run is
      # reported as one whose target died.
      alive=yes; kill -0 $pids 2>/dev/null && [[ $(measured_pids "$w" "$t") == "$pids" ]] || alive=no
      split=-
      if [[ $alive == yes ]]; then
        read -ra b4 <<<"$before"; read -ra af <<<"$(cpu_ticks_each "$pids")"
        d=(); for i in "${!af[@]}"; do d+=($((af[i] - b4[i]))); done
        ticks=$(sum "${d[*]}") rss=$(peak_rss_kb "$pids") split=$(IFS=/; echo "${d[*]}")
      else
        ticks=0 rss=0; log "$w $t: a process of it exited during round $r"
      fi
      uticks=-1; kill -0 $ups 2>/dev/null && uticks=$(($(cpu_ticks "$ups") - ubefore))
      aafter=$(upstream_accepts "$w") conns=-1
      ((abefore >= 0 && aafter >= 0)) && conns=$((aafter - abefore - 1))
      n=-; [[ $t == direct ]] || n=$(workers_in "$t")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$(proxy_of "$t")" "$n" "$r" "$ticks" "$uticks" "$rss" "$alive" "$conns" "$out" "$split" >>"$RAW"
      log "round $r $w $t: $(result_line "$w" "$out")"
    done
  done
done

# --- report ------------------------------------------------------------------------------------
# kedge runs at log_level error: anything it printed is worth keeping next to the numbers; so is
# anything the gRPC upstreams printed, and nginx's and haproxy's warnings.
for f in "$TMP"/*.err; do
  n=$(basename "$f" .err)
  cp "$f" "$RESULTS/last-run/$n.stderr"
done
export BENCH_META="$(nproc) CPUs, $(nginx -v 2>&1 | sed 's/.*version: //'), $(haproxy -v | head -1 | cut -d' ' -f1-3), \
kedge $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet -- src 2>/dev/null || echo '+dirty') ($KEDGE_BIN), \
$ROUNDS rounds of ${DURATION}s per target, ${WARMUP}s warm-up, \
workers ${WK[*]} (kedge workers, nginx worker_processes$( ((${#WK[@]} > 1 || WK[0] > 1)) && echo " with reuseport above 1"), haproxy nbthread), \
$( ((PROXY_HEADERS)) && echo "nginx and haproxy add kedge's HTTP headers" || echo "nginx and haproxy proxy HTTP bare (PROXY_HEADERS=0)")"
# `wrk --version` exits 1: `|| true`, or set -e would end the run here.
WRK="$(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2 || true)"
H2LOAD="h2load $(h2load --version 2>&1 | sed -n 's/.*nghttp2\//nghttp2 /p')"
BUNV="Bun $("$BUN" --version)"
export BENCH_LOAD_http="$WRK -t$THREADS -c$CONNS -d${DURATION}s, keep-alive, GET / → 12-byte body"
export BENCH_LOAD_https="$H2LOAD -t1 -c$H2_CONNS -m$H2_STREAMS -D $DURATION over TLS 1.3 ($TLS13_CIPHERS, ALPN h2), GET / → 12-byte body; upstream HTTP/1.1"
export BENCH_LOAD_grpc="$H2LOAD -t1 -c$GRPC_CONNS -m$GRPC_STREAMS -D $DURATION (h2c, $GRPC_INFLIGHT calls in flight), upstream bench/grpc-upstream.ts on $BUNV"
export BENCH_LOAD_stream="bench/grpc-stream-client.ts on $BUNV: $STREAM_CONNS h2c connections × $STREAM_CALLS calls in flight ($STREAM_INFLIGHT), ${DURATION}s; each call gets $STREAM_MSGS messages of 17 bytes, one DATA frame each, from bench/grpc-upstream.ts"
export BENCH_LOAD_body="$WRK -t$THREADS -c$BODY_CONNS -d${DURATION}s -s bench/post-body.lua: POST with a $BODY_BYTES-byte body → 12-byte answer"
export BENCH_STREAM_MSGS=$STREAM_MSGS BENCH_BODY_BYTES=$BODY_BYTES BENCH_IDLE_CONNS=$IDLE_CONNS BENCH_TLS13_CIPHERS=$TLS13_CIPHERS
export BENCH_RESOURCES="kedge with every listener (http, https, h2c, admin) and an HTTP and a gRPC route; $STARTS starts; idle RSS read ${IDLE_SETTLE}s after its port listens; $IDLE_CONNS connections held ${IDLE_HOLD}s (ulimit -n $(ulimit -n))"
"$BUN" bench/report.ts "$RAW" "$(getconf CLK_TCK)" "$RESULTS/last-run" | tee "$RESULTS/latest.md"
