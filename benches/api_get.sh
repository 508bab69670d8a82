#!/usr/bin/env bash
# Authenticated GET throughput and latency of ferrited against a hyper hello-world ceiling,
# in one run on one machine. Loads 1,000 users (the objects) into a fresh store, then runs
# wrk (2 threads, 64 connections, keep-alive) against:
#   1. the hello-world ceiling (examples/hyper_hello.rs)
#   2. GET /api/v1/access/users/user0500@local        (one object, API token auth)
#   3. GET /api/v1/access/users?tag=team7&limit=20    (filtered list, API token auth)
#   4. GET /api/v1/containers?tag=team7&limit=20       (1,000 stopped containers loaded)
#   5. GET /api/v1/vms?tag=team7&limit=20              (1,000 stopped VMs loaded)
#   6. GET /api/v1/access/users?name=user07*&limit=20  (name glob)
# and reports requests/s, p99 latency and the daemon's RSS. Targets: one object >= 0.40x of
# the ceiling; filtered lists >= 0.25x with p99 under 5 ms. Usage: benches/api_get.sh [seconds]
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
# 1,000 containers (from a one-directory template, so loading is quick) and 1,000 VMs (the
# micro-guest kernel), tagged like the users; none is started.
mkdir -p "$DATA/tpl/etc" && echo tiny > "$DATA/tpl/etc/hostname" && tar -C "$DATA/tpl" -czf "$DATA/tiny.tar.gz" .
sh tests/guests/build.sh "$DATA/guests" >/dev/null
for f in tiny.tar.gz:template guests/guest.elf:snippets; do
    path=${f%%:*}; content=${f##*:}; name=$(basename "$path")
    sum=$(sha256sum "$DATA/$path" | cut -d' ' -f1)
    curl -sf -H "$AUTH" -H 'content-type: application/octet-stream' --data-binary "@$DATA/$path" \
        "$EP/api/v1/storage/pools/local/upload?name=$name&content=$content&sha256=$sum" >/dev/null
done
python3 - "$EP" "$TICKET" <<'PY'
import json, sys, urllib.request
ep, t = sys.argv[1], sys.argv[2]
def post(path, body):
    req = urllib.request.Request(ep + path, data=json.dumps(body).encode(), headers={"Authorization": "Bearer " + t, "Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
for i in range(1000):
    post("/api/v1/containers", {"name": f"ct{i:04d}", "template": "local:tiny.tar.gz", "tags": [f"team{i % 50}"]})
    post("/api/v1/vms", {"name": f"vm{i:04d}", "kernel": "local:guest.elf", "tags": [f"team{i % 50}"]})
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
run get-containers-tag "$EP/api/v1/containers?tag=team7&limit=20" "Authorization: Bearer $TOKEN"
run get-vms-tag "$EP/api/v1/vms?tag=team7&limit=20" "Authorization: Bearer $TOKEN"
run get-users-name-glob "$EP/api/v1/access/users?name=user07*&limit=20" "Authorization: Bearer $TOKEN"
RSS=$(awk '/VmRSS/ {print $2}' /proc/$DPID/status)
HWM=$(awk '/VmHWM/ {print $2}' /proc/$DPID/status)
python3 - "$DATA" "$RSS" "$HWM" <<'PY'
import sys
d, rss, hwm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = float(open(f"{d}/rps.hello-ceiling").read())
one = float(open(f"{d}/rps.get-one-object").read())
print(f"ratio one-object/ceiling: {one / c:.2f}x (target >= 0.40x)")
for name in ["get-filtered-list", "get-containers-tag", "get-vms-tag", "get-users-name-glob"]:
    r = float(open(f"{d}/rps.{name}").read())
    print(f"ratio {name}/ceiling: {r / c:.2f}x (target >= 0.25x, p99 < 5 ms)")
print(f"ferrited RSS after load: {rss / 1024:.1f} MiB (peak {hwm / 1024:.1f} MiB; target < 50 MiB)")
PY
