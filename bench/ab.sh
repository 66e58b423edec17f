#!/usr/bin/env bash
# Two kedge binaries, A and B, under the same load at the same time, for a change too small for
# `npm run bench` to see (its rounds alternate, and drift on a shared machine moves a target by
# ±20% between runs). Both kedges share CPU 1; the load generators and the upstream share CPU 0.
# Whatever slows the machine slows A and B alike, so B/A (CPU µs per request) is steady to a few
# per cent: the same binary against itself gives medians of 0.98–1.00.
# Needs 2 CPUs, taskset (util-linux), and what `npm run bench` installs (nginx, wrk, h2load).
# https1 and https load http_tls_port over TLS 1.3 (wrk, HTTP/1.1 keep-alive; h2load, ALPN h2).
# Usage: bash bench/ab.sh BIN_A BIN_B [http|https1|https|grpc|stream] [ROUNDS=5] [SECONDS=4]
set -euo pipefail
A_BIN=$(realpath "$1") B_BIN=$(realpath "$2") KIND=${3:-grpc} ROUNDS=${4:-5} SECS=${5:-4}
cd "$(dirname "$0")/.."
source bench/floor-lib.sh
UP=$(port) A=$(port) B=$(port)

config() { # $1 listening port: a kedge with one route to the upstream
  if [[ $KIND == https* ]]; then
    echo "{\"server\":{\"bind_address\":\"127.0.0.1\",\"http_tls_port\":$1,\"tls_cert_file\":\"$TMP/cert.pem\",\"tls_key_file\":\"$TMP/key.pem\",\"log_level\":\"error\"},\"http\":{\"backends\":[{\"name\":\"up\",\"static\":{\"addresses\":[\"127.0.0.1:$UP\"]}}],\"routes\":[{\"backend_name\":\"up\",\"path_rules\":[\"/*\"]}]}}"
  elif [[ $KIND == http ]]; then  # (grpc and stream share the gRPC route)
    echo "{\"server\":{\"bind_address\":\"127.0.0.1\",\"http_port\":$1,\"log_level\":\"error\"},\"http\":{\"backends\":[{\"name\":\"up\",\"static\":{\"addresses\":[\"127.0.0.1:$UP\"]}}],\"routes\":[{\"backend_name\":\"up\",\"path_rules\":[\"/*\"]}]}}"
  else
    echo "{\"server\":{\"bind_address\":\"127.0.0.1\",\"h2c_port\":$1,\"log_level\":\"error\"},\"grpc\":{\"backends\":[{\"name\":\"up\",\"static\":{\"addresses\":[\"127.0.0.1:$UP\"]}}],\"routes\":[{\"backend_name\":\"up\",\"service_name_matcher\":\"*\"}]}}"
  fi
}

case $KIND in
  http)
    start_nginx upstream "server { listen 127.0.0.1:$UP; location / { return 200 \"hello world\\n\"; } }"
    taskset -p -c 0 "$NGINX_PID" >/dev/null
    load() { taskset -c 0 wrk -t1 -c25 -d"$2"s "http://127.0.0.1:$1/" 2>&1 | awk '/requests in/ {print $1}'; } ;;
  https1|https) # a throw-away P-256 certificate; TLS 1.3 with the one cipher `npm run bench` offers
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$TMP/key.pem" -out "$TMP/cert.pem" -days 1 -subj /CN=localhost 2>/dev/null
    start_nginx upstream "server { listen 127.0.0.1:$UP; location / { return 200 \"hello world\\n\"; } }"
    taskset -p -c 0 "$NGINX_PID" >/dev/null
    if [[ $KIND == https1 ]]; then # wrk offers no ALPN: kedge serves it HTTP/1.1
      load() { taskset -c 0 wrk -t1 -c25 -d"$2"s "https://127.0.0.1:$1/" 2>&1 | awk '/requests in/ {print $1}'; }
    else
      load() { taskset -c 0 h2load -t1 -c5 -m10 -D "$2" --tls13-ciphers=TLS_AES_128_GCM_SHA256 "https://127.0.0.1:$1/" 2>&1 | awk '/^requests:/ {print $8}'; }
    fi ;;
  grpc)
    taskset -c 0 "$BUN" bench/grpc-upstream.ts "$UP" >"$TMP/up.out" 2>&1 & PIDS+=($!)
    printf '\x00\x00\x00\x00\x05hello' >"$TMP/req.bin"
    load() { taskset -c 0 h2load -t1 -c5 -m10 -D "$2" -d "$TMP/req.bin" -H 'content-type: application/grpc' -H 'te: trailers' "http://127.0.0.1:$1/bench.Echo/Unary" 2>&1 | awk '/^requests:/ {print $8}'; } ;;
  stream) # server-streaming calls of 100 messages each; "requests" are calls
    taskset -c 0 "$BUN" bench/grpc-upstream.ts "$UP" >"$TMP/up.out" 2>&1 & PIDS+=($!)
    load() { taskset -c 0 "$BUN" bench/grpc-stream-client.ts "$1" /bench.Echo/Stream 5 10 "$2" 100 2>&1 | sed -n 's/^bench-stream: calls=\([0-9]*\).*/\1/p'; } ;;
  *) echo "kind must be http, https1, https, grpc or stream" >&2; exit 2 ;;
esac
config "$A" >"$TMP/a.json"
config "$B" >"$TMP/b.json"
taskset -c 1 "$A_BIN" --config "$TMP/a.json" >"$TMP/a.out" 2>&1 & PIDS+=($!); A_PID=$!
taskset -c 1 "$B_BIN" --config "$TMP/b.json" >"$TMP/b.out" 2>&1 & PIDS+=($!); B_PID=$!
sleep 1.5

both() { # $1 seconds: loads A and B at once; "requests_A requests_B"
  load "$A" "$1" >"$TMP/na" & local w=$!
  load "$B" "$1" >"$TMP/nb"
  wait "$w"
  echo "$(<"$TMP/na") $(<"$TMP/nb")"
}
both 2 >/dev/null # warm-up: JIT, connection pools
TCK=$(getconf CLK_TCK)
RATIOS=""
echo "| round | A requests | A CPU µs/req | B requests | B CPU µs/req | B/A |"
echo "|--:|--:|--:|--:|--:|--:|"
for r in $(seq "$ROUNDS"); do
  a0=$(ticks "$A_PID") b0=$(ticks "$B_PID")
  read -r na nb <<<"$(both "$SECS")"
  a1=$(ticks "$A_PID") b1=$(ticks "$B_PID")
  line=$(awk -v na="$na" -v nb="$nb" -v a="$((a1 - a0))" -v b="$((b1 - b0))" -v t="$TCK" -v r="$r" \
    'BEGIN { ua = a * 1e6 / t / na; ub = b * 1e6 / t / nb; printf "| %d | %d | %.1f | %d | %.1f | %.3f |", r, na, ua, nb, ub, ub / ua }')
  echo "$line"
  RATIOS+="$(awk -F'|' '{gsub(/ /, "", $7); print $7}' <<<"$line") "
done
echo
echo "median B/A CPU per request ($KIND): $(median "$RATIOS")"
