#!/usr/bin/env bash
# What stands between kedge and nginx on HTTP/1.1: CPU per request of kedge, of the least relay
# Bun's sockets allow (bench/socket-floor.ts: bytes passed through unparsed) and of nginx proxy_pass,
# measured in alternating rounds against one upstream nginx (return 200), wrk -t1 -c50 keep-alive.
# Prints the table and the ratios; loopback only. Needs what `npm run bench` installs (nginx, wrk)
# and dist/kedge.
# Usage: bash bench/h1-floor.sh [ROUNDS=3] [SECONDS=5]
set -euo pipefail
ROUNDS=${1:-3} SECS=${2:-5}
cd "$(dirname "$0")/.."
source bench/floor-lib.sh
UP=$(port) KEDGE=$(port) ADMIN=$(port) FLOOR=$(port) NGINX=$(port)

start_nginx upstream "server { listen 127.0.0.1:$UP; location / { return 200 \"hello world\\n\"; } }"
echo "{\"server\":{\"bind_address\":\"127.0.0.1\",\"http_port\":$KEDGE,\"admin_port\":$ADMIN,\"log_level\":\"error\"},\"http\":{\"backends\":[{\"name\":\"up\",\"static\":{\"addresses\":[\"127.0.0.1:$UP\"]}}],\"routes\":[{\"backend_name\":\"up\",\"path_rules\":[\"/*\"]}]}}" >"$TMP/kedge.json"
dist/kedge --workers 1 --config "$TMP/kedge.json" >"$TMP/kedge.out" 2>&1 & PIDS+=($!); KEDGE_PID=$!
"$BUN" bench/socket-floor.ts "$FLOOR" "$UP" >"$TMP/floor.out" 2>&1 & PIDS+=($!); FLOOR_PID=$!
start_nginx proxy "upstream up { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$NGINX; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"

load() { wrk -t1 -c50 -d"$2"s "http://127.0.0.1:$1/" 2>&1 | awk '/requests in/ {print $1}'; }
declare -A PORT=([kedge]=$KEDGE [floor]=$FLOOR [nginx]=$NGINX) PID=([kedge]=$KEDGE_PID [floor]=$FLOOR_PID [nginx]=$NGINX_PID)
declare -A NAME=([kedge]=kedge [floor]="Bun socket relay" [nginx]="nginx proxy_pass")
rounds request kedge floor nginx
