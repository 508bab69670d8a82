#!/usr/bin/env python3
"""Property-based fuzz of every operation of ferrited's API with schemathesis.

Driven by tests/api_fuzz.rs against a real daemon whose network engine works in a namespace
the test owns; can be run by hand against any daemon:

    target/fuzz-venv/bin/python tests/fuzz/run.py --base http://127.0.0.1:PORT \
        --token TICKET --workdir /tmp/fuzz [--seed N] [--max-examples N]

The contract checked on every answer (hooks.py):
  ferrite_no_server_error    no 5xx, except 507 (a pool that cannot hold the request)
  ferrite_status_documented  the status is documented for that operation
  ferrite_response_schema    the body matches the schema documented for that status
  ferrite_content_type       the content type is the documented one

Before the run, a few objects of every kind are created (best effort; each failure is
printed) and their identifiers are mixed into the generated path parameters, so operations
on existing objects reach their handlers and do not only answer 404.

Exit status: 0 when no check failed, 1 with the findings printed (deduplicated: one per
operation, check and status, with the smallest request that showed it), 2 when the harness
itself could not run.
"""

import argparse
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKS = [
    "ferrite_no_server_error",
    "ferrite_status_documented",
    "ferrite_response_schema",
    "ferrite_content_type",
]
# Operations not fuzzed at all. Keep this list short and say why for each entry.
EXCLUDED = [
    # None: every operation is fuzzed. Destructive inputs are constrained in hooks.py
    # (CONSTRAINTS) instead of excluding whole operations.
]


class Api:
    def __init__(self, base, token):
        self.base = base.rstrip("/") + "/api/v1"
        self.token = token

    def call(self, method, path, body=None, raw=None, ctype=None):
        data = None
        headers = {"Authorization": "Bearer " + self.token}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif raw is not None:
            data = raw
            headers["Content-Type"] = ctype or "application/octet-stream"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                text = r.read().decode("utf-8", "replace")
                status = r.status
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            status = e.code
        try:
            js = json.loads(text) if text else None
        except ValueError:
            js = None
        return status, js, text


def tiny_template():
    """A gzip tarball with the layout of a root filesystem (never started by the fuzz)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for d in ["bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root"]:
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            tar.addfile(ti)
        init = b"#!/bin/sh\nexit 0\n"
        ti = tarfile.TarInfo("sbin/init")
        ti.size = len(init)
        ti.mode = 0o755
        tar.addfile(ti, io.BytesIO(init))
    return buf.getvalue()


def setup_fixtures(api, sandbox, log, template=None):
    """Creates one object of each kind (best effort: each result is printed)."""
    import hashlib

    def want(what, status, expect, text):
        ok = status in expect
        log("  %-40s %s%s" % (what, status, "" if ok else "  (setup failed: %s)" % text[:300]))
        return ok

    def post(what, path, body, expect=(200, 201, 202)):
        s, js, text = api.call("POST", path, body)
        return js if want(what, s, expect, text) else None

    post("group fz-grp", "/access/groups", {"groupid": "fz-grp", "comment": "fuzz"})
    post("user fz-user@local", "/access/users",
         {"userid": "fz-user@local", "password": "fuzz-password-1", "groups": ["fz-grp"]})
    post("role FzRole", "/access/roles", {"roleid": "FzRole", "privileges": ["VM.Audit"]})
    post("acl", "/access/acl", {"path": "/vms", "principal_type": "group",
                                "principal": "fz-grp", "role": "FzRole", "propagate": False})
    post("token root@local!fz-tok", "/access/tokens",
         {"name": "fz-tok", "privileges": ["Sys.Audit"]})
    post("token fz-user@local!fz-tok2", "/access/tokens",
         {"name": "fz-tok2", "user": "fz-user@local"})
    os.makedirs(os.path.join(sandbox, "fzpool"), exist_ok=True)
    post("pool fz", "/storage/pools",
         {"name": "fz", "type": "dir", "path": os.path.join(sandbox, "fzpool")})
    post("volume fz:fz-vol", "/storage/pools/fz/volumes", {"name": "fz-vol", "size": 1048576})
    post("volume fz:fz-vol2", "/storage/pools/fz/volumes",
         {"name": "fz-vol2", "size": 2097152, "format": "qcow2"})
    post("volume snapshot fz:fz-vol@fz-snap", "/storage/pools/fz/volumes/fz-vol/snapshots",
         {"name": "fz-snap"})
    tpl = tiny_template()
    s, _, text = api.call(
        "POST",
        "/storage/pools/local/upload?name=fz-tpl.tar.gz&content=template&sha256="
        + hashlib.sha256(tpl).hexdigest(),
        raw=tpl,
    )
    want("upload local:fz-tpl.tar.gz", s, (201,), text)
    kernel = b"\x7fELF" + b"\0" * 60
    s, _, text = api.call(
        "POST",
        "/storage/pools/local/upload?name=fz-kernel&content=snippets&sha256="
        + hashlib.sha256(kernel).hexdigest(),
        raw=kernel,
    )
    want("upload local:fz-kernel", s, (201,), text)
    post("bridge fzbr0", "/network/bridges", {"name": "fzbr0", "comment": "fuzz"})
    post("bond fzbond0", "/network/bonds", {"name": "fzbond0", "mode": "active-backup"})
    post("vlan p1.10", "/network/vlans", {"parent": "p1", "vlan_id": 10})
    post("network confirm", "/network/confirm", {}, expect=(200,))
    post("container 900", "/containers",
         {"id": 900, "name": "fz-ct", "template": "local:fz-tpl.tar.gz", "memory": 64})
    post("container snapshot 900@fz-snap", "/containers/900/snapshots", {"name": "fz-snap"})
    if template:
        with open(template, "rb") as f:
            data = f.read()
        s, _, text = api.call(
            "POST",
            "/storage/pools/local/upload?name=fz-busybox.tar.gz&content=template&sha256="
            + hashlib.sha256(data).hexdigest(),
            raw=data,
        )
        want("upload local:fz-busybox.tar.gz", s, (201,), text)
        post("container 902 (busybox)", "/containers",
             {"id": 902, "name": "fz-bb", "template": "local:fz-busybox.tar.gz", "memory": 64,
              "init": ["/bin/sleep", "3600"]})
        post("start container 902", "/containers/902/start", None, expect=(200,))
    post("vm 901", "/vms", {"id": 901, "name": "fz-vm", "kernel": "local:fz-kernel"})
    post("vm snapshot 901@fz-snap", "/vms/901/snapshots", {"name": "fz-snap"})
    post("store backup (task)", "/nodes/%s/store-backup?wait=10" % node_name(api), {})


def node_name(api):
    s, js, _ = api.call("GET", "/nodes")
    try:
        return js["items"][0]["node"]
    except (TypeError, KeyError, IndexError):
        return "localhost"


def items(api, path, key):
    s, js, _ = api.call("GET", path)
    if s != 200 or not isinstance(js, dict):
        return []
    out = []
    for it in js.get("items", []):
        v = it.get(key) if isinstance(it, dict) else None
        if v is not None:
            out.append(str(v))
    return out


def known_values(api, doc):
    """{path template: {parameter: [identifiers of existing objects]}}."""
    pools = items(api, "/storage/pools", "name")
    volumes = {}
    vsnaps = {}
    for p in pools:
        vols = items(api, "/storage/pools/%s/volumes" % p, "name")
        volumes[p] = vols
        for v in vols:
            vsnaps.setdefault("%s/%s" % (p, v), items(
                api, "/storage/pools/%s/volumes/%s/snapshots" % (p, v), "name"))
    cts = items(api, "/containers", "id")
    vms = items(api, "/vms", "id")
    by_kind = {
        "/access/acl/{id}": items(api, "/access/acl", "id"),
        "/access/tokens/{id}": items(api, "/access/tokens", "id"),
        "/tasks/{id}": items(api, "/tasks", "id")[:5],
        "/containers/{id}": cts,
        "/vms/{id}": vms,
    }
    flat = {
        "groupid": items(api, "/access/groups", "groupid"),
        "userid": items(api, "/access/users", "userid"),
        "roleid": items(api, "/access/roles", "roleid"),
        "node": [node_name(api)],
        "pool": pools,
        "volume": sorted({v for vs in volumes.values() for v in vs}),
        "snapshot": ["fz-snap"],
    }
    nets = {
        "/network/bonds/": items(api, "/network/bonds", "name"),
        "/network/bridges/": items(api, "/network/bridges", "name"),
        "/network/vlans/": items(api, "/network/vlans", "name"),
    }
    known = {}
    for path in doc["paths"]:
        rel = path[len("/api/v1"):]
        params = {}
        for seg in rel.split("/"):
            if not (seg.startswith("{") and seg.endswith("}")):
                continue
            name = seg[1:-1]
            vals = []
            if name == "id":
                for prefix, v in by_kind.items():
                    if rel.startswith(prefix):
                        vals = v
            elif name == "name":
                for prefix, v in nets.items():
                    if rel.startswith(prefix):
                        vals = v
            else:
                vals = flat.get(name, [])
            if vals:
                params[name] = vals
        if params:
            known[path] = params
    return known


def teardown(api, log):
    """Stops every guest the run left running: the daemon's exit does not stop them."""
    for kind in ("containers", "vms"):
        for gid in items(api, "/" + kind, "id"):
            s, js, text = api.call("POST", "/%s/%s/stop" % (kind, gid))
            if s not in (200, 404, 409):
                log("teardown: stopping %s %s answered %s: %s" % (kind, gid, s, text[:300]))


def run_schemathesis(args, env, log):
    st = os.path.join(os.path.dirname(sys.executable), "st")
    if not os.path.exists(st):
        st = shutil.which("st") or "st"
    cmd = [
        st, "run", args.base.rstrip("/") + "/api/v1/openapi.json",
        "--url", args.base.rstrip("/"),
        "-H", "Authorization: Bearer " + args.token,
        "--checks", ",".join(CHECKS),
        "--seed", str(args.seed),
        "--max-examples", str(args.max_examples),
        "--phases", args.phases,
        "--workers", str(args.workers),
        "--generation-database", "none",
        "--request-timeout", "45",
        "--continue-on-failure",
        "--no-color",
        "--output-truncate", "true",
        "--suppress-health-check", "all",
        "--warnings", "off",
    ]
    for e in EXCLUDED:
        cmd += ["--exclude-path-regex", e]
    shown = [c if not c.startswith("Authorization:") else "Authorization: Bearer ***" for c in cmd]
    log("$ " + " ".join(shown))
    t0 = time.time()
    out_path = os.path.join(args.workdir, "schemathesis.out")
    with open(out_path, "w") as out:
        p = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=args.workdir)
    log("schemathesis exited %d after %.0f s (full output: %s)" % (p.returncode, time.time() - t0, out_path))
    return p.returncode, out_path


def _resp_kind(r):
    try:
        body = json.loads(r.get("response_body") or "")
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("title"), str):
        return body["title"]
    return (r.get("response_body") or "")[:80]


def findings(path):
    """Distinct violations: one per operation, status and kind of answer (its problem title);
    schema violations also per message. Each keeps the smallest request that showed it and
    every check that failed on it."""
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    best = {}
    for r in rows:
        first = ((r.get("message") or "").splitlines() or [""])[0]
        schema = r["check"] in ("ferrite_response_schema", "ferrite_content_type")
        key = (r["operation"], r["status"], _resp_kind(r), first if schema else "")
        size = len(r["url"]) + len(r.get("request_body") or "")
        cur = best.get(key)
        if cur is None or size < cur[0]:
            checks = cur[1]["checks"] if cur else {}
            r = dict(r, checks=checks)
            best[key] = (size, r)
        best[key][1]["checks"].setdefault(r["check"], r.get("message") or "")
    return [r for _, r in sorted(best.values(), key=lambda x: (x[1]["operation"], x[1]["status"]))]


def report(rows, log):
    log("")
    log("%d distinct contract violation(s):" % len(rows))
    for i, r in enumerate(rows, 1):
        log("")
        log("[%d] %s  --  failed: %s" % (i, r["operation"], ", ".join(sorted(r["checks"]))))
        log("    request:  %s %s" % (r["method"], r["url"]))
        hs = {k: v for k, v in r["request_headers"].items() if k.lower() != "content-type" or r["request_body"]}
        for k, v in hs.items():
            log("              %s: %s" % (k, v))
        if r.get("request_body") is not None:
            log("              body: %s" % r["request_body"])
        log("    response: %s %s" % (r["status"], r.get("response_content_type") or ""))
        log("              %s" % (r.get("response_body") or "").replace("\n", "\n              "))
        for name, msg in sorted(r["checks"].items()):
            msg = (msg or "").strip()
            if msg:
                log("    %s: %s" % (name, msg.replace("\n", "\n        ")[:2000]))
        curl = "curl -sS -X %s '%s' -H \"Authorization: Bearer $TICKET\"" % (r["method"], r["url"])
        for k, v in hs.items():
            curl += " -H '%s: %s'" % (k, v)
        if r.get("request_body") is not None:
            curl += " --data-binary '%s'" % r["request_body"].replace("'", "'\\''")
        log("    repro:    " + curl)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="daemon endpoint, e.g. http://127.0.0.1:8006")
    ap.add_argument("--token", required=True, help="a root ticket or API token")
    ap.add_argument("--workdir", required=True, help="scratch directory (sandbox, outputs)")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("FERRITE_FUZZ_SEED", "20261206")))
    ap.add_argument("--max-examples", type=int,
                    default=int(os.environ.get("FERRITE_FUZZ_EXAMPLES", "25")))
    ap.add_argument("--phases", default=os.environ.get("FERRITE_FUZZ_PHASES", "examples,coverage,fuzzing,stateful"))
    ap.add_argument("--workers", default=os.environ.get("FERRITE_FUZZ_WORKERS", "2"))
    ap.add_argument("--template", help="a root filesystem tarball (busybox) for a container "
                    "that runs during the fuzz")
    ap.add_argument("--selftest", action="store_true",
                    help="add a deliberate failure on GET /version to prove the checks report")
    args = ap.parse_args()

    os.makedirs(args.workdir, exist_ok=True)
    sandbox = os.path.join(args.workdir, "sandbox")
    os.makedirs(sandbox, exist_ok=True)

    def log(s):
        print(s, flush=True)

    api = Api(args.base, args.token)
    s, doc, text = api.call("GET", "/openapi.json")
    if s != 200 or not isinstance(doc, dict):
        log("cannot read the OpenAPI document: %s %s" % (s, text[:500]))
        return 2
    log("setting up fixtures:")
    setup_fixtures(api, sandbox, log, args.template)
    known = known_values(api, doc)
    cfg_path = os.path.join(args.workdir, "fuzz-config.json")
    with open(cfg_path, "w") as f:
        json.dump({"sandbox": sandbox, "known": known, "root_user": "root@local",
                   "keep_running": [902] if args.template else []}, f, indent=1)
    find_path = os.path.join(args.workdir, "findings.jsonl")
    if os.path.exists(find_path):
        os.remove(find_path)

    env = dict(os.environ)
    env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
    env["SCHEMATHESIS_HOOKS"] = "hooks"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ in the source tree
    env["FERRITE_FUZZ_CONFIG"] = cfg_path
    env["FERRITE_FUZZ_FINDINGS"] = find_path
    if args.selftest:
        env["FERRITE_FUZZ_SELFTEST"] = "1"
    try:
        code, out_path = run_schemathesis(args, env, log)
    finally:
        teardown(api, log)
    with open(out_path) as f:
        out = f.read()
    summary = out[out.rfind("SUMMARY"):] if "SUMMARY" in out else out[-6000:]
    log(summary.strip()[-4000:])
    rows = findings(find_path)
    errors = ""
    if "= ERRORS =" in out:
        start = out.index("= ERRORS =")
        start = out.rfind("\n", 0, start) + 1
        end = out.find("\n====", start + 20)
        errors = out[start:end if end > 0 else None].strip()
    if rows:
        report(rows, log)
    if errors:
        log("")
        log("requests that got no answer (timeouts, resets) or broke schemathesis:")
        log(errors)
    if rows or errors:
        return 1
    if code != 0:
        log("schemathesis failed without a recorded contract violation:")
        log(out[-12000:])
        return 2
    log("no contract violation found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
