#!/usr/bin/env bash
# REST passthrough overhead: the same upstream (an nginx answering 200 "ok") called directly,
# through nginx as a reverse proxy (the floor), through a Junction route with no plugins, and
# through a Junction route with API-key auth and a rate limit; all in one run on this machine.
# Reports, per target: requests/s and latency at CONNECTIONS connections (wrk, saturating),
# the proxy's CPU time per request (from /proc: steadier than requests/s on a shared
# machine), for a GET and a small POST; and p50/p99 at a fixed RATE (open loop, see
# benches/paced_load.rs). Junction's idle CPU is taken off its figures. Needs `wrk` and
# `nginx` (apt).
#
#   gateway/passthrough/benches/passthrough.sh            # DURATION=10s CONNECTIONS=50 RATE=1000
set -euo pipefail
cd "$(dirname "$0")/../../.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
RATE=${RATE:-1000}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/junction-target}"
command -v mold >/dev/null && export RUSTFLAGS="${RUSTFLAGS:--C link-arg=-fuse-ld=mold}"
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin" command -v "$tool" >/dev/null \
    || { echo "passthrough.sh: install $tool (apt-get install $tool)" >&2; exit 1; }
done
export PATH="$PATH:/usr/sbin"

work=$(mktemp -d /tmp/junction-passthrough-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for conf in upstream proxy; do
    [ -f "$work/$conf.pid" ] && kill "$(cat "$work/$conf.pid")" 2>/dev/null || true
  done
  sleep 0.2
  rm -rf "$work"
}
trap cleanup EXIT

# JUNCTION_BINARY: measure that build instead (for before/after runs side by side).
[ -n "${JUNCTION_BINARY:-}" ] || cargo build --release --quiet --bin junction
# The load tool is built with the tree; with JUNCTION_BINARY, one built before will do.
if [ -z "${JUNCTION_BINARY:-}" ] || ! ls "$CARGO_TARGET_DIR"/release/deps/paced_load-* >/dev/null 2>&1; then
  cargo bench -p junction-passthrough --bench paced_load --no-run --quiet 2>/dev/null
fi
paced=$(ls -t "$CARGO_TARGET_DIR"/release/deps/paced_load-* | grep -v '\.d$' | sed -n 1p)
junction="${JUNCTION_BINARY:-$CARGO_TARGET_DIR/release/junction}"

nginx_conf() { # name, server block
  cat > "$work/$1.conf" <<CONF
worker_processes ${3:-auto};
pid $work/$1.pid;
error_log $work/$1.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/$1-body;
  proxy_temp_path $work/$1-proxy;
  $2
}
CONF
  nginx -p "$work" -c "$work/$1.conf" -e "$work/$1.err"
}
nginx_conf upstream 'server { listen 127.0.0.1:4601; keepalive_requests 10000000;
    location / { return 200 "ok\n"; } }' 1
nginx_conf proxy 'upstream app { server 127.0.0.1:4601; keepalive 128; }
  server { listen 127.0.0.1:4602; keepalive_requests 10000000;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }'

cat > "$work/junction.toml" <<TOML
[gateway]
listen = "127.0.0.1:4603"

[[gateway.routes]]
name = "plain"
path = "/plain"
rewrite = "/"
upstreams = ["http://127.0.0.1:4601"]

[[gateway.routes]]
name = "guarded"
path = "/guarded"
rewrite = "/"
upstreams = ["http://127.0.0.1:4601"]
plugins = [
  { name = "auth" },
  { name = "rate_limit", requests_per_second = 1000000, burst = 1000000 },
]
TOML
(cd "$work" && exec "$junction" serve --log-level error > "$work/serve.out" 2>&1) &
junction_pid=$!
pids+=($junction_pid)
for _ in $(seq 100); do curl -s -o /dev/null 127.0.0.1:4603/health/live && break; sleep 0.1; done
key=$(grep -o 'jk_live_[A-Za-z0-9_]*' "$work/serve.out" | head -n 1)
[ -n "$key" ] || { echo "passthrough.sh: no API key printed" >&2; cat "$work/serve.out" >&2; exit 1; }
for url in 127.0.0.1:4601/ 127.0.0.1:4602/ 127.0.0.1:4603/plain; do
  [ "$(curl -s "$url")" = "ok" ] || { echo "passthrough.sh: $url does not answer" >&2; exit 1; }
done
[ "$(curl -s -H "Authorization: Bearer $key" 127.0.0.1:4603/guarded)" = "ok" ] \
  || { echo "passthrough.sh: the guarded route refuses the key" >&2; exit 1; }

ticks() { # CPU ticks (user + system) of the given processes and their threads
  local total=0
  for pid in "$@"; do
    read -r -a stat < "/proc/$pid/stat"
    total=$((total + stat[13] + stat[14]))
  done
  echo "$total"
}
nginx_proxy_pids() {
  local master; master=$(cat "$work/proxy.pid")
  echo "$master" $(pgrep -P "$master")
}
hz=$(getconf CLK_TCK)
cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"order":{"id":"ord_1234567890","amount":4200,"currency":"EUR","items":3}}'
wrk.headers["Content-Type"] = "application/json"
LUA

# Junction's idle CPU (dispatcher polling, timers) is measured and taken off its figures.
idle_start=$(ticks $junction_pid); sleep 5; idle_rate=$(( ($(ticks $junction_pid) - idle_start) ))
seconds=${DURATION%s}

run() { # label, url, proxy pids ("" for direct), extra wrk args...
  local label=$1 url=$2 procs=$3; shift 3
  local before after out rps cpu
  before=$( [ -n "$procs" ] && ticks $procs || echo 0)
  out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url")
  after=$( [ -n "$procs" ] && ticks $procs || echo 0)
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  errors=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  used=$((after - before))
  if [ "$procs" = "$junction_pid" ]; then
    used=$((used - idle_rate * seconds / 5))
  fi
  if [ -n "$procs" ]; then
    cpu=$(awk -v t="$used" -v hz="$hz" -v n="$requests" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }')
  else
    cpu="-"
  fi
  printf '| %-34s | %9s | %8s | %8s | %6s | %s\n' "$label" "$rps" "$p50" "$p99" "$cpu" "$errors"
}

echo "wrk -c$CONNECTIONS -d$DURATION; CPU = the proxy's CPU microseconds per request"
echo "| target                             |     req/s |      p50 |      p99 | CPU us |"
echo "|------------------------------------|-----------|----------|----------|--------|"
for method in GET POST; do
  extra=()
  [ "$method" = POST ] && extra=(-s "$work/post.lua")
  run "$method direct to the upstream" http://127.0.0.1:4601/ "" "${extra[@]}"
  run "$method nginx proxy" http://127.0.0.1:4602/ "$(nginx_proxy_pids)" "${extra[@]}"
  run "$method Junction, no plugins" http://127.0.0.1:4603/plain "$junction_pid" "${extra[@]}"
  run "$method Junction, API key + rate limit" http://127.0.0.1:4603/guarded "$junction_pid" \
    -H "Authorization: Bearer $key" "${extra[@]}"
done

echo
echo "open loop at $RATE requests/s for $seconds s"
for target in "direct|http://127.0.0.1:4601/" "nginx|http://127.0.0.1:4602/" \
  "Junction, no plugins|http://127.0.0.1:4603/plain"; do
  echo "${target%%|*}: $("$paced" "${target#*|}" "$RATE" "$seconds")"
done
echo "Junction, API key + rate limit: $("$paced" http://127.0.0.1:4603/guarded "$RATE" "$seconds" "Authorization: Bearer $key")"
