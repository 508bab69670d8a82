#!/usr/bin/env python3
"""Boot-time, footprint and density benchmark for ferrite-vmm against QEMU's microvm.

Same PVH micro-guest ELF for both (tests/guests/guest.elf, built here with gcc): it prints one
line on COM1 and powers off (ACPI sleep port for ferrite-vmm, isa-debug-exit for QEMU).

Measures, in one run:
  - process start -> first serial byte, and -> exit (median of N runs), and peak RSS;
  - VMM overhead: process RSS minus the guest RAM pages the guest touched (1 vCPU, 128 MiB);
  - density: M micro-VMs running at once (all reach their guest code), total RSS.

Usage: benches/vmm_boot.py [--runs N] [--density M] [--vmm PATH]
"""
import argparse, os, resource, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    first = p.stdout.read(1)
    t1 = time.perf_counter()
    p.stdout.read()
    p.wait()
    t2 = time.perf_counter()
    if not first:
        raise SystemExit(f"no serial output from {cmd}")
    return (t1 - t0) * 1000, (t2 - t0) * 1000


def peak_rss_kib(cmd):
    """Peak RSS of one run, measured in a fresh child so earlier runs do not count."""
    code = ("import resource,subprocess,sys;"
            "subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code] + cmd, capture_output=True, text=True)
    return int(out.stdout.strip())


def rss_breakdown(pid, guest_bytes):
    """(total RSS, RSS of the guest RAM mapping) in KiB, from /proc/PID/smaps."""
    total = guest = 0
    size = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and "-" in parts[0] and ":" not in parts[0]:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                size = hi - lo
            elif parts and parts[0] == "Rss:":
                kib = int(parts[1])
                total += kib
                if size == guest_bytes:
                    guest += kib
    return total, guest


def wait_for(path, text, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with open(path, "rb") as f:
                if text in f.read():
                    return True
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--density", type=int, default=50)
    ap.add_argument("--vmm", default=os.path.join(ROOT, "target/release/ferrite-vmm"))
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="vmm-bench-")
    subprocess.run([os.path.join(ROOT, "tests/guests/build.sh"), work], check=True)
    guest = os.path.join(work, "guest.elf")
    ferrite = [a.vmm, "--kernel", guest, "--memory", "128", "--vcpus", "1", "--cmdline", "test=hello"]
    qemu = ["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-cpu", "host,-arch-capabilities",
            "-m", "128", "-smp", "1", "-nodefaults", "-no-user-config", "-nographic", "-display", "none",
            "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
            "-kernel", guest, "-append", "test=hello"]
    results = {}
    for name, cmd in (("ferrite-vmm", ferrite), ("qemu microvm", qemu)):
        firsts, exits = [], []
        timed(cmd)  # warm the page cache
        for _ in range(a.runs):
            f, e = timed(cmd)
            firsts.append(f)
            exits.append(e)
        rss = peak_rss_kib(cmd)
        results[name] = (statistics.median(firsts), statistics.median(exits), rss)
        print(f"{name:14s} first serial byte {statistics.median(firsts):7.2f} ms  exit {statistics.median(exits):7.2f} ms"
              f"  (median of {a.runs})  peak RSS {rss / 1024:6.1f} MiB")
    fv, qv = results["ferrite-vmm"], results["qemu microvm"]
    print(f"ratio ferrite/qemu: first byte {fv[0] / qv[0]:.2f}x, exit {fv[1] / qv[1]:.2f}x, peak RSS {fv[2] / qv[2]:.2f}x")

    # VMM overhead with 1 vCPU / 128 MiB: RSS outside the guest RAM mapping.
    log = os.path.join(work, "hang.log")
    p = subprocess.Popen([a.vmm, "--kernel", guest, "--memory", "128", "--cmdline", "test=hang",
                          "--no-stdout", "--serial-log", log], stderr=subprocess.DEVNULL)
    if not wait_for(log, b"hanging"):
        raise SystemExit("hang guest did not start")
    total, guest_rss = rss_breakdown(p.pid, 128 << 20)
    p.kill()
    p.wait()
    print(f"VMM overhead (1 vCPU, 128 MiB): RSS {total / 1024:.2f} MiB, guest pages {guest_rss / 1024:.2f} MiB,"
          f" overhead {(total - guest_rss) / 1024:.2f} MiB")

    # Density: M micro-VMs at once, each reaching its guest code.
    procs, logs = [], []
    t0 = time.perf_counter()
    for i in range(a.density):
        lg = os.path.join(work, f"d{i}.log")
        logs.append(lg)
        procs.append(subprocess.Popen([a.vmm, "--kernel", guest, "--memory", "16", "--cmdline", "test=hang",
                                       "--no-stdout", "--serial-log", lg], stderr=subprocess.DEVNULL))
    ok = sum(1 for lg in logs if wait_for(lg, b"hanging"))
    dt = time.perf_counter() - t0
    alive = sum(1 for p in procs if p.poll() is None)
    rss = 0
    for p in procs:
        try:
            with open(f"/proc/{p.pid}/status") as f:
                rss += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        except (FileNotFoundError, StopIteration):
            pass
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()
    print(f"density: {ok}/{a.density} micro-VMs ran their guest code, {alive} alive at once,"
          f" started in {dt:.2f} s, total RSS {rss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
