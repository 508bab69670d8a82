#!/usr/bin/env bash
# Authenticated GET throughput and latency of ferrited against a hyper hello-world ceiling,
# in one run on one machine. Loads 1,000 users (the objects) into a fresh store, then runs
# wrk (2 threads, 64 connections, keep-alive) against:
#   1. the hello-world ceiling (examples/hyper_hello.rs)
#   2. GET /api/v1/access/users/user0500@local        (one object, API token auth)
#   3. GET /api/v1/access/users?tag=team7&limit=20    (filtered list, API token auth)
# and reports requests/s, p99 latency and the daemon's RSS. Usage: benches/api_get.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/prereqs.sh
apt_install "${BUILD_PACKAGES[@]}" wrk curl
DUR="${1:-10}"
cargo build --release --bin ferrited --example hyper_hello >/dev/null 2>&1 || cargo build --release --bin ferrited --example hyper_hello
DATA=$(mktemp -d)
trap 'kill $DPID $HPID 2>/dev/null || true; rm -rf "$DATA"' EXIT
FERRITE_ROOT_PASSWORD=bench-root-password FERRITE_LOG=warn ./target/release/ferrited --data-dir "$DATA" --listen 127.0.0.1:0 --no-tls 2>"$DATA/log" &
DPID=$!
./target/release/examples/hyper_hello 127.0.0.1:18080 2>/dev/null &
HPID=$!
for _ in $(seq 100); do [ -s "$DATA/api.json" ] && break; sleep 0.1; done
EP=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['endpoint'])" "$DATA/api.json")
TICKET=$(curl -sf -H 'content-type: application/json' -d '{"username":"root@local","password":"bench-root-password"}' "$EP/api/v1/access/login" | python3 -c "import json,sys;print(json.load(sys.stdin)['ticket'])")
AUTH="Authorization: Bearer $TICKET"
python3 - "$EP" "$TICKET" <<'PY'
import json, sys, urllib.request
ep, t = sys.argv[1], sys.argv[2]
for i in range(1000):
    body = json.dumps({"userid": f"user{i:04d}@local", "tags": [f"team{i % 50}"]}).encode()
    req = urllib.request.Request(ep + "/api/v1/access/users", data=body, headers={"Authorization": "Bearer " + t, "Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
PY
TOKEN=$(curl -sf -H "$AUTH" -H 'content-type: application/json' -d '{"name":"bench"}' "$EP/api/v1/access/tokens" | python3 -c "import json,sys;print(json.load(sys.stdin)['token'])")
curl -sf -H "Authorization: Bearer $TOKEN" "$EP/api/v1/access/users/user0500@local" >/dev/null
run() { # name url [header]
    local out
    if [ -n "${3:-}" ]; then out=$(wrk -t2 -c64 -d"${DUR}s" --latency -H "$3" "$2"); else out=$(wrk -t2 -c64 -d"${DUR}s" --latency "$2"); fi
    local rps p99 non2xx
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    printf '%-34s %12s req/s   p99 %8s   non-2xx %s\n' "$1" "$rps" "$p99" "${non2xx:-0}"
    echo "$rps" > "$DATA/rps.$1"
}
echo "machine: $(nproc) cores, $(uname -r); wrk -t2 -c64 -d${DUR}s"
run hello-ceiling http://127.0.0.1:18080/
run get-one-object "$EP/api/v1/access/users/user0500@local" "Authorization: Bearer $TOKEN"
run get-filtered-list "$EP/api/v1/access/users?tag=team7&limit=20" "Authorization: Bearer $TOKEN"
RSS=$(awk '/VmRSS/ {print $2}' /proc/$DPID/status)
HWM=$(awk '/VmHWM/ {print $2}' /proc/$DPID/status)
python3 - "$DATA" "$RSS" "$HWM" <<'PY'
import sys
d, rss, hwm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = float(open(f"{d}/rps.hello-ceiling").read())
one = float(open(f"{d}/rps.get-one-object").read())
lst = float(open(f"{d}/rps.get-filtered-list").read())
print(f"ratio one-object/ceiling: {one / c:.2f}x (target >= 0.40x)")
print(f"ratio filtered-list/ceiling: {lst / c:.2f}x")
print(f"ferrited RSS after load: {rss / 1024:.1f} MiB (peak {hwm / 1024:.1f} MiB; target < 50 MiB)")
PY
