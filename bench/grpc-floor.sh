#!/usr/bin/env bash
# What stands between kedge and nginx on gRPC: CPU per unary call of kedge, of the least relay
# Bun's node:http2 allows (bench/h2-floor.ts), and of nginx grpc_pass, measured in alternating
# rounds against one upstream (bench/grpc-upstream.ts), h2c, h2load -c10 -m10. Prints the table and
# the ratios; loopback only. Needs what `npm run bench` installs (nginx, h2load) and dist/kedge.
# Usage: bash bench/grpc-floor.sh [ROUNDS=3] [SECONDS=5]
set -euo pipefail
ROUNDS=${1:-3} SECS=${2:-5}
cd "$(dirname "$0")/.."
BUN=$PWD/node_modules/.bin/bun
[[ -x dist/kedge ]] || npm run -s build
TMP=$(mktemp -d /tmp/kedge-floor.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
port() { local p; while :; do p=$((20000 + RANDOM % 20000)); (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }; done; }
UP=$(port) KEDGE=$(port) ADMIN=$(port) FLOOR=$(port) NGINX=$(port)

"$BUN" bench/grpc-upstream.ts "$UP" >"$TMP/up.out" 2>&1 & PIDS+=($!)
sleep 0.5
echo "{\"server\":{\"bind_address\":\"127.0.0.1\",\"h2c_port\":$KEDGE,\"admin_port\":$ADMIN,\"log_level\":\"error\"},\"grpc\":{\"backends\":[{\"name\":\"up\",\"static\":{\"addresses\":[\"127.0.0.1:$UP\"]}}],\"routes\":[{\"backend_name\":\"up\",\"service_name_matcher\":\"*\"}]}}" >"$TMP/kedge.json"
dist/kedge --config "$TMP/kedge.json" >"$TMP/kedge.out" 2>&1 & PIDS+=($!); KEDGE_PID=$!
"$BUN" bench/h2-floor.ts "$FLOOR" "$UP" >"$TMP/floor.out" 2>&1 & PIDS+=($!); FLOOR_PID=$!
cat >"$TMP/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $TMP/nginx.pid; error_log $TMP/nginx.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; client_body_temp_path $TMP/body; proxy_temp_path $TMP/proxy; fastcgi_temp_path $TMP/fcgi; uwsgi_temp_path $TMP/uwsgi; scgi_temp_path $TMP/scgi;
  upstream up { server 127.0.0.1:$UP; keepalive 128; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NGINX http2; location / { grpc_pass grpc://up; } } }
CONF
nginx -c "$TMP/nginx.conf" -e "$TMP/nginx.err" & PIDS+=($!); NGINX_MASTER=$!
sleep 1.5
NGINX_PID=$(pgrep -P "$NGINX_MASTER" | head -1)
printf '\x00\x00\x00\x00\x05hello' >"$TMP/req.bin"

ticks() { local s; s=$(<"/proc/$1/stat"); s=${s##*) }; read -ra f <<<"$s"; echo $((f[11] + f[12])); }
load() { h2load -t1 -c10 -m10 -D "$2" -d "$TMP/req.bin" -H 'content-type: application/grpc' -H 'te: trailers' "http://127.0.0.1:$1/bench.Echo/Unary" 2>&1 | awk '/^requests:/ {print $8}'; }
declare -A PORT=([kedge]=$KEDGE [floor]=$FLOOR [nginx]=$NGINX) PID=([kedge]=$KEDGE_PID [floor]=$FLOOR_PID [nginx]=$NGINX_PID)
TCK=$(getconf CLK_TCK)
for t in kedge floor nginx; do load "${PORT[$t]}" 2 >/dev/null; done  # warm-up
declare -A US
echo "| round | target | calls ok | CPU µs/call |"
echo "|--:|---|--:|--:|"
for r in $(seq "$ROUNDS"); do
  for t in kedge floor nginx; do
    before=$(ticks "${PID[$t]}"); ok=$(load "${PORT[$t]}" "$SECS"); after=$(ticks "${PID[$t]}")
    us=$(( ok > 0 ? (after - before) * 1000000 / TCK / ok : -1 ))
    US[$t]+="$us "
    echo "| $r | $t | $ok | $us |"
  done
done
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
K=$(median "${US[kedge]}") F=$(median "${US[floor]}") N=$(median "${US[nginx]}")
echo
echo "median CPU µs/call: kedge $K, node:http2 floor $F, nginx grpc_pass $N"
awk -v k="$K" -v f="$F" -v n="$N" 'BEGIN { printf "kedge/floor %.2fx   floor/nginx %.2fx   kedge/nginx %.2fx\n", k/f, f/n, k/n }'
