# -*- coding: utf-8 -*-
# Copyright: Ferrite contributors
# SPDX-License-Identifier: Apache-2.0
"""The Ferrite API client shared by the modules and the inventory plugin.

Python standard library only (http.client, ssl). One client serves one module run: one
Idempotency-Key for its creates (reused on retries), one login when a password is used.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import ssl
import time
import uuid

import http.client as httplib
from urllib.parse import quote, urlencode, urlsplit

API_PREFIX = '/api/v1'
TERMINAL_TASK_STATES = ('succeeded', 'failed', 'cancelled')


class FerriteError(Exception):
    """A failed call: `msg` is what the task shows; the rest goes into the result."""

    def __init__(self, msg, status=None, problem=None, request_id=None, **extra):
        super(FerriteError, self).__init__(msg)
        self.msg = msg
        self.status = status
        self.problem = problem or {}
        self.request_id = request_id or self.problem.get('request_id')
        self.extra = extra

    def result(self):
        r = dict(msg=self.msg)
        if self.status is not None:
            r['status'] = self.status
        if self.problem:
            r['problem'] = self.problem
            r['invalid_params'] = self.problem.get('invalid_params', [])
        if self.request_id:
            r['request_id'] = self.request_id
        r.update(self.extra)
        return r


def normalize_fingerprint(fp):
    return fp.replace(':', '').replace(' ', '').lower()


def quote_path(value):
    return quote(str(value), safe='@!')


class Response(object):
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


class Client(object):
    """Talks to one ferrited. Options as the module and inventory options of the same names."""

    def __init__(self, endpoint, token=None, username=None, password=None, tls_fingerprint=None,
                 ca_path=None, insecure=False, request_timeout=30, timeout=600):
        if not endpoint:
            raise FerriteError('endpoint is not set (option endpoint or FERRITE_ENDPOINT)')
        if token and (username or password):
            raise FerriteError('both token and username/password are set: give one way to authenticate, not both')
        if bool(username) != bool(password):
            raise FerriteError('username and password go together')
        if not token and not username:
            raise FerriteError('no credentials: set token (FERRITE_TOKEN) or username and password '
                               '(FERRITE_USERNAME, FERRITE_PASSWORD)')
        url = urlsplit(endpoint if '://' in endpoint else 'https://' + endpoint)
        if url.scheme not in ('http', 'https'):
            raise FerriteError('endpoint must be http:// or https://, not %s' % endpoint)
        if tls_fingerprint and url.scheme != 'https':
            raise FerriteError('tls_fingerprint needs an https:// endpoint; %s is plain HTTP' % endpoint)
        self.scheme = url.scheme
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == 'https' else 80)
        path = url.path.rstrip('/')
        self.base = path if path.endswith(API_PREFIX) else path + API_PREFIX
        self.username = username
        self.password = password
        self.auth = token
        self.fingerprint = normalize_fingerprint(tls_fingerprint) if tls_fingerprint else None
        self.ca_path = ca_path
        self.insecure = insecure
        self.request_timeout = request_timeout
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.idempotency_key = str(uuid.uuid4())
        self.conn = None
        self.requests_sent = 0

    # -- connection ---------------------------------------------------------------------

    def remaining(self):
        return self.deadline - time.monotonic()

    def _connect(self):
        t = max(1.0, min(self.request_timeout, self.remaining()))
        if self.scheme == 'http':
            conn = httplib.HTTPConnection(self.host, self.port, timeout=t)
            conn.connect()
            return conn
        if self.fingerprint or self.insecure:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context(cafile=self.ca_path)
        conn = httplib.HTTPSConnection(self.host, self.port, timeout=t, context=ctx)
        conn.connect()
        if self.fingerprint:
            der = conn.sock.getpeercert(binary_form=True)
            got = hashlib.sha256(der).hexdigest()
            if got != self.fingerprint:
                conn.close()
                raise FerriteError(
                    'TLS fingerprint mismatch: %s:%s presented %s, expected %s; nothing was sent'
                    % (self.host, self.port, got, self.fingerprint))
        return conn

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # -- requests -----------------------------------------------------------------------

    def login(self):
        r = self.request('POST', '/access/login', {'username': self.username, 'password': self.password},
                         auth=False)
        self.auth = r.body['ticket']

    def request(self, method, path, body=None, query=None, headers=None, auth=True, idempotent=False,
                upload=None, expect_status=None, server_time=None):
        """One API call. `upload` is (file object, size) streamed as the body; `server_time` is
        how long the daemon may legitimately take to answer (a clean shutdown waits for the
        guest), added to `request_timeout` for this call's reads.

        503 answers are retried after Retry-After, and connection resets are retried when the
        call is safe to repeat (reads, creates carrying the Idempotency-Key, or a reused
        keep-alive connection the server had closed), all within `timeout`. 429 is not retried.
        """
        if auth and self.auth is None:
            self.login()
        url = self.base + path
        if query:
            url += '?' + urlencode([(k, v if not isinstance(v, bool) else str(v).lower())
                                    for k, v in query.items() if v is not None])
        hdrs = {'Accept': 'application/json'}
        data = None
        if upload is None and body is not None:
            data = json.dumps(body).encode('utf-8')
            hdrs['Content-Type'] = 'application/json'
        if upload is not None:
            hdrs['Content-Type'] = 'application/octet-stream'
            hdrs['Content-Length'] = str(upload[1])
        if idempotent:
            hdrs['Idempotency-Key'] = self.idempotency_key
        hdrs.update(headers or {})
        if auth:
            hdrs['Authorization'] = 'Bearer ' + self.auth
        safe = method == 'GET' or idempotent
        attempt = 0
        while True:
            attempt += 1
            reused = self.conn is not None
            try:
                if self.conn is None:
                    self.conn = self._connect()
                self.conn.sock.settimeout(self.request_timeout + (server_time or 0))
                if upload is not None:
                    upload[0].seek(0)
                    self.conn.request(method, url, body=upload[0], headers=hdrs)
                else:
                    self.conn.request(method, url, body=data, headers=hdrs)
                self.requests_sent += 1
                resp = self.conn.getresponse()
                raw = resp.read()
                rheaders = resp.getheaders()
                status = resp.status
            except FerriteError:
                self.close()
                raise
            except (ConnectionResetError, BrokenPipeError) as e:
                # A reset (RemoteDisconnected is one): retried when repeating is safe.
                self.close()
                if (safe or (reused and attempt == 1)) and self.remaining() > 1 and upload is None:
                    time.sleep(min(1.0, 0.2 * attempt))
                    continue
                raise FerriteError('%s %s: %s' % (method, path, e))
            except (httplib.HTTPException, OSError) as e:
                # Refused connections, timeouts and TLS failures are reported at once.
                self.close()
                raise FerriteError('%s %s: %s' % (method, path, e))
            ctype = dict((k.lower(), v) for k, v in rheaders).get('content-type', '')
            parsed = None
            if raw and 'json' in ctype:
                try:
                    parsed = json.loads(raw.decode('utf-8'))
                except ValueError:
                    parsed = None
            elif raw:
                parsed = raw.decode('utf-8', 'replace')
            if status == 503:
                wait = _retry_after(rheaders)
                if self.remaining() > wait:
                    self.close()
                    time.sleep(wait)
                    continue
            if status >= 400:
                raise _problem_error(method, path, status, parsed, rheaders)
            if expect_status is not None and status not in expect_status:
                raise FerriteError('%s %s: unexpected status %s' % (method, path, status), status=status)
            return Response(status, rheaders, parsed)

    def get(self, path, query=None):
        return self.request('GET', path, query=query).body

    def get_or_none(self, path):
        try:
            return self.request('GET', path)
        except FerriteError as e:
            if e.status == 404:
                return None
            raise

    def list_all(self, path, query=None):
        """Every item of a list endpoint, page by page (limit 1000)."""
        q = dict(query or {})
        q['limit'] = 1000
        items = []
        while True:
            page = self.get(path, q)
            items.extend(page.get('items', []))
            token = page.get('next_page_token')
            if not token:
                return items
            q['page_token'] = token

    def wait_task(self, task_id, cancel=False):
        """Follows a task until it ends; on timeout fails with its id and last log lines."""
        if cancel:
            self.request('DELETE', '/tasks/%s' % quote_path(task_id))
        while True:
            wait = int(max(0, min(60, self.remaining() - 2)))
            task = self.request('GET', '/tasks/%s' % quote_path(task_id), query={'wait': wait}, server_time=wait).body
            if task.get('state') in TERMINAL_TASK_STATES:
                return task
            if self.remaining() <= 2:
                lines = self.task_log_tail(task_id)
                raise FerriteError(
                    'task %s is still %s after the %s s timeout; it goes on on the server '
                    '(follow it with ferrite.virt.task)' % (task_id, task.get('state'), self.timeout),
                    task=task, task_id=task_id, log=lines)

    def task_log_tail(self, task_id, n=10):
        try:
            r = self.request('GET', '/tasks/%s/log' % quote_path(task_id), query={'follow': False})
        except FerriteError:
            return []
        body = r.body
        if isinstance(body, list):
            lines = [x.get('message', '') for x in body]
        elif isinstance(body, str):
            lines = []
            for ln in body.splitlines():
                try:
                    lines.append(json.loads(ln).get('message', ln))
                except ValueError:
                    lines.append(ln)
        else:
            lines = []
        return lines[-n:]

    def follow(self, resp):
        """A 202 answer carries a task: wait for it and fail if it did not succeed."""
        if resp.status != 202 or not isinstance(resp.body, dict):
            return resp.body
        task = self.wait_task(resp.body['id'])
        if task.get('state') != 'succeeded':
            p = task.get('problem') or {}
            raise FerriteError('task %s %s: %s' % (task['id'], task.get('state'), p.get('detail') or p.get('title')),
                               problem=p, task=task)
        return task

    def whoami(self):
        return self.get('/access/me')

    def server_digest(self):
        try:
            return self.request('GET', '/version', auth=False).body.get('schema_digest')
        except FerriteError:
            return None


def _retry_after(headers):
    for k, v in headers:
        if k.lower() == 'retry-after':
            try:
                return max(0.1, min(30.0, float(v)))
            except ValueError:
                return 1.0
    return 1.0


def _problem_error(method, path, status, body, headers):
    if isinstance(body, dict) and 'title' in body:
        msg = body.get('title', '')
        if body.get('detail'):
            msg = '%s: %s' % (msg, body['detail'])
        rid = body.get('request_id')
        return FerriteError(msg, status=status, problem=body, request_id=rid)
    rid = None
    for k, v in headers:
        if k.lower() == 'x-request-id':
            rid = v
    return FerriteError('%s %s: HTTP %s %s' % (method, path, status, body or ''), status=status, request_id=rid)


CONNECTION_ENV = dict(
    endpoint='FERRITE_ENDPOINT', token='FERRITE_TOKEN', username='FERRITE_USERNAME',
    password='FERRITE_PASSWORD', tls_fingerprint='FERRITE_TLS_FINGERPRINT', ca_path='FERRITE_CA_PATH',
    insecure='FERRITE_INSECURE', request_timeout='FERRITE_REQUEST_TIMEOUT', timeout='FERRITE_TIMEOUT',
)


def client_from_options(opts):
    """A client from module params or inventory options (already resolved with env fallbacks)."""
    return Client(
        endpoint=opts.get('endpoint'), token=opts.get('token'), username=opts.get('username'),
        password=opts.get('password'), tls_fingerprint=opts.get('tls_fingerprint'),
        ca_path=opts.get('ca_path'), insecure=bool(opts.get('insecure')),
        request_timeout=float(opts.get('request_timeout') or 30), timeout=float(opts.get('timeout') or 600))
