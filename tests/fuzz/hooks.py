"""Schemathesis hooks for the API fuzz (loaded through SCHEMATHESIS_HOOKS by run.py).

Two jobs only:
- Mix the identifiers of objects run.py created before the run into the generated path
  parameters, so operations on existing objects reach their real handlers instead of
  answering 404 to random names. The generated values are still used too.
- Keep the run from destroying what the rest of the run needs, or from touching the host
  outside the test's sandbox. Every such constraint is listed in CONSTRAINTS below with its
  reason; nothing here hides a status or a body from the checks.
"""

import json
import os
import re

import schemathesis
from hypothesis import strategies as st

_CFG = json.loads(open(os.environ["FERRITE_FUZZ_CONFIG"]).read())
# {"/api/v1/path/{template}": {"param": ["known", ...]}}
KNOWN = _CFG.get("known", {})
SANDBOX = _CFG["sandbox"]
PROTECTED_USER = _CFG.get("root_user", "root@local")
KEEP_RUNNING = {str(i) for i in _CFG.get("keep_running", [])}

CONSTRAINTS = """
- DELETE /storage/pools/{pool} and PUT /storage/pools/{pool} never target `local`: the
  daemon's own pool (DATA_DIR/storage/local) holds what other operations use, and a
  changed `content` list there would turn the rest of the run into 422s.
- PUT/DELETE /access/users/{userid} and PUT .../password never target root@local: the run
  is authenticated as root; disabling or deleting it turns every later call into 401.
- The running container run.py starts (config "keep_running") is never turned into a
  template (POST /containers/{id}/template is one-way) nor deleted: either would leave
  nothing running for exec, console, freeze and shutdown to act on for the rest of the run.
  Stopping, rebooting and reconfiguring it are fuzzed like anything else.
- POST /storage/pools: a dir pool's `path` is rewritten to a directory under the test's
  sandbox (the daemon creates it when missing: random absolute paths would create
  directories anywhere on the host).
- POST /nodes/{node}/store-backup is left in: each backup is a copy of a store of a few
  hundred KiB in the test's temporary DATA_DIR/backups, and examples per operation are
  bounded, so the disk cannot fill.
- `wait` query parameters are capped at 2 s: the schema allows 3600 s, and one blocking
  call would eat the whole CI budget. (Values outside the schema still go through.)
- POST /containers/{id}/shutdown, .../reboot, /vms/{id}/shutdown, .../reboot and
  /containers/{id}/exec: a `timeout` in an object body is capped at 2 s, and set to 2 s when
  absent (the default is 30 s, the schema allows 3600 s): an init or command that ignores
  SIGTERM would otherwise hold each call for the full timeout, which is documented behaviour
  (wait, then kill), not a finding, and would blow the CI budget.
- POST /network/confirm is left in; the namespace is the test's own.
"""


def _op(ctx):
    op = ctx.operation
    if op is None:
        return None, None
    return op.method.upper(), op.path


def _full(path):
    return path if path.startswith("/api/v1") else "/api/v1" + path


@schemathesis.hook
def flatmap_path_parameters(ctx, path_parameters):
    method, path = _op(ctx)
    if path is None or not path_parameters:
        return st.just(path_parameters)
    known = KNOWN.get(_full(path), {})
    choices = []
    for name in path_parameters:
        vals = [v for v in known.get(name, []) if _allowed(method, _full(path), name, v)]
        if vals:
            choices.append((name, vals))
    if not choices:
        return st.just(path_parameters)

    def build(picks):
        out = dict(path_parameters)
        for (name, _), v in zip(choices, picks):
            if v is not None:
                out[name] = v
        return out

    # Each known parameter: its generated value or one of the known ones.
    return st.tuples(
        *[st.one_of(st.none(), st.sampled_from(vals)) for _, vals in choices]
    ).map(build)


def _allowed(method, path, name, value):
    if name == "pool" and value == "local" and path == "/api/v1/storage/pools/{pool}":
        return method == "GET"
    if name == "userid" and value == PROTECTED_USER and method in ("PUT", "DELETE"):
        return False
    if name == "id" and str(value) in KEEP_RUNNING:
        if path == "/api/v1/containers/{id}/template" or (
            method == "DELETE" and path == "/api/v1/containers/{id}"
        ):
            return False
    return True


@schemathesis.hook
def filter_path_parameters(ctx, path_parameters):
    method, path = _op(ctx)
    if path is None:
        return True
    full = _full(path)
    for name, value in (path_parameters or {}).items():
        if not _allowed(method, full, name, value):
            return False
    return True


@schemathesis.hook
def map_case(ctx, case):
    method, path = _op(ctx)
    full = _full(path or "")
    if case.query:
        for k in ("wait",):
            v = case.query.get(k)
            if isinstance(v, int) and not isinstance(v, bool) and v > 2:
                case.query[k] = 2
    if (
        method == "POST"
        and full.rsplit("/", 1)[-1] in ("shutdown", "reboot", "exec")
        and isinstance(case.body, dict)
    ):
        t = case.body.get("timeout")
        if t is None or (isinstance(t, int) and not isinstance(t, bool) and t > 2):
            case.body["timeout"] = 2
    if method == "POST" and full == "/api/v1/storage/pools" and isinstance(case.body, dict):
        p = case.body.get("path")
        if isinstance(p, str) and p.startswith("/"):
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", p.strip("/"))[:100] or "root"
            if safe in (".", ".."):
                safe = "dot"
            case.body["path"] = os.path.join(SANDBOX, "pools", safe)
    return case


# ---- Checks -------------------------------------------------------------------------------
# The contract, as four checks that wrap schemathesis's own and record every failure (the
# request as sent and the answer) to FERRITE_FUZZ_FINDINGS, one JSON object a line, for
# run.py to deduplicate and report. Schemathesis's not_a_server_error is replaced because a
# 507 (a pool that cannot hold the request) is allowed where the operation documents it.

from schemathesis.specs.openapi import checks as _oc  # noqa: E402

FINDINGS = os.environ.get("FERRITE_FUZZ_FINDINGS")
_SELFTEST = bool(os.environ.get("FERRITE_FUZZ_SELFTEST"))
_SECRET = re.compile(r"(?i)^(authorization|cookie)$")


def _text(b, limit=4000):
    if b is None:
        return None
    if isinstance(b, bytes):
        try:
            b = b.decode("utf-8")
        except UnicodeDecodeError:
            return "<%d bytes, not UTF-8: %r>" % (len(b), b[:200])
    return b if len(b) <= limit else b[:limit] + "...<%d more chars>" % (len(b) - limit)


def _record(check, case, response, exc):
    if not FINDINGS:
        return
    req = response.request
    headers = {
        k: v
        for k, v in (req.headers or {}).items()
        if not _SECRET.match(k) and k.lower() not in ("user-agent", "accept-encoding", "accept", "connection", "content-length", "x-schemathesis-testcaseid")
    }
    row = {
        "check": check,
        "operation": "%s %s" % (case.operation.method.upper(), case.operation.path),
        "method": req.method,
        "url": req.url,
        "request_headers": headers,
        "request_body": _text(req.body),
        "status": response.status_code,
        "response_content_type": response.headers.get("content-type", [None])[0]
        if isinstance(response.headers.get("content-type"), list)
        else response.headers.get("content-type"),
        "response_body": _text(response.content),
        "message": str(getattr(exc, "message", None) or exc),
        "title": str(getattr(exc, "title", "") or ""),
    }
    with open(FINDINGS, "a") as f:
        f.write(json.dumps(row) + "\n")


def _wrap(name, inner):
    def check(ctx, response, case):
        try:
            return inner(ctx, response, case)
        except AssertionError as e:
            _record(name, case, response, e)
            raise

    check.__name__ = name
    check.__qualname__ = name
    check.__doc__ = "Ferrite contract: " + name
    return schemathesis.check(check)


def _no_server_error(ctx, response, case):
    code = response.status_code
    if _SELFTEST and code == 200 and case.operation.path.endswith("/version"):
        raise AssertionError("self-test: a deliberate failure proving the checks are wired")
    if code >= 500 and code != 507:
        raise AssertionError("Server error %d (only 507 is allowed among 5xx)" % code)
    return None


ferrite_no_server_error = _wrap("ferrite_no_server_error", _no_server_error)
ferrite_status_documented = _wrap("ferrite_status_documented", _oc.status_code_conformance)
ferrite_response_schema = _wrap("ferrite_response_schema", _oc.response_schema_conformance)
ferrite_content_type = _wrap("ferrite_content_type", _oc.content_type_conformance)
