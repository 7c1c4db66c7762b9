#!/usr/bin/env bash
# Memory under attack: `junction gateway` on the classic four subgraphs with its shipped
# default settings, sent what once grew it without bound, then its resident memory read from
# /proc and compared with the configured cache bounds plus 100 MB:
#   1. DISTINCT distinct queries of the maximum size (64 KB, 15,000 tokens each: the
#      heaviest documents the default limits let through), each answered;
#   2. DISTINCT automatic persisted queries, each too large (1.9 MB) and refused with a 400;
#   3. DISTINCT valid persisted queries of the maximum size, each kept by hash.
#
#   gateway/router/benches/memory.sh             # DISTINCT=10000 by default
set -euo pipefail
cd "$(dirname "$0")/../../.."
DISTINCT=${DISTINCT:-10000}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/junction-target}"
command -v mold >/dev/null && export RUSTFLAGS="${RUSTFLAGS:--C link-arg=-fuse-ld=mold}"

work=$(mktemp -d /tmp/junction-memory-bench.XXXXXX)
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
"$subgraphs_bin" 4211 > "$work/subgraphs.log" &
pids+=($!)
junction="${JUNCTION_BINARY:-$CARGO_TARGET_DIR/release/junction}"
for _ in $(seq 50); do curl -s -o /dev/null 127.0.0.1:4214/graphql -d '{}' -H 'content-type: application/json' && break; sleep 0.1; done
"$junction" compose \
  --subgraph accounts=http://127.0.0.1:4211/graphql --subgraph products=http://127.0.0.1:4212/graphql \
  --subgraph inventory=http://127.0.0.1:4213/graphql --subgraph reviews=http://127.0.0.1:4214/graphql \
  -o "$work/supergraph.graphql" 2>/dev/null
(cd "$work" && exec "$junction" gateway --supergraph supergraph.graphql --listen 127.0.0.1:4310 --log-level error) &
junction_pid=$!
pids+=($junction_pid)
for _ in $(seq 50); do curl -sf -o /dev/null 127.0.0.1:4310/health/live && break; sleep 0.1; done

rss_mb() { awk '/VmRSS/ {printf "%d", $2/1024}' "/proc/$junction_pid/status"; }
echo "started: $(rss_mb) MB"

python3 - "$DISTINCT" <<'PY'
import hashlib, http.client, json, sys, threading

distinct = int(sys.argv[1])
counts = {}
lock = threading.Lock()

def heavy(i):
    # About 64 KB in 5,300 tokens (long aliases), fewer selections than `max_selections`:
    # the heaviest document the default limits let through.
    body = "abcdefghijabcdefghijabcdefghij: upc " * 1_750
    return f"query Q{i} {{ topProducts {{ {body}}} }}"

def post(conn, payload):
    conn.request("POST", "/graphql", body=payload, headers={"content-type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status

def run(name, make, workers=4):
    def work(start):
        conn = http.client.HTTPConnection("127.0.0.1", 4310, timeout=60)
        for i in range(start, distinct, workers):
            status = post(conn, make(i))
            with lock:
                counts[(name, status)] = counts.get((name, status), 0) + 1
    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for t in threads: t.start()
    for t in threads: t.join()

def persisted(query):
    digest = hashlib.sha256(query.encode()).hexdigest()
    return json.dumps({"query": query, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}}})

run("maximum-size queries", lambda i: json.dumps({"query": heavy(i)}))
run("refused persisted queries", lambda i: persisted("{ topProducts { upc } } #" + str(i) + "x" * 1_900_000))
run("kept persisted queries", lambda i: persisted(heavy(distinct + i)))
for (name, status), n in sorted(counts.items()):
    print(f"{name}: {n} answered {status}")
# The heavy documents must be taken, or nothing of them is kept and nothing is measured.
expected = {("maximum-size queries", 200), ("refused persisted queries", 400), ("kept persisted queries", 200)}
if set(counts) != expected:
    sys.exit(f"unexpected answers: {sorted(counts.items())}")
PY

rss=$(rss_mb)
# The shipped bounds: documents 64 MiB, plans 64 MiB, persisted queries 16 MiB,
# introspection 8 MiB, API keys 8 MiB (junction.example.toml, [gateway.caches]).
bound=$((64 + 64 + 16 + 8 + 8 + 100))
echo "after: ${rss} MB resident; the cache bounds plus 100 MB: ${bound} MB"
[ "$rss" -le "$bound" ] && echo "within the bound" || { echo "OVER the bound"; exit 1; }
