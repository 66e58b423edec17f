# Shared by bench/grpc-floor.sh and bench/h1-floor.sh: temp dir and clean-up, free ports, CPU ticks
# of a process, medians, and the alternating rounds. Sourced, not run.
BUN=$PWD/node_modules/.bin/bun
[[ -x dist/kedge ]] || npm run -s build
TMP=$(mktemp -d /tmp/kedge-floor.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
port() { local p; while :; do p=$((20000 + RANDOM % 20000)); (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }; done; }
ticks() { local s; s=$(<"/proc/$1/stat"); s=${s##*) }; read -ra f <<<"$s"; echo $((f[11] + f[12])); }
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
# A nginx worker_processes 1 with config $2 (the http block's contents); sets NGINX_PID to the worker.
start_nginx() {
  cat >"$TMP/$1.conf" <<CONF
worker_processes 1; daemon off; pid $TMP/$1.pid; error_log $TMP/$1.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; client_body_temp_path $TMP/body; proxy_temp_path $TMP/proxy; fastcgi_temp_path $TMP/fcgi; uwsgi_temp_path $TMP/uwsgi; scgi_temp_path $TMP/scgi;
  $2 }
CONF
  nginx -c "$TMP/$1.conf" -e "$TMP/$1.err" & PIDS+=($!)
  local master=$!
  sleep 1
  NGINX_PID=$(pgrep -P "$master" | head -1)
}
# rounds UNIT TARGET...: for each round and target (kedge, floor, nginx and any others), load
# PORT[t] (the caller's `load PORT SECONDS` prints requests completed) and print CPU µs per
# request; then each target's median (named by NAME[t]) and kedge/floor, floor/nginx, kedge/nginx.
rounds() {
  local unit=$1 t r before ok after us TCK
  shift
  local targets=("$@")
  TCK=$(getconf CLK_TCK)
  for t in "${targets[@]}"; do load "${PORT[$t]}" 2 >/dev/null; done  # warm-up
  declare -A US
  echo "| round | target | $unit ok | CPU µs/$unit |"
  echo "|--:|---|--:|--:|"
  for r in $(seq "$ROUNDS"); do
    for t in "${targets[@]}"; do
      before=$(ticks "${PID[$t]}"); ok=$(load "${PORT[$t]}" "$SECS"); after=$(ticks "${PID[$t]}")
      us=$(( ok > 0 ? (after - before) * 1000000 / TCK / ok : -1 ))
      US[$t]+="$us "
      echo "| $r | $t | $ok | $us |"
    done
  done
  echo
  declare -A M
  for t in "${targets[@]}"; do
    M[$t]=$(median "${US[$t]}")
    echo "median CPU µs/$unit: ${NAME[$t]} ${M[$t]}"
  done
  awk -v k="${M[kedge]}" -v f="${M[floor]}" -v n="${M[nginx]}" 'BEGIN { printf "kedge/floor %.2fx   floor/nginx %.2fx   kedge/nginx %.2fx\n", k/f, f/n, k/n }'
}
