#!/usr/bin/env bash
# Router overhead benchmark: the classic four subgraphs; a deep query (products, their reviews,
# the reviews' authors and their reviews' products), a heavy one (@requires fields, fragments,
# aliases) and two written without tuning, each at 50 connections, and a one-fetch query at
# one connection; Junction's router, Hive Router when installed, and the subgraph called
# directly, measured side by side in one run, after checking that both routers answer each
# operation alike, and counting the subgraph fetches each operation takes in each. Reports requests/s, latency p50/p99 (wrk), the
# router's CPU time per request (from /proc, steadier than requests/s on a shared machine)
# and its resident memory. Needs `wrk` (apt) and, for the comparison, Hive Router:
#   cargo install hive-router --version 0.0.84 --locked --features graphiql --root /var/tmp/anchors
#
#   gateway/router/benches/router.sh            # DURATION=10s CONNECTIONS=50 by default
set -euo pipefail
cd "$(dirname "$0")/../../.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
HIVE=${HIVE_ROUTER:-/var/tmp/anchors/bin/hive_router}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/junction-target}"
command -v mold >/dev/null && export RUSTFLAGS="${RUSTFLAGS:--C link-arg=-fuse-ld=mold}"
command -v wrk >/dev/null || { echo "router.sh: install wrk (apt-get install wrk)" >&2; exit 1; }

# Another run (or anything else) on these ports would be measured instead: refuse.
for port in 4201 4202 4203 4204 4205 4300 4400; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "router.sh: port $port is in use; is another benchmark running?" >&2
    exit 1
  fi
done

work=$(mktemp -d /tmp/junction-router-bench.XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# JUNCTION_BINARY: measure that build instead (for before/after runs side by side).
[ -n "${JUNCTION_BINARY:-}" ] || cargo build --release --quiet --bin junction
# The load tool is built with the tree; with JUNCTION_BINARY, one built before will do.
if [ -z "${JUNCTION_BINARY:-}" ] || ! ls "$CARGO_TARGET_DIR"/release/deps/subgraphs-* >/dev/null 2>&1; then
  cargo bench -p junction-router --bench subgraphs --no-run --quiet 2>/dev/null
fi
subgraphs_bin=$(ls -t "$CARGO_TARGET_DIR"/release/deps/subgraphs-* | grep -v '\.d$' | sed -n 1p)
"$subgraphs_bin" 4201 > "$work/subgraphs.log" &
pids+=($!)
junction="${JUNCTION_BINARY:-$CARGO_TARGET_DIR/release/junction}"
for _ in $(seq 50); do curl -s -o /dev/null 127.0.0.1:4204/graphql -d '{}' -H 'content-type: application/json' && break; sleep 0.1; done
"$junction" compose \
  --subgraph accounts=http://127.0.0.1:4201/graphql --subgraph products=http://127.0.0.1:4202/graphql \
  --subgraph inventory=http://127.0.0.1:4203/graphql --subgraph reviews=http://127.0.0.1:4204/graphql \
  -o "$work/supergraph.graphql" 2>/dev/null

(cd "$work" && exec "$junction" gateway --supergraph supergraph.graphql --listen 127.0.0.1:4300 --log-level error) &
junction_pid=$!
pids+=($junction_pid)
hive_pid=
if [ -x "$HIVE" ]; then
  cat > "$work/router.config.yaml" <<YAML
supergraph:
  source: file
  path: ./supergraph.graphql
http:
  host: 127.0.0.1
  port: 4400
traffic_shaping:
  all:
    dedupe_enabled: false
  router:
    dedupe:
      enabled: false
log:
  level: error
YAML
  (cd "$work" && exec "$HIVE" > "$work/hive.log" 2>&1) &
  hive_pid=$!
  pids+=($hive_pid)
fi
sleep 1

# The operations: `one` (one fetch) and `deep` were tuned for; `heavy` (@requires fields,
# fragments, aliases) and `reviewer` and `user` were written after, and not tuned for.
deep='{ topProducts { name reviews { body author { name reviews { product { name } } } } } }'
one='{ topProducts { name price } }'
heavy='query Heavy { top: topProducts(first: 5) { ...Card reviews { body author { handle: username name reviews { product { ...Card ... on Product { weight } } } } } } me { id name } } fragment Card on Product { upc title: name price shippingEstimate cost: price }'
reviewer='{ me { username reviews { body product { name inStock shippingEstimate } } } }'
user='{ user(id: "1") { name reviews { author { name } product { upc stockLevel reviews { body } } } } }'
lua() { # body file for wrk
  python3 -c 'import json,sys; q=sys.argv[1]; print("wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = " + json.dumps(json.dumps({"query": q})))' "$1" > "$2"
}
for name in deep one heavy reviewer user; do lua "${!name}" "$work/$name.lua"; done
body() { python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1]}))' "$1"; }
# Subgraph requests one operation takes through a router (the subgraphs count what they serve).
fetches() { # url query
  local before after
  before=$(curl -s 127.0.0.1:4205/requests)
  curl -s -o /dev/null "$1" -H 'content-type: application/json' -d "$(body "$2")"
  after=$(curl -s 127.0.0.1:4205/requests)
  echo $((after - before))
}
ticks=$(getconf CLK_TCK)
cpu() { [ -n "$1" ] && awk '{print $14 + $15}' "/proc/$1/stat" || echo 0; }
rss() { [ -n "$1" ] && awk '/VmRSS/ {printf "%d MB", $2/1024}' "/proc/$1/status" || echo -; }

run() { # name url pid script connections
  local before after out requests
  # Warm up: plans cached, connections pooled.
  wrk -t1 -c"$5" -d2s -s "$4" "$2" > /dev/null
  before=$(cpu "$3")
  out=$(wrk -t1 -c"$5" -d"$DURATION" --latency -s "$4" "$2")
  after=$(cpu "$3")
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  local rps p50 p99 errors
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  errors=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
  local cpu_ms="-"
  if [ -n "$3" ] && [ "$requests" -gt 0 ]; then
    cpu_ms=$(python3 -c "print(f'{($after - $before) / $ticks * 1000 / $requests:.3f}')")
  fi
  printf '| %-28s | %9s | %8s | %8s | %10s | %7s | %s\n' "$1" "$rps" "$p50" "$p99" "$cpu_ms" "$(rss "$3")" "$errors"
}

# Each router must answer right before it is timed, and answer as the other does.
expected=$(curl -s 127.0.0.1:4300/graphql -H 'content-type: application/json' -d "$(body "$deep")")
echo "$expected" | grep -q '"Love it!"' || { echo "Junction's answer is wrong: $expected" >&2; exit 1; }
if [ -n "$hive_pid" ]; then
  for name in deep one heavy reviewer user; do
    ours=$(curl -s 127.0.0.1:4300/graphql -H 'content-type: application/json' -d "$(body "${!name}")")
    theirs=$(curl -s 127.0.0.1:4400/graphql -H 'content-type: application/json' -d "$(body "${!name}")")
    python3 -c 'import json,sys; a,b=json.loads(sys.argv[1]),json.loads(sys.argv[2]); sys.exit(a!=b or "errors" in a)' "$ours" "$theirs" \
      || { echo "$name: the routers answer differently:\n  Junction: $ours\n  Hive:     $theirs" >&2; exit 1; }
  done
fi

echo "date: $(date -u +%F), $(nproc) cores, wrk -t1 -d$DURATION"
echo
echo "| operation | Junction's subgraph fetches | Hive Router's |"
echo "|---|---|---|"
for name in deep one heavy reviewer user; do
  hive_fetches=-
  [ -n "$hive_pid" ] && hive_fetches=$(fetches http://127.0.0.1:4400/graphql "${!name}")
  echo "| $name | $(fetches http://127.0.0.1:4300/graphql "${!name}") | $hive_fetches |"
done
echo
echo "| run                          | requests/s |   p50    |   p99    | CPU ms/req |   RSS   |"
echo "|---|---|---|---|---|---|"
for name in deep heavy reviewer user; do
  run "Junction, $name, c=$CONNECTIONS" http://127.0.0.1:4300/graphql "$junction_pid" "$work/$name.lua" "$CONNECTIONS"
  [ -n "$hive_pid" ] && run "Hive Router, $name, c=$CONNECTIONS" http://127.0.0.1:4400/graphql "$hive_pid" "$work/$name.lua" "$CONNECTIONS"
done
run "products directly, one, c=1" http://127.0.0.1:4202/graphql "" "$work/one.lua" 1
run "Junction, one fetch, c=1" http://127.0.0.1:4300/graphql "$junction_pid" "$work/one.lua" 1
[ -n "$hive_pid" ] && run "Hive Router, one fetch, c=1" http://127.0.0.1:4400/graphql "$hive_pid" "$work/one.lua" 1
true
