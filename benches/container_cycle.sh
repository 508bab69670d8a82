#!/usr/bin/env bash
# Container start cost, in one run on one machine, on the same busybox root filesystem:
#   Ferrite: POST /containers (template unpacked into a new root filesystem volume) + POST
#            .../start (init = /bin/true) + poll until stopped + DELETE, through a release
#            ferrited on loopback (keep-alive HTTP)
#   runc:    `runc run` of an OCI bundle of the same root filesystem (process /bin/true)
# plus Ferrite's start latency alone (API call until the init has been executed), and the
# daemon's RSS with many containers running at once.
# Usage: benches/container_cycle.sh [cycles] [parallel containers]   (needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/prereqs.sh
apt_install busybox-static runc curl
N="${1:-50}"
M="${2:-200}"
cargo build --release --bin ferrited --bin ferrite-ctr >/dev/null 2>&1 || cargo build --release --bin ferrited --bin ferrite-ctr
W=$(mktemp -d -p /var/tmp)
cleanup() { kill "${DPID:-}" 2>/dev/null || true; sleep 0.5; rm -rf "$W"; }
trap cleanup EXIT
# The shared root filesystem.
mkdir -p "$W/bundle/rootfs/bin" "$W/bundle/rootfs/proc" "$W/bundle/rootfs/sys" "$W/bundle/rootfs/dev" "$W/bundle/rootfs/tmp"
cp /bin/busybox "$W/bundle/rootfs/bin/"
for a in sh true sleep; do ln -s busybox "$W/bundle/rootfs/bin/$a"; done
tar -C "$W/bundle/rootfs" -czf "$W/busybox.tar.gz" .
(cd "$W/bundle" && runc spec && python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
json.dump(c, open("config.json", "w"))
PY
)
t0=$(date +%s.%N)
for i in $(seq 1 "$N"); do runc run --bundle "$W/bundle" "bench$i" >/dev/null; done
t1=$(date +%s.%N)
RUNC_MS=$(python3 -c "print(f'{($t1 - $t0) * 1000 / $N:.1f}')")
FERRITE_ROOT_PASSWORD=bench-root-password FERRITE_LOG=warn ./target/release/ferrited --data-dir "$W/d" --listen 127.0.0.1:0 --no-tls 2>"$W/log" &
DPID=$!
for _ in $(seq 100); do [ -s "$W/d/api.json" ] && break; sleep 0.1; done
python3 - "$W" "$N" "$M" "$DPID" <<'PY'
import hashlib, http.client, json, statistics, sys, time, urllib.parse
w, n, m, dpid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ep = json.load(open(f"{w}/d/api.json"))["endpoint"]
u = urllib.parse.urlparse(ep)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
def call(method, path, body=None, ct="application/json", tok=None):
    h = {"Content-Type": ct}
    if tok: h["Authorization"] = "Bearer " + tok
    data = body if isinstance(body, bytes) else (json.dumps(body) if body is not None else None)
    c.request(method, "/api/v1" + path, data, h)
    r = c.getresponse(); d = r.read()
    return r.status, (json.loads(d) if d else None)
_, t = call("POST", "/access/login", {"username": "root@local", "password": "bench-root-password"})
tok = t["ticket"]
tpl = open(f"{w}/busybox.tar.gz", "rb").read()
s, _ = call("POST", f"/storage/pools/local/upload?name=bb.tar.gz&content=template&sha256={hashlib.sha256(tpl).hexdigest()}", tpl, "application/octet-stream", tok)
assert s == 201
cycles, starts = [], []
for i in range(n):
    t0 = time.perf_counter()
    s, ct = call("POST", "/containers", {"name": f"c{i}", "template": "local:bb.tar.gz", "init": ["/bin/true"]}, tok=tok)
    assert s == 201, ct
    cid = ct["id"]
    ts = time.perf_counter()
    s, r = call("POST", f"/containers/{cid}/start", {}, tok=tok)
    assert s == 200, r
    starts.append((time.perf_counter() - ts) * 1000)
    while call("GET", f"/containers/{cid}", tok=tok)[1]["status"]["state"] != "stopped":
        time.sleep(0.001)
    s, _ = call("DELETE", f"/containers/{cid}", tok=tok)
    assert s == 204
    cycles.append((time.perf_counter() - t0) * 1000)
print(f"ferrite cycle (create from template + start + wait + delete): median {statistics.median(cycles):.1f} ms over {n}")
print(f"ferrite start (API call until init executed): median {statistics.median(starts):.1f} ms, p90 {sorted(starts)[int(n*0.9)]:.1f} ms")
open(f"{w}/ferrite_cycle", "w").write(str(statistics.median(cycles)))
# Density: M containers running at once.
ids = []
for i in range(m):
    s, ct = call("POST", "/containers", {"name": f"d{i}", "template": "local:bb.tar.gz", "init": ["/bin/sleep", "100000"]}, tok=tok)
    assert s == 201, ct
    s, r = call("POST", f"/containers/{ct['id']}/start", {}, tok=tok)
    assert s == 200, r
    ids.append(ct["id"])
running = sum(1 for i in ids if call("GET", f"/containers/{i}", tok=tok)[1]["status"]["state"] == "running")
rss = int([l for l in open(f"/proc/{dpid}/status") if l.startswith("VmRSS")][0].split()[1])
print(f"{running} of {m} containers running at once; ferrited RSS {rss / 1024:.1f} MiB (target < 100 MiB)")
for i in ids:
    call("DELETE", f"/containers/{i}?force=true", tok=tok)
PY
echo "runc run (same rootfs, /bin/true): mean ${RUNC_MS} ms per cycle over $N ($(nproc) cores, $(uname -r), cgroups: $(test -f /sys/fs/cgroup/cgroup.controllers && echo v2 || echo hybrid))"
python3 -c "import sys;f=float(open(sys.argv[1]).read());r=float(sys.argv[2]);print(f'ratio ferrite/runc: {f/r:.2f}x (target <= 1.0x)')" "$W/ferrite_cycle" "$RUNC_MS"
