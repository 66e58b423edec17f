#!/usr/bin/env bash
# Benchmark on loopback, two workloads in one run:
#   HTTP/1.1:   wrk -> {upstream nginx directly, kedge, nginx proxy_pass} -> upstream nginx
#   gRPC unary: h2load (h2c) -> {gRPC upstream directly, kedge h2c port, nginx grpc_pass}
#               -> gRPC upstream (bench/grpc-upstream.ts)
# Prints Markdown tables (also written to bench/results/latest.md). See bench/README.md.
# Knobs (env): ROUNDS=3 DURATION=5 (seconds per wrk/h2load run) WARMUP=2 (seconds)
#   HTTP: CONNS=50 THREADS=1 (wrk)   gRPC: GRPC_CONNS=10 GRPC_STREAMS=10 (h2load -c / -m)
set -euo pipefail

ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-5} CONNS=${CONNS:-50} THREADS=${THREADS:-1} WARMUP=${WARMUP:-2}
GRPC_CONNS=${GRPC_CONNS:-10} GRPC_STREAMS=${GRPC_STREAMS:-10}
# 2 workloads x 3 targets x (rounds + warm-up) of load: keeps `npm run bench` under 4 minutes
# (including build and start-up); a longer run would hide a hang.
if (( 6 * (ROUNDS * DURATION + WARMUP) > 200 )); then
  echo "ROUNDS*DURATION too large: keep the whole run under 4 minutes" >&2; exit 2
fi

cd "$(dirname "$0")/.."
ROOT=$PWD
RESULTS=$ROOT/bench/results
BUN=$ROOT/node_modules/.bin/bun

log() { echo "bench: $*" >&2; }

# --- prerequisites ---------------------------------------------------------------------------
missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
if ((${#missing[@]})); then
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  log "installing ${missing[*]} (Debian packages)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[[ -x $BUN ]] || { log "installing npm dependencies"; npm ci --silent; }
# Any source file newer than the binary means the binary would not measure the current code.
if [[ ! -x dist/kedge ]] || [[ -n $(find src package.json -newer dist/kedge -print -quit) ]]; then
  log "building dist/kedge"
  npm run --silent build >/dev/null
fi

# --- temp dir and cleanup ----------------------------------------------------------------------
TMP=$(mktemp -d /tmp/kedge-bench.XXXXXX)
PIDS=()   # everything we started; killed in reverse order on exit
cleanup() {
  local pid i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    # kedge drains for up to graceful_shutdown (10s); don't make the user wait for that.
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port nothing answers on. Racy in theory, fine on a bench box; `taken` avoids picking one twice.
taken=" "
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    [[ $taken == *" $p "* ]] && continue
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    taken+="$p "; echo "$p"; return
  done
}
UPORT=$(free_port) NPORT=$(free_port) KPORT=$(free_port) APORT=$(free_port)
# gRPC: upstream, nginx grpc_pass, kedge h2c port, kedge admin port (a second kedge process)
GPORT=$(free_port) GNPORT=$(free_port) GKPORT=$(free_port) GAPORT=$(free_port)

wait_for() {  # url: up to 10s
  for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  log "timed out waiting for $1"; return 1
}

# --- nginx instances ---------------------------------------------------------------------------
# Own prefix, pid, logs and temp paths so no system nginx file is touched. keepalive_requests is
# raised everywhere so no target pays for reconnects the others don't (nginx default is 1000).
nginx_conf() {  # name, port, extra http-level lines, location body[, listen parameters]
  cat >"$TMP/$1.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/$1.pid;
error_log $TMP/$1.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type text/plain;
  client_body_temp_path $TMP/$1-body;
  proxy_temp_path $TMP/$1-proxy;
  fastcgi_temp_path $TMP/$1-fastcgi;
  uwsgi_temp_path $TMP/$1-uwsgi;
  scgi_temp_path $TMP/$1-scgi;
  keepalive_requests 1000000;
  $3
  server {
    listen 127.0.0.1:$2${5:+ $5};
    location / { $4 }
  }
}
EOF
}
start_nginx() {  # name
  nginx -p "$TMP" -e "$TMP/$1.err" -c "$TMP/$1.conf" &
  PIDS+=($!)
}
workers_of() { pgrep -P "$1" | tr '\n' ' '; }

nginx_conf upstream "$UPORT" "" 'return 200 "hello world\n";'
nginx_conf nginxproxy "$NPORT" \
  "upstream bench { server 127.0.0.1:$UPORT; keepalive 64; keepalive_requests 1000000; }" \
  'proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection "";'
# gRPC: plaintext HTTP/2 (h2c prior knowledge) listener. nginx does not multiplex upstream: one
# upstream connection per in-flight call, so the keepalive pool covers all of h2load's streams.
GRPC_INFLIGHT=$((GRPC_CONNS * GRPC_STREAMS))
nginx_conf grpcproxy "$GNPORT" \
  "http2_max_concurrent_streams $((GRPC_STREAMS > 128 ? GRPC_STREAMS : 128));
  upstream grpc_bench { server 127.0.0.1:$GPORT; keepalive $((GRPC_INFLIGHT > 64 ? GRPC_INFLIGHT : 64)); keepalive_requests 1000000; }" \
  'grpc_pass grpc://grpc_bench;' http2
start_nginx upstream;   UP_MASTER=${PIDS[-1]}
start_nginx nginxproxy; NP_MASTER=${PIDS[-1]}
start_nginx grpcproxy;  GN_MASTER=${PIDS[-1]}

# --- gRPC upstream -----------------------------------------------------------------------------
"$BUN" bench/grpc-upstream.ts "$GPORT" >"$TMP/grpc-upstream.out" 2>"$TMP/grpc-upstream.err" &
GUP=$!; PIDS+=("$GUP")

# --- kedge -------------------------------------------------------------------------------------
# One process per workload, so CPU and peak RSS of each are the workload's own.
cat >"$TMP/kedge-http.json" <<EOF
{"server":{"bind_address":"127.0.0.1","http_port":$KPORT,"admin_port":$APORT,"log_level":"error"},
 "http":{"backends":[{"name":"bench","static":{"addresses":["127.0.0.1:$UPORT"]}}],
         "routes":[{"backend_name":"bench","path_rules":["/*"]}]}}
EOF
cat >"$TMP/kedge-grpc.json" <<EOF
{"server":{"bind_address":"127.0.0.1","h2c_port":$GKPORT,"admin_port":$GAPORT,"log_level":"error"},
 "grpc":{"backends":[{"name":"bench_grpc","static":{"addresses":["127.0.0.1:$GPORT"]}}],
         "routes":[{"backend_name":"bench_grpc","service_name_matcher":"*"}]}}
EOF
./dist/kedge --config "$TMP/kedge-http.json" >"$TMP/kedge-http.out" 2>"$TMP/kedge-http.err" &
KEDGE=$!; PIDS+=("$KEDGE")
./dist/kedge --config "$TMP/kedge-grpc.json" >"$TMP/kedge-grpc.out" 2>"$TMP/kedge-grpc.err" &
KEDGE_GRPC=$!; PIDS+=("$KEDGE_GRPC")

# One unary call: 5-byte gRPC prefix (uncompressed, big-endian length) + message; the upstream
# ignores the message and always answers with the same one.
GRPC_PATH=/bench.Echo/Unary
printf '\x00\x00\x00\x00\x05hello' >"$TMP/grpc-request.bin"
grpc_call() {  # port, response body file; prints response headers and trailers
  curl -sS --http2-prior-knowledge --max-time 5 -D - -o "$2" -H 'content-type: application/grpc' \
    -H 'te: trailers' --data-binary @"$TMP/grpc-request.bin" "http://127.0.0.1:$1$GRPC_PATH"
}
wait_for_grpc() {  # port: up to 10s
  for _ in $(seq 100); do grpc_call "$1" /dev/null >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "timed out waiting for gRPC on :$1"; return 1
}

wait_for "http://127.0.0.1:$UPORT/"
wait_for "http://127.0.0.1:$NPORT/"
wait_for "http://127.0.0.1:$APORT/_healthz"
wait_for "http://127.0.0.1:$GAPORT/_healthz"
wait_for_grpc "$GPORT"
wait_for_grpc "$GNPORT"
wait_for_grpc "$GKPORT"
# All three must serve the same body, or we'd be comparing different work.
for p in "$UPORT" "$KPORT" "$NPORT"; do
  body=$(curl -sf "http://127.0.0.1:$p/") || { log "GET :$p failed"; exit 1; }
  [[ $body == "hello world" ]] || { log "unexpected body from :$p: $body"; exit 1; }
done
# gRPC: HTTP 200, grpc-status 0 in the trailers and the upstream's exact message, through each.
for p in "$GPORT" "$GKPORT" "$GNPORT"; do
  hdrs=$(grpc_call "$p" "$TMP/grpc-response-$p.bin" | tr -d '\r') || { log "gRPC call to :$p failed"; exit 1; }
  if ! grep -q '^HTTP/2 200' <<<"$hdrs" || ! grep -qx 'grpc-status: 0' <<<"$hdrs"; then
    log "gRPC call to :$p did not return grpc-status 0:"; echo "$hdrs" >&2
    tail -n 5 "$TMP/grpcproxy.err" "$TMP/kedge-grpc.err" "$TMP/grpc-upstream.err" >&2; exit 1
  fi
  cmp -s "$TMP/grpc-response-$GPORT.bin" "$TMP/grpc-response-$p.bin" ||
    { log "gRPC response from :$p differs from the upstream's"; exit 1; }
done
GRPC_RESPONSE_BYTES=$(stat -c %s "$TMP/grpc-response-$GPORT.bin")
((GRPC_RESPONSE_BYTES > 5)) || { log "gRPC upstream sent no message"; exit 1; }
UP_WORKERS=$(workers_of "$UP_MASTER") NP_WORKERS=$(workers_of "$NP_MASTER") GN_WORKERS=$(workers_of "$GN_MASTER")

WORKLOADS=(http grpc)
TARGETS=(direct kedge nginx)
declare -A URL=(
  [http/direct]="http://127.0.0.1:$UPORT/" [http/kedge]="http://127.0.0.1:$KPORT/" [http/nginx]="http://127.0.0.1:$NPORT/"
  [grpc/direct]="http://127.0.0.1:$GPORT$GRPC_PATH" [grpc/kedge]="http://127.0.0.1:$GKPORT$GRPC_PATH"
  [grpc/nginx]="http://127.0.0.1:$GNPORT$GRPC_PATH")
# The process whose cost we attribute to the target: for direct, the upstream itself.
declare -A MEASURED=(
  [http/direct]="$UP_WORKERS" [http/kedge]="$KEDGE" [http/nginx]="$NP_WORKERS"
  [grpc/direct]="$GUP" [grpc/kedge]="$KEDGE_GRPC" [grpc/nginx]="$GN_WORKERS")
# The upstream's CPU is recorded too, to see whether it rather than the proxy is the bottleneck.
declare -A UPSTREAM=([http]="$UP_WORKERS" [grpc]="$GUP")

# utime+stime (fields 14, 15) summed over pids. comm (field 2) may hold spaces: cut after ')'.
cpu_ticks() {
  local pid s f total=0
  for pid in $1; do
    s=$(<"/proc/$pid/stat"); s=${s##*) }; read -ra f <<<"$s"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}
peak_rss_kb() {
  local pid max=0 kb
  for pid in $1; do
    kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status"); ((kb > max)) && max=$kb
  done
  echo "$max"
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

run_load() {  # workload, seconds, url, outfile; timeout guards against wrk/h2load itself hanging
  case $1 in
    http) timeout $(($2 + 15)) wrk -t"$THREADS" -c"$CONNS" -d"$2s" --timeout 2s --latency "$3" >"$4" 2>&1 || true ;;
    grpc)
      timeout $(($2 + 15)) h2load -t1 -c"$GRPC_CONNS" -m"$GRPC_STREAMS" -D "$2" -d "$TMP/grpc-request.bin" \
        -H 'content-type: application/grpc' -H 'te: trailers' --log-file="$TMP/h2load.log" "$3" >"$4" 2>&1 || true
      latency_summary "$TMP/h2load.log" >>"$4"
      # An OK call carries exactly this many DATA bytes; report.ts checks the total against it.
      echo "bench: expected response data bytes $GRPC_RESPONSE_BYTES" >>"$4" ;;
  esac
}
result_line() {  # workload, outfile
  case $1 in
    http) grep -h 'Requests/sec' "$2" || echo 'no result' ;;
    grpc) { grep -h '^finished in' "$2" && grep -h '^requests:' "$2"; } | tr '\n' ' ' || echo 'no result' ;;
  esac
}

mkdir -p "$RESULTS/last-run"; rm -f "$RESULTS/last-run/"*
RAW=$RESULTS/last-run/raw.tsv
printf 'workload\ttarget\tround\tcpu_ticks\tupstream_ticks\trss_kb\talive\tload_file\n' >"$RAW"

for w in "${WORKLOADS[@]}"; do
  # JIT, connection pools and page cache warm up here, unmeasured.
  for t in "${TARGETS[@]}"; do run_load "$w" "$WARMUP" "${URL[$w/$t]}" "$TMP/warmup.txt"; done

  case $w in
    http) log "measuring HTTP/1.1: $ROUNDS rounds x ${TARGETS[*]}, wrk -t$THREADS -c$CONNS -d${DURATION}s" ;;
    grpc) log "measuring gRPC unary: $ROUNDS rounds x ${TARGETS[*]}, h2load -c$GRPC_CONNS -m$GRPC_STREAMS -D $DURATION" ;;
  esac
  for r in $(seq "$ROUNDS"); do
    for t in "${TARGETS[@]}"; do
      pids=${MEASURED[$w/$t]} ups=${UPSTREAM[$w]}
      if ! kill -0 $pids 2>/dev/null; then
        log "$w $t: measured process is gone, skipping round $r"; continue
      fi
      out=$RESULTS/last-run/$w-$t-$r.txt
      before=$(cpu_ticks "$pids") ubefore=$(cpu_ticks "$ups")
      run_load "$w" "$DURATION" "${URL[$w/$t]}" "$out"
      alive=yes; kill -0 $pids 2>/dev/null || alive=no
      if [[ $alive == yes ]]; then
        ticks=$(($(cpu_ticks "$pids") - before)) rss=$(peak_rss_kb "$pids")
      else
        ticks=0 rss=0; log "$w $t: process died during round $r"
      fi
      uticks=-1; kill -0 $ups 2>/dev/null && uticks=$(($(cpu_ticks "$ups") - ubefore))
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$t" "$r" "$ticks" "$uticks" "$rss" "$alive" "$out" >>"$RAW"
      log "round $r $w $t: $(result_line "$w" "$out")"
    done
  done
done

# kedge runs at log_level error: anything it printed is worth keeping next to the numbers; so is
# anything the gRPC upstream printed, and nginx's warnings (e.g. upstream errors in grpc_pass).
cp "$TMP/kedge-http.err" "$RESULTS/last-run/kedge-http.stderr"
cp "$TMP/kedge-grpc.err" "$RESULTS/last-run/kedge-grpc.stderr"
cp "$TMP/grpc-upstream.err" "$RESULTS/last-run/grpc-upstream.stderr"
for n in upstream nginxproxy grpcproxy; do cp "$TMP/$n.err" "$RESULTS/last-run/nginx-$n.stderr" 2>/dev/null || true; done
META="$(nproc) CPUs, $(nginx -v 2>&1 | sed 's/.*version: //'), kedge $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet -- src 2>/dev/null || echo '+dirty'), $ROUNDS rounds of ${DURATION}s per target"
# `wrk --version` exits 1: `|| true`, or set -e would end the run here.
HTTP_LOAD="$(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2 || true) -t$THREADS -c$CONNS -d${DURATION}s, keep-alive"
GRPC_LOAD="h2load $(h2load --version 2>&1 | sed -n 's/.*nghttp2\//nghttp2 /p') -t1 -c$GRPC_CONNS -m$GRPC_STREAMS -D $DURATION (h2c, $GRPC_INFLIGHT calls in flight), upstream bench/grpc-upstream.ts on Bun $("$BUN" --version)"
"$BUN" bench/report.ts "$RAW" "$(getconf CLK_TCK)" "$META" "$HTTP_LOAD" "$GRPC_LOAD" "$RESULTS/last-run/"*.stderr |
  tee "$RESULTS/latest.md"
