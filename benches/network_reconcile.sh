#!/usr/bin/env bash
# Networking throughput and reconcile cost, in a namespace this script creates and removes.
#  1. create N bridges, each with one veth port, through the API (one request each, keep-alive)
#  2. the same kernel work with `ip -batch` in one run, as the baseline
#  3. restart ferrited: the initial reconcile of N unchanged objects (time, kernel writes)
#  4. N more bridges (on the veths' other ends) in one POST /network/batch
# Usage: benches/network_reconcile.sh [N]   (default 1000; needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000}"
cargo build --release --bin ferrited >/dev/null 2>&1 || cargo build --release --bin ferrited
NS="fer-bench-$$"; NS2="fer-bench-ip-$$"
DATA=$(mktemp -d)
cleanup() { kill "${DPID:-}" 2>/dev/null || true; ip netns del "$NS" 2>/dev/null || true; ip netns del "$NS2" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
ip netns add "$NS"; ip netns add "$NS2"
# Ports: N veth pairs in each namespace (setup, not measured).
{ for i in $(seq 0 $((N-1))); do echo "link add v$i type veth peer name w$i"; done; } > "$DATA/ports.batch"
ip -n "$NS" -batch "$DATA/ports.batch"; ip -n "$NS2" -batch "$DATA/ports.batch"
start_daemon() {
    FERRITE_ROOT_PASSWORD=bench-root-password FERRITE_LOG=info,ferrite::network=debug ./target/release/ferrited --data-dir "$DATA" --listen 127.0.0.1:0 --no-tls --netns "/run/netns/$NS" 2>>"$DATA/log" &
    DPID=$!
    rm -f "$DATA/api.json"; for _ in $(seq 200); do [ -s "$DATA/api.json" ] && break; sleep 0.05; done
}
start_daemon
EP=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['endpoint'])" "$DATA/api.json")
API_S=$(python3 - "$EP" "$N" <<'PY'
import http.client, json, sys, time, urllib.parse
ep, n = sys.argv[1], int(sys.argv[2])
u = urllib.parse.urlparse(ep)
c = http.client.HTTPConnection(u.hostname, u.port)
def call(method, path, body, token=None):
    h = {"Content-Type": "application/json"}
    if token: h["Authorization"] = "Bearer " + token
    c.request(method, path, json.dumps(body), h)
    r = c.getresponse(); data = r.read()
    return r.status, data
_, t = call("POST", "/api/v1/access/login", {"username": "root@local", "password": "bench-root-password"})
tok = json.loads(t)["ticket"]
t0 = time.perf_counter()
for i in range(n):
    s, d = call("POST", "/api/v1/network/bridges", {"name": f"br{i}", "ports": {f"v{i}": {}}}, tok)
    assert s == 201, d
print(f"{time.perf_counter() - t0:.3f}")
PY
)
{ for i in $(seq 0 $((N-1))); do echo "link add br$i type bridge"; echo "link set v$i master br$i"; echo "link set v$i up"; echo "link set br$i up"; done; } > "$DATA/bridges.batch"
IP_S=$( { /usr/bin/time -f "%e" ip -n "$NS2" -batch "$DATA/bridges.batch" >/dev/null; } 2>&1 | tail -1)
kill "$DPID"; wait "$DPID" 2>/dev/null || true
start_daemon
for _ in $(seq 200); do grep -q "initial reconcile finished" "$DATA/log" 2>/dev/null && [ "$(grep -c 'initial reconcile finished' "$DATA/log")" -ge 2 ] && break; sleep 0.1; done
LINE=$(grep "initial reconcile finished" "$DATA/log" | tail -1); echo "daemon: $LINE" >&2; grep -E "reconcile phases|converge: kernel read" "$DATA/log" | tail -2 >&2
EP=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['endpoint'])" "$DATA/api.json")
BATCH_S=$(python3 - "$EP" "$N" <<'PY'
import http.client, json, sys, time, urllib.parse
ep, n = sys.argv[1], int(sys.argv[2])
u = urllib.parse.urlparse(ep)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
def call(method, path, body, token=None):
    h = {"Content-Type": "application/json"}
    if token: h["Authorization"] = "Bearer " + token
    c.request(method, path, json.dumps(body), h)
    r = c.getresponse(); data = r.read()
    return r.status, data
_, t = call("POST", "/api/v1/access/login", {"username": "root@local", "password": "bench-root-password"})
tok = json.loads(t)["ticket"]
batch = {"bridges": [{"name": f"bb{i}", "ports": {f"w{i}": {}}} for i in range(n)]}
t0 = time.perf_counter()
s, d = call("POST", "/api/v1/network/batch", batch, tok)
assert s == 201, d[:500]
print(f"{time.perf_counter() - t0:.3f}")
PY
)
echo "N=$N bridges with one port each ($(nproc) cores, $(uname -r))"
echo "API (one POST per bridge, converge + store commit each): ${API_S} s"
echo "ip -batch (same kernel objects, no store, no checks):     ${IP_S} s"
python3 -c "import sys;a,b=float(sys.argv[1]),float(sys.argv[2]);print(f'ratio API/ip-batch: {a/b:.2f}x')" "$API_S" "$IP_S"
echo "API, all $N in one POST /network/batch:                  ${BATCH_S} s"
python3 -c "import sys;a,b=float(sys.argv[1]),float(sys.argv[2]);print(f'ratio batch/ip-batch: {a/b:.2f}x')" "$BATCH_S" "$IP_S"
echo "restart, initial reconcile of $N unchanged objects: $(echo "$LINE" | grep -oE 'duration_ms=[0-9.]+') $(echo "$LINE" | grep -oE 'writes=[0-9]+')"
