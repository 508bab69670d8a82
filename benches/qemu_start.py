#!/usr/bin/env python3
"""Start cost and memory of Ferrite's QEMU engine against the same QEMU command run by hand.

In one run, on one machine, with the same guest (a GRUB image made by grub-mkrescue, booted
from a CD-ROM under TCG, 256 MiB, SeaBIOS):
  - Ferrite: POST /vms/{id}/start through a release ferrited on loopback; the call returns
    once QEMU's QMP socket answers, i.e. the machine is built and its vCPU runs guest code;
    then POST /vms/{id}/stop.
  - By hand: the exact argument list Ferrite's QEMU ran with (read from /proc/PID/cmdline,
    sockets moved to a scratch directory), spawned from Python, timed until its QMP socket
    answers `query-status` with running, then killed.
  - RSS of both QEMU processes 3 s after start (GRUB's menu on screen): the engine runs QEMU
    as is, so any difference is QEMU's own variance, not Ferrite's.
Median of N runs each, alternating.

Usage: benches/qemu_start.py [--runs N]   (needs root, qemu-system-x86, grub-pc-bin, xorriso)
"""
import argparse, hashlib, http.client, json, os, socket, statistics, subprocess, sys, tempfile, time, urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def qmp_running(path, deadline):
    while time.perf_counter() < deadline:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            f = s.makefile("rw")
            f.readline()
            f.write('{"execute":"qmp_capabilities"}\n'); f.flush(); f.readline()
            f.write('{"execute":"query-status"}\n'); f.flush()
            while True:
                m = json.loads(f.readline())
                if "return" in m:
                    s.close()
                    return m["return"]["status"] == "running"
        except OSError:
            time.sleep(0.002)
    raise SystemExit(f"QMP at {path} did not answer")


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--bin", "ferrited"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    w = tempfile.mkdtemp(prefix="qemu-bench-", dir="/var/tmp")
    os.makedirs(f"{w}/iso/boot/grub")
    open(f"{w}/iso/boot/grub/grub.cfg", "w").write(
        "serial --unit=0\nterminal_output serial\necho READY\nset timeout=-1\nmenuentry x { echo x }\n")
    subprocess.run(["grub-mkrescue", "--locales=", "--fonts=", "--themes=", "-o", f"{w}/g.iso", f"{w}/iso"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = dict(os.environ, FERRITE_ROOT_PASSWORD="bench-root-password", FERRITE_LOG="warn")
    d = subprocess.Popen([f"{ROOT}/target/release/ferrited", "--data-dir", f"{w}/d", "--listen",
                          "127.0.0.1:0", "--no-tls"], env=env, stderr=open(f"{w}/log", "w"))
    try:
        for _ in range(100):
            if os.path.exists(f"{w}/d/api.json"):
                break
            time.sleep(0.1)
        ep = urllib.parse.urlparse(json.load(open(f"{w}/d/api.json"))["endpoint"])
        c = http.client.HTTPConnection(ep.hostname, ep.port, timeout=120)

        def call(method, path, body=None, ct="application/json", tok=None):
            h = {"Content-Type": ct}
            if tok:
                h["Authorization"] = "Bearer " + tok
            data = body if isinstance(body, bytes) else (json.dumps(body) if body is not None else None)
            c.request(method, "/api/v1" + path, data, h)
            r = c.getresponse(); raw = r.read()
            return r.status, (json.loads(raw) if raw else None)

        _, t = call("POST", "/access/login", {"username": "root@local", "password": "bench-root-password"})
        tok = t["ticket"]
        iso = open(f"{w}/g.iso", "rb").read()
        s, _ = call("POST", f"/storage/pools/local/upload?name=g.iso&content=iso&sha256={hashlib.sha256(iso).hexdigest()}",
                    iso, "application/octet-stream", tok)
        assert s == 201, s
        s, vm = call("POST", "/vms", {"name": "bench", "memory": 256, "accel": "tcg",
                                      "cdrom": {"cdrom0": {"volume": "local:g.iso"}}}, tok=tok)
        assert s == 201, vm
        vid = vm["id"]
        ferrite_ms, hand_ms, ferrite_rss, hand_rss = [], [], [], []
        argv = None
        for i in range(a.runs):
            t0 = time.perf_counter()
            s, v = call("POST", f"/vms/{vid}/start", {}, tok=tok)
            ferrite_ms.append((time.perf_counter() - t0) * 1000)
            assert s == 200 and v["status"]["state"] == "running", v
            pid = v["status"]["pid"]
            if argv is None:
                argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[:-1]
                argv = [x.decode() for x in argv]
            time.sleep(3)
            ferrite_rss.append(rss_kib(pid))
            call("POST", f"/vms/{vid}/stop", {}, tok=tok)
            # The same command by hand, its sockets and logs in a scratch directory.
            hd = f"{w}/hand{i}"
            os.makedirs(hd)
            vmdir = f"{w}/d/vms/{vid}"
            hargv = [x.replace(vmdir, hd) for x in argv]
            t0 = time.perf_counter()
            p = subprocess.Popen(hargv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
            assert qmp_running(f"{hd}/qmp.sock", time.perf_counter() + 30)
            hand_ms.append((time.perf_counter() - t0) * 1000)
            time.sleep(3)
            hand_rss.append(rss_kib(p.pid))
            p.kill(); p.wait()
        med = statistics.median
        print(f"runs: {a.runs} each, alternating; guest: GRUB from a CD-ROM, 256 MiB, TCG, SeaBIOS")
        print(f"ferrite  start call -> QEMU running: median {med(ferrite_ms):7.1f} ms  (min {min(ferrite_ms):.1f}, max {max(ferrite_ms):.1f})")
        print(f"by hand  spawn      -> QMP running:  median {med(hand_ms):7.1f} ms  (min {min(hand_ms):.1f}, max {max(hand_ms):.1f})")
        print(f"engine adds: {med(ferrite_ms) - med(hand_ms):+.1f} ms (median difference)")
        print(f"QEMU RSS 3 s in: ferrite {med(ferrite_rss) / 1024:.1f} MiB, by hand {med(hand_rss) / 1024:.1f} MiB "
              f"(difference {(med(ferrite_rss) - med(hand_rss)) / 1024:+.1f} MiB)")
    finally:
        d.terminate(); d.wait()
        subprocess.run(["rm", "-rf", w])


if __name__ == "__main__":
    sys.exit(main())
