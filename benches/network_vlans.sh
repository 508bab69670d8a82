#!/usr/bin/env bash
# The issue's networking benchmark: 1,000 VLAN interfaces plus 1,000 bridge VLAN entries in one
# POST /network/batch, against the same kernel work with `ip -batch` + `bridge -batch`, in one
# run; then the reconcile of the unchanged objects after a restart.
# Where this host's kernel lacks 802.1Q or bridge VLAN filtering, the whole script re-runs
# itself inside the kernel test VM (scripts/kernel-vm: Debian's stock kernel under QEMU TCG;
# both sides then run emulated, so compare the ratio, not the absolute times).
# Usage: benches/network_vlans.sh [N]   (default 1000; needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000}"
if [ -z "${FERRITE_IN_KERNEL_VM:-}" ]; then
    cargo build --release --bin ferrited >/dev/null 2>&1 || cargo build --release --bin ferrited
    ip netns add fer-probe-$$
    if ! ip -n fer-probe-$$ link add name pv0 type veth peer name pv1 2>/dev/null \
        || ! ip -n fer-probe-$$ link add link pv0 name pv0.5 type vlan id 5 2>/dev/null \
        || ! ip -n fer-probe-$$ link add name pbr type bridge vlan_filtering 1 2>/dev/null; then
        ip netns del fer-probe-$$
        echo "host kernel $(uname -r) lacks 802.1Q / bridge VLAN filtering: running in the kernel VM"
        scripts/kernel-vm/kernel-vm prepare
        exec scripts/kernel-vm/kernel-vm run /bin/bash "$PWD/benches/network_vlans.sh" "$N"
    fi
    ip netns del fer-probe-$$
fi
NS="fer-vbench-$$"; NS2="fer-vbench-ip-$$"
DATA=$(mktemp -d -p "$PWD/target")
cleanup() { kill "${DPID:-}" 2>/dev/null || true; ip netns del "$NS" 2>/dev/null || true; ip netns del "$NS2" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
ip netns add "$NS"; ip netns add "$NS2"
for ns in "$NS" "$NS2"; do
    ip -n "$ns" link add u0 type veth peer name u1
    ip -n "$ns" link add p0 type veth peer name p1
    ip -n "$ns" link set u0 up
done
start_daemon() {
    FERRITE_ROOT_PASSWORD=bench-root-password FERRITE_LOG=info,ferrite::api::handlers::network=debug ./target/release/ferrited --data-dir "$DATA" --listen 127.0.0.1:0 --no-tls --netns "/run/netns/$NS" 2>>"$DATA/log" &
    DPID=$!
    rm -f "$DATA/api.json"; for _ in $(seq 600); do [ -s "$DATA/api.json" ] && break; sleep 0.05; done
}
start_daemon
EP=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['endpoint'])" "$DATA/api.json")
BATCH_S=$(python3 - "$EP" "$N" <<'PY'
import http.client, json, sys, time, urllib.parse
ep, n = sys.argv[1], int(sys.argv[2])
u = urllib.parse.urlparse(ep)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=3600)
def call(method, path, body, token=None):
    h = {"Content-Type": "application/json"}
    if token: h["Authorization"] = "Bearer " + token
    c.request(method, path, json.dumps(body), h)
    r = c.getresponse(); data = r.read()
    return r.status, data
_, t = call("POST", "/api/v1/access/login", {"username": "root@local", "password": "bench-root-password"})
tok = json.loads(t)["ticket"]
batch = {
    "bridges": [{"name": "vbr0", "vlan_aware": True, "ports": {"p0": {"vlans": [{"from": 2, "to": n + 1}]}}}],
    "vlans": [{"parent": "u0", "vlan_id": i} for i in range(2, n + 2)],
}
t0 = time.perf_counter()
s, d = call("POST", "/api/v1/network/batch", batch, tok)
assert s == 201, d[:800]
print(f"{time.perf_counter() - t0:.3f}")
PY
)
{ for i in $(seq 2 $((N+1))); do echo "link add link u0 name u0.$i up type vlan id $i"; done
  echo "link add vbr0 type bridge vlan_filtering 1 vlan_default_pvid 0"; echo "link set p0 master vbr0"; echo "link set p0 up"; echo "link set vbr0 up"; } > "$DATA/ip.batch"
{ for i in $(seq 2 $((N+1))); do echo "vlan add dev p0 vid $i"; done; } > "$DATA/bridge.batch"
IP_S=$(python3 - "$NS2" "$DATA" <<'PY'
import subprocess, sys, time
ns, d = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
subprocess.run(["ip", "-n", ns, "-batch", f"{d}/ip.batch"], check=True)
subprocess.run(["ip", "netns", "exec", ns, "bridge", "-batch", f"{d}/bridge.batch"], check=True)
print(f"{time.perf_counter() - t0:.3f}")
PY
)
# Check both namespaces hold the same work.
A=$(ip -n "$NS" -o link show type vlan | wc -l); B=$(ip -n "$NS2" -o link show type vlan | wc -l)
VA=$(bridge -n "$NS" vlan show dev p0 | grep -cE '^\s*(p0)?\s+[0-9]+'); VB=$(bridge -n "$NS2" vlan show dev p0 | grep -cE '^\s*(p0)?\s+[0-9]+')
kill "$DPID"; wait "$DPID" 2>/dev/null || true
start_daemon
for _ in $(seq 600); do [ "$(grep -c 'initial reconcile finished' "$DATA/log")" -ge 2 ] && break; sleep 0.1; done
LINE=$(grep "initial reconcile finished" "$DATA/log" | tail -1)
echo "N=$N VLAN interfaces + $N bridge VLAN entries ($(nproc) cpus, kernel $(uname -r)${FERRITE_IN_KERNEL_VM:+, inside the QEMU TCG kernel VM})"
echo "kernel check: VLAN links ferrite=$A iproute2=$B; p0 bridge VLANs ferrite=$VA iproute2=$VB"
echo "Ferrite, one POST /network/batch:      ${BATCH_S} s"
echo "ip -batch + bridge -batch (one run):   ${IP_S} s"
python3 -c "import sys;a,b=float(sys.argv[1]),float(sys.argv[2]);print(f'ratio Ferrite/iproute2: {a/b:.2f}x (target <= 1.5x)')" "$BATCH_S" "$IP_S"
grep -o "network batch phases.*" "$DATA/log" | head -1 | sed 's/^/daemon: /' || true
echo "restart, initial reconcile of the unchanged objects: $(echo "$LINE" | grep -oE 'objects=[0-9]+') $(echo "$LINE" | grep -oE 'duration_ms=[0-9.]+') $(echo "$LINE" | grep -oE 'writes=[0-9]+')"
