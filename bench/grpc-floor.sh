#!/usr/bin/env bash
# What stands between kedge and nginx on gRPC: CPU per unary call of kedge, of the least relay
# Bun's sockets allow (bench/socket-floor.ts: h2c bytes passed through unparsed, a connection
# upstream per client connection), of node:http2's server alone answering each call itself
# (bench/h2-ingress-floor.ts: what kedge's client side cost before it had its own HTTP/2 server)
# and of nginx grpc_pass, in alternating rounds; all but node:http2 proxy to one upstream
# (bench/grpc-upstream.ts), h2c, h2load -c10 -m10. Prints the table and the ratios; loopback only.
# Needs what `npm run bench` installs (nginx, h2load) and dist/kedge.
# Usage: bash bench/grpc-floor.sh [ROUNDS=3] [SECONDS=5]
set -euo pipefail
ROUNDS=${1:-3} SECS=${2:-5}
cd "$(dirname "$0")/.."
source bench/floor-lib.sh
UP=$(port) KEDGE=$(port) ADMIN=$(port) FLOOR=$(port) NODEH2=$(port) NGINX=$(port)

"$BUN" bench/grpc-upstream.ts "$UP" >"$TMP/up.out" 2>&1 & PIDS+=($!)
sleep 0.5
echo "{\"server\":{\"bind_address\":\"127.0.0.1\",\"h2c_port\":$KEDGE,\"admin_port\":$ADMIN,\"log_level\":\"error\"},\"grpc\":{\"backends\":[{\"name\":\"up\",\"static\":{\"addresses\":[\"127.0.0.1:$UP\"]}}],\"routes\":[{\"backend_name\":\"up\",\"service_name_matcher\":\"*\"}]}}" >"$TMP/kedge.json"
dist/kedge --workers 1 --config "$TMP/kedge.json" >"$TMP/kedge.out" 2>&1 & PIDS+=($!); KEDGE_PID=$!
"$BUN" bench/socket-floor.ts "$FLOOR" "$UP" >"$TMP/floor.out" 2>&1 & PIDS+=($!); FLOOR_PID=$!
"$BUN" bench/h2-ingress-floor.ts "$NODEH2" >"$TMP/nodeh2.out" 2>&1 & PIDS+=($!); NODEH2_PID=$!
start_nginx nginx "upstream up { server 127.0.0.1:$UP; keepalive 128; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NGINX http2; location / { grpc_pass grpc://up; } }"
printf '\x00\x00\x00\x00\x05hello' >"$TMP/req.bin"

load() { h2load -t1 -c10 -m10 -D "$2" -d "$TMP/req.bin" -H 'content-type: application/grpc' -H 'te: trailers' "http://127.0.0.1:$1/bench.Echo/Unary" 2>&1 | awk '/^requests:/ {print $8}'; }
declare -A PORT=([kedge]=$KEDGE [floor]=$FLOOR [nodeh2]=$NODEH2 [nginx]=$NGINX) PID=([kedge]=$KEDGE_PID [floor]=$FLOOR_PID [nodeh2]=$NODEH2_PID [nginx]=$NGINX_PID)
declare -A NAME=([kedge]=kedge [floor]="Bun socket relay" [nodeh2]="node:http2 server alone" [nginx]="nginx grpc_pass")
rounds call kedge floor nodeh2 nginx
