#!/usr/bin/env bash
# Benchmark: wrk -> {upstream nginx directly, kedge, nginx as a proxy} -> upstream nginx, on loopback.
# Prints a Markdown table (also written to bench/results/latest.md). See bench/README.md.
# Knobs (env): ROUNDS=3 DURATION=5 (seconds per wrk run) CONNS=50 THREADS=1 WARMUP=2 (seconds).
set -euo pipefail

ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-5} CONNS=${CONNS:-50} THREADS=${THREADS:-1} WARMUP=${WARMUP:-2}
# Keeps `npm run bench` well under 3 minutes; a longer run would hide a hang.
if (( 3 * (ROUNDS * DURATION + WARMUP) > 150 )); then
  echo "ROUNDS*DURATION too large: keep the whole run under 3 minutes" >&2; exit 2
fi

cd "$(dirname "$0")/.."
ROOT=$PWD
RESULTS=$ROOT/bench/results
BUN=$ROOT/node_modules/.bin/bun

log() { echo "bench: $*" >&2; }

# --- prerequisites ---------------------------------------------------------------------------
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  log "installing nginx and wrk (Debian packages)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx wrk >/dev/null
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

wait_for() {  # url: up to 10s
  for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  log "timed out waiting for $1"; return 1
}

# --- nginx instances ---------------------------------------------------------------------------
# Own prefix, pid, logs and temp paths so no system nginx file is touched. keepalive_requests is
# raised everywhere so no target pays for reconnects the others don't (nginx default is 1000).
nginx_conf() {  # name, port, extra http-level lines, location body
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
    listen 127.0.0.1:$2;
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
start_nginx upstream;   UP_MASTER=${PIDS[-1]}
start_nginx nginxproxy; NP_MASTER=${PIDS[-1]}

# --- kedge -------------------------------------------------------------------------------------
cat >"$TMP/kedge.json" <<EOF
{"server":{"bind_address":"127.0.0.1","http_port":$KPORT,"admin_port":$APORT,"log_level":"error"},
 "http":{"backends":[{"name":"bench","static":{"addresses":["127.0.0.1:$UPORT"]}}],
         "routes":[{"backend_name":"bench","path_rules":["/*"]}]}}
EOF
./dist/kedge --config "$TMP/kedge.json" >"$TMP/kedge.out" 2>"$TMP/kedge.err" &
KEDGE=$!; PIDS+=("$KEDGE")

wait_for "http://127.0.0.1:$UPORT/"
wait_for "http://127.0.0.1:$NPORT/"
wait_for "http://127.0.0.1:$APORT/_healthz"
# All three must serve the same body, or we'd be comparing different work.
for p in "$UPORT" "$KPORT" "$NPORT"; do
  body=$(curl -sf "http://127.0.0.1:$p/") || { log "GET :$p failed"; exit 1; }
  [[ $body == "hello world" ]] || { log "unexpected body from :$p: $body"; exit 1; }
done
UP_WORKERS=$(workers_of "$UP_MASTER") NP_WORKERS=$(workers_of "$NP_MASTER")

declare -A URL=([direct]="http://127.0.0.1:$UPORT/" [kedge]="http://127.0.0.1:$KPORT/" [nginx]="http://127.0.0.1:$NPORT/")
# The process whose cost we attribute to the target: for direct, the upstream itself.
declare -A MEASURED=([direct]="$UP_WORKERS" [kedge]="$KEDGE" [nginx]="$NP_WORKERS")
TARGETS=(direct kedge nginx)

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

run_wrk() {  # seconds, url, outfile; timeout guards against wrk itself hanging
  timeout $(($1 + 15)) wrk -t"$THREADS" -c"$CONNS" -d"$1s" --timeout 2s --latency "$2" >"$3" 2>&1 || true
}

mkdir -p "$RESULTS/last-run"; rm -f "$RESULTS/last-run/"*
RAW=$RESULTS/last-run/raw.tsv
printf 'target\tround\tcpu_ticks\trss_kb\talive\twrk_file\n' >"$RAW"

# JIT, connection pools and page cache warm up here, unmeasured.
for t in "${TARGETS[@]}"; do run_wrk "$WARMUP" "${URL[$t]}" "$TMP/warmup.txt"; done

log "measuring: $ROUNDS rounds x ${TARGETS[*]}, wrk -t$THREADS -c$CONNS -d${DURATION}s"
for r in $(seq "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    pids=${MEASURED[$t]}
    if ! kill -0 $pids 2>/dev/null; then
      log "$t: measured process is gone, skipping round $r"; continue
    fi
    out=$RESULTS/last-run/$t-$r.txt
    before=$(cpu_ticks "$pids")
    run_wrk "$DURATION" "${URL[$t]}" "$out"
    alive=yes; kill -0 $pids 2>/dev/null || alive=no
    if [[ $alive == yes ]]; then
      ticks=$(($(cpu_ticks "$pids") - before)) rss=$(peak_rss_kb "$pids")
    else
      ticks=0 rss=0; log "$t: process died during round $r"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$r" "$ticks" "$rss" "$alive" "$out" >>"$RAW"
    log "round $r $t: $(grep -h 'Requests/sec' "$out" || echo 'no result')"
  done
done

# kedge runs at log_level error: anything it printed is worth keeping next to the numbers.
cp "$TMP/kedge.err" "$RESULTS/last-run/kedge.stderr"
META="$(nproc) CPUs, $(nginx -v 2>&1 | sed 's/.*version: //'), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2), kedge $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet -- src 2>/dev/null || echo '+dirty'), wrk -t$THREADS -c$CONNS -d${DURATION}s x $ROUNDS rounds"
"$BUN" bench/report.ts "$RAW" "$(getconf CLK_TCK)" "$META" "$RESULTS/last-run/kedge.stderr" | tee "$RESULTS/latest.md"
