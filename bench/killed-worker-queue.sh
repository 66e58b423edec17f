#!/usr/bin/env bash
# What happens to connections the kernel queued on a kedge worker that is then killed, with
# net.ipv4.tcp_migrate_req at 0 and at 1 (README "Workers"). kedge with 2 workers in front of a
# python http.server; one worker is stopped (SIGSTOP, so it accepts nothing), 40 curls connect
# (about half land in its queue), then it is killed (SIGKILL). Prints the curls' status codes for
# each setting: 000 is a connection lost. Needs root (it sets the sysctl of this network namespace,
# and puts back the value it found).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/floor-lib.sh
HTTP=$(port) ADMIN=$(port) UP=$(port)
was=$(sysctl -n net.ipv4.tcp_migrate_req)
trap 'sysctl -qw net.ipv4.tcp_migrate_req="$was"; cleanup' EXIT
python3 -m http.server "$UP" --bind 127.0.0.1 >/dev/null 2>&1 & PIDS+=($!)
echo "{\"server\":{\"bind_address\":\"127.0.0.1\",\"http_port\":$HTTP,\"admin_port\":$ADMIN,\"log_level\":\"error\",\"workers\":2},
 \"http\":{\"backends\":[{\"name\":\"up\",\"static\":{\"addresses\":[\"127.0.0.1:$UP\"]}}],\"routes\":[{\"backend_name\":\"up\",\"path_rules\":[\"/*\"]}]}}" >"$TMP/kedge.json"
for setting in 0 1; do
  sysctl -qw net.ipv4.tcp_migrate_req=$setting
  dist/kedge --config "$TMP/kedge.json" >"$TMP/kedge.out" 2>&1 & kedge=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$ADMIN/_healthz" >/dev/null && break; sleep 0.1; done
  victim=$(pgrep -P "$kedge" | head -1)
  kill -STOP "$victim"
  curls=()
  for _ in $(seq 40); do curl -s -o /dev/null -w '%{http_code}\n' --max-time 8 "http://127.0.0.1:$HTTP/" >>"$TMP/codes.$setting" & curls+=($!); done
  sleep 1
  kill -KILL "$victim"
  wait "${curls[@]}" || true
  echo "tcp_migrate_req=$setting: $(sort "$TMP/codes.$setting" | uniq -c | awk '{printf "%s x %s  ", $1, $2}')"
  kill "$kedge"; wait "$kedge" 2>/dev/null || true
done
