#!/usr/bin/env python3
"""`terraform apply` of a bridge (+ a VLAN where the kernel has 802.1Q) and N containers from
empty, then the no-op plan after it, then destroy: wall times with the real terraform CLI and
the locally built provider against a real ferrited in a throwaway network namespace.

Usage: benches/terraform_apply.py [--containers 50] [--profile release|debug]
Needs: terraform on PATH, busybox-static, root. Builds nothing: run
`cargo build --release --workspace --bins` first.
"""
import argparse, hashlib, json, os, shutil, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PW = "bench-root-password"


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def kernel_has_vlan(ns):
    r = subprocess.run(f"ip -n {ns} link add pv0 type veth peer name pv1 && "
                       f"ip -n {ns} link add link pv0 name pv0.10 type vlan id 10", shell=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(f"ip -n {ns} link del pv0", shell=True, stderr=subprocess.DEVNULL)
    return r.returncode == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--containers", type=int, default=50)
    ap.add_argument("--profile", default="release")
    a = ap.parse_args()
    bindir = os.path.join(ROOT, "target", a.profile)
    for b in ("ferrited", "terraform-provider-ferrite"):
        if not os.path.exists(os.path.join(bindir, b)):
            sys.exit(f"{bindir}/{b} missing: cargo build --{a.profile} --workspace --bins")
    work = tempfile.mkdtemp(prefix="tfbench-")
    ns = f"tfbench{os.getpid()}"
    sh(f"ip netns add {ns} && ip -n {ns} link set lo up")
    daemon = None
    try:
        data = os.path.join(work, "data")
        env = dict(os.environ, FERRITE_ROOT_PASSWORD=PW, FERRITE_LOG="warn")
        daemon = subprocess.Popen([os.path.join(bindir, "ferrited"), "--data-dir", data,
                                   "--listen", "127.0.0.1:0", "--no-tls", "--netns", f"/run/netns/{ns}"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "d.log"), "w"))
        for _ in range(300):
            try:
                endpoint = json.load(open(os.path.join(data, "api.json")))["endpoint"]
                break
            except Exception:
                time.sleep(0.05)
        # A busybox template, as the tests build it.
        root = os.path.join(work, "bb")
        for d in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root"):
            os.makedirs(os.path.join(root, d))
        shutil.copy("/bin/busybox", os.path.join(root, "bin/busybox"))
        for t in ("sh", "sleep"):
            os.symlink("busybox", os.path.join(root, "bin", t))
        os.symlink("../bin/busybox", os.path.join(root, "sbin/init"))
        tgz = os.path.join(work, "bb.tar.gz")
        sh(f"tar -C {root} -czf {tgz} .")
        blob = open(tgz, "rb").read()
        tok = json.loads(urllib.request.urlopen(urllib.request.Request(
            endpoint + "/api/v1/access/login", data=json.dumps({"username": "root@local", "password": PW}).encode(),
            headers={"Content-Type": "application/json"})).read())["ticket"]
        urllib.request.urlopen(urllib.request.Request(
            endpoint + f"/api/v1/storage/pools/local/upload?name=bb.tar.gz&content=template&sha256={hashlib.sha256(blob).hexdigest()}",
            data=blob, headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/octet-stream"}))
        vlan = kernel_has_vlan(ns)
        tf = os.path.join(work, "tf")
        os.makedirs(tf)
        open(os.path.join(tf, "cli.tfrc"), "w").write(
            'provider_installation {\n dev_overrides { "ferrite/ferrite" = "%s" }\n direct {}\n}\n' % bindir)
        cfg = ('terraform {\n required_providers {\n ferrite = { source = "ferrite/ferrite" }\n }\n}\n'
               'provider "ferrite" {}\n'
               'resource "ferrite_bridge" "br" { name = "benchbr0" }\n')
        if vlan:
            cfg += 'resource "ferrite_vlan" "v" {\n parent = ferrite_bridge.br.name\n vlan_id = 10\n}\n'
        cfg += ('resource "ferrite_container" "ct" {\n count = %d\n name = "ct${count.index}"\n'
                ' template = "local:bb.tar.gz"\n memory = 32\n init = ["/bin/sh", "-c", "exec sleep 1000000"]\n'
                ' net = { net0 = { bridge = ferrite_bridge.br.name } }\n}\n' % a.containers)
        open(os.path.join(tf, "main.tf"), "w").write(cfg)
        tenv = dict(os.environ, TF_CLI_CONFIG_FILE=os.path.join(tf, "cli.tfrc"), CHECKPOINT_DISABLE="1",
                    TF_IN_AUTOMATION="1", FERRITE_ENDPOINT=endpoint, FERRITE_USERNAME="root@local",
                    FERRITE_PASSWORD=PW)

        def run(*args):
            t0 = time.perf_counter()
            r = subprocess.run(["terraform", *args], cwd=tf, env=tenv, capture_output=True, text=True)
            dt = time.perf_counter() - t0
            if r.returncode not in (0,):
                sys.exit(f"terraform {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
            return dt

        what = f"bridge{' + VLAN' if vlan else ''} + {a.containers} containers"
        t_apply = run("apply", "-auto-approve", "-input=false", "-no-color", "-parallelism=10")
        t_plan = run("plan", "-detailed-exitcode", "-input=false", "-no-color")
        t_plan_nr = run("plan", "-detailed-exitcode", "-input=false", "-no-color", "-refresh=false")
        t_destroy = run("apply", "-destroy", "-auto-approve", "-input=false", "-no-color", "-parallelism=10")
        print(f"terraform apply   {what} from empty: {t_apply:6.2f} s")
        print(f"terraform plan    no-op, with refresh:        {t_plan:6.2f} s")
        print(f"terraform plan    no-op, -refresh=false:      {t_plan_nr:6.2f} s")
        print(f"terraform destroy everything:                 {t_destroy:6.2f} s")
        if not vlan:
            print("(this kernel has no 802.1Q: the VLAN resource was left out)")
    finally:
        if daemon:
            daemon.kill()
            daemon.wait()
        subprocess.run(f"ip netns pids {ns} | xargs -r kill -9", shell=True)
        subprocess.run(f"ip netns del {ns}", shell=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
