#!/usr/bin/env bash
# A Debian container's start until systemd answers `systemctl is-system-running` with running
# (or degraded), in one run on one machine:
#   Ferrite: a container from the debian-12-standard template (built here with mmdebstrap:
#            minbase + systemd, OpenSSH, curl, sudo), unprivileged; POST .../start, then
#            POST .../exec of `systemctl is-system-running` every 50 ms; then .../shutdown.
#   LXC:     `lxc-create -t debian -- -r bookworm` (Debian's lxc-templates package: debootstrap with
#            ifupdown, OpenSSH, locales; privileged, as lxc-create makes it by default);
#            `lxc-start -d`, then `lxc-attach -- systemctl is-system-running` every 50 ms;
#            then `lxc-stop`.
# Alternating, median of N runs each. Neither container has a NIC (lxc.net.0.type = empty),
# so neither waits for a network. Target: Ferrite no slower.
# Usage: benches/systemd_boot.sh [runs]   (needs root and Debian's archive)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/prereqs.sh
apt_install lxc lxc-templates debootstrap rsync mmdebstrap zstd curl
N="${1:-10}"
cargo build --release --bin ferrited --bin ferrite-ctr >/dev/null 2>&1 || cargo build --release --bin ferrited --bin ferrite-ctr
W=$(mktemp -d -p /var/tmp)
CT=ferrite-bench-$$
cleanup() {
    lxc-stop -n "$CT" -k >/dev/null 2>&1 || true
    lxc-destroy -n "$CT" >/dev/null 2>&1 || true
    kill "${DPID:-}" 2>/dev/null || true
    sleep 0.5
    rm -rf "$W"
}
trap cleanup EXIT
echo ">> lxc-create -t debian (bookworm)"
lxc-create -n "$CT" -t debian -- -r bookworm >"$W/lxc-create.log" 2>&1 || { tail -20 "$W/lxc-create.log"; exit 1; }
sed -i 's/^lxc.net.0.type.*/lxc.net.0.type = empty/; /^lxc.net.0.\(link\|flags\|hwaddr\)/d' "/var/lib/lxc/$CT/config"
FERRITE_ROOT_PASSWORD=bench-root-password FERRITE_LOG=warn ./target/release/ferrited --data-dir "$W/d" --listen 127.0.0.1:0 --no-tls 2>"$W/log" &
DPID=$!
for _ in $(seq 100); do [ -s "$W/d/api.json" ] && break; sleep 0.1; done
python3 - "$W" "$N" "$CT" <<'PY'
import http.client, json, statistics, subprocess, sys, time, urllib.parse
w, n, ct = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ep = json.load(open(f"{w}/d/api.json"))["endpoint"]
u = urllib.parse.urlparse(ep)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=900)
tok = None
def call(method, path, body=None):
    h = {"Content-Type": "application/json"}
    if tok: h["Authorization"] = "Bearer " + tok
    c.request(method, "/api/v1" + path, json.dumps(body) if body is not None else None, h)
    r = c.getresponse(); d = r.read()
    return r.status, (json.loads(d) if d else None)
tok = call("POST", "/access/login", {"username": "root@local", "password": "bench-root-password"})[1]["ticket"]
print(">> building debian-12-standard with mmdebstrap")
s, t = call("POST", "/templates/build?wait=900", {"template": "debian-12-standard"})
assert t["state"] == "succeeded", t
s, r = call("POST", "/containers", {"name": "deb", "template": "local:debian-12-standard.tar.zst"})
assert s == 201, r
cid = r["id"]
UP = ("running", "degraded")
def ferrite_once():
    t0 = time.perf_counter()
    s, r = call("POST", f"/containers/{cid}/start", {})
    assert s == 200, r
    while True:
        s, r = call("POST", f"/containers/{cid}/exec", {"command": ["systemctl", "is-system-running"], "timeout": 10})
        if s == 200 and r["stdout"].strip() in UP:
            break
        time.sleep(0.05)
    dt = (time.perf_counter() - t0) * 1000
    state = r["stdout"].strip()
    s, r = call("POST", f"/containers/{cid}/shutdown", {"timeout": 60})
    assert r["status"]["state"] == "stopped", r
    return dt, state
def lxc_once():
    t0 = time.perf_counter()
    subprocess.run(["lxc-start", "-n", ct, "-d"], check=True)
    while True:
        p = subprocess.run(["lxc-attach", "-n", ct, "--", "systemctl", "is-system-running"], capture_output=True, text=True)
        if p.stdout.strip() in UP:
            break
        time.sleep(0.05)
    dt = (time.perf_counter() - t0) * 1000
    state = p.stdout.strip()
    subprocess.run(["lxc-stop", "-n", ct], check=True)
    return dt, state
f, l = [], []
for i in range(n):
    f.append(ferrite_once()); l.append(lxc_once())
fm = statistics.median(x for x, _ in f); lm = statistics.median(x for x, _ in l)
print(f"ferrite (unprivileged, debian-12-standard): median {fm:.0f} ms to '{f[-1][1]}' over {n}; runs {[round(x) for x, _ in f]}")
print(f"lxc-start (lxc-create -t debian, bookworm): median {lm:.0f} ms to '{l[-1][1]}' over {n}; runs {[round(x) for x, _ in l]}")
print(f"ratio ferrite/lxc: {fm / lm:.2f}x (target <= 1.0x)")
PY
echo "($(nproc) cores, $(uname -r), cgroups: $(test -f /sys/fs/cgroup/cgroup.controllers && echo v2 || echo hybrid), lxc $(lxc-start --version))"
