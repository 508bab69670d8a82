# -*- coding: utf-8 -*-
# Copyright: Ferrite contributors
# SPDX-License-Identifier: Apache-2.0
"""The client against a scripted HTTP server on loopback: problem documents, retries, task
waits and credential rules. (The playbooks in tests/ansible.rs drive a real ferrited.)"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import threading

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.ferrite.virt.plugins.module_utils._spec import SCHEMA_DIGEST
from ansible_collections.ferrite.virt.plugins.module_utils.ferrite import Client, FerriteError
from ansible_collections.ferrite.virt.plugins.module_utils.runner import Resource


class Server(object):
    """Answers each request with the next scripted (status, headers, body); records requests."""

    def __init__(self, script):
        self.script = list(script)
        self.seen = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *a):
                pass

            def handle_one(self):
                n = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(n) if n else b''
                outer.seen.append((self.command, self.path, dict(self.headers), body))
                status, headers, payload = outer.script.pop(0)
                data = json.dumps(payload).encode() if payload is not None else b''
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                ctype = 'application/problem+json' if status >= 400 else 'application/json'
                self.send_header('Content-Type', ctype)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = handle_one

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever)
        self.thread.daemon = True
        self.thread.start()
        self.endpoint = 'http://127.0.0.1:%d' % self.httpd.server_address[1]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    made = []

    def make(script):
        s = Server(script)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def test_token_and_password_together_is_an_error():
    with pytest.raises(FerriteError) as e:
        Client('http://127.0.0.1:1', token='t', username='u@local', password='p')
    assert 'both' in e.value.msg


def test_fingerprint_needs_https():
    with pytest.raises(FerriteError) as e:
        Client('http://127.0.0.1:1', token='t', tls_fingerprint='AA:BB')
    assert 'https' in e.value.msg


def test_problem_document_becomes_the_message(server):
    problem = {'type': 'about:blank', 'title': 'Invalid request', 'status': 422, 'detail': 'mtu out of range',
               'request_id': 'req-1', 'invalid_params': [{'name': '/mtu', 'reason': 'too big'}]}
    s = server([(422, {}, problem)])
    c = Client(s.endpoint, token='tok')
    with pytest.raises(FerriteError) as e:
        c.request('PUT', '/network/bridges/br0', {'mtu': 1})
    r = e.value.result()
    assert r['msg'] == 'Invalid request: mtu out of range'
    assert r['request_id'] == 'req-1'
    assert r['invalid_params'] == problem['invalid_params']
    assert s.seen[0][2]['Authorization'] == 'Bearer tok'


def test_503_is_retried_after_retry_after_and_keeps_the_idempotency_key(server):
    busy = {'type': 'about:blank', 'title': 'Busy', 'status': 503}
    s = server([(503, {'Retry-After': '0.2'}, busy), (201, {}, {'name': 'g'})])
    c = Client(s.endpoint, token='tok')
    r = c.request('POST', '/access/groups', {'groupid': 'g'}, idempotent=True)
    assert r.status == 201
    keys = [seen[2]['Idempotency-Key'] for seen in s.seen]
    assert len(keys) == 2 and keys[0] == keys[1]


def test_429_is_not_retried(server):
    s = server([(429, {'Retry-After': '1'}, {'title': 'Too many requests', 'status': 429})])
    c = Client(s.endpoint, token='tok')
    with pytest.raises(FerriteError) as e:
        c.request('GET', '/containers')
    assert e.value.status == 429
    assert len(s.seen) == 1


def test_password_login_happens_once(server):
    s = server([(200, {}, {'ticket': 'tick', 'username': 'u@local', 'expires_at': 'x'}),
                (200, {}, {'items': [], 'next_page_token': None}),
                (200, {}, {'items': [], 'next_page_token': None})])
    c = Client(s.endpoint, username='u@local', password='pw')
    c.list_all('/vms')
    c.list_all('/vms')
    assert [seen[1] for seen in s.seen] == ['/api/v1/access/login', '/api/v1/vms?limit=1000', '/api/v1/vms?limit=1000']
    assert s.seen[1][2]['Authorization'] == 'Bearer tick'


def test_pages_are_followed(server):
    s = server([(200, {}, {'items': [{'name': 'a'}], 'next_page_token': 'p2'}),
                (200, {}, {'items': [{'name': 'b'}], 'next_page_token': None})])
    c = Client(s.endpoint, token='tok')
    assert [x['name'] for x in c.list_all('/containers', {'tag': 'web'})] == ['a', 'b']
    assert 'page_token=p2' in s.seen[1][1] and 'tag=web' in s.seen[1][1]


def test_task_is_followed_with_server_side_waits(server):
    s = server([(200, {}, {'id': 't1', 'state': 'running'}), (200, {}, {'id': 't1', 'state': 'succeeded'})])
    c = Client(s.endpoint, token='tok')
    assert c.wait_task('t1')['state'] == 'succeeded'
    assert all('wait=' in seen[1] for seen in s.seen)


def test_task_timeout_says_the_task_goes_on(server):
    s = server([(200, {}, {'id': 't1', 'state': 'running'}),
                (200, {}, [{'seq': 1, 'time': 't', 'message': 'copying'}])])
    c = Client(s.endpoint, token='tok', timeout=1)
    with pytest.raises(FerriteError) as e:
        c.wait_task('t1')
    assert 'goes on' in e.value.msg
    assert e.value.extra['task_id'] == 't1'
    assert e.value.extra['log'] == ['copying']


class FakeModule(object):
    """What Resource reads from AnsibleModule: params, check_mode and warn()."""

    def __init__(self, params, check_mode=False):
        self.params = params
        self.check_mode = check_mode
        self.warnings = []

    def warn(self, msg):
        self.warnings.append(msg)


GROUP = {'groupid': 'ops', 'comment': 'old', 'tags': [], 'revision': 3}


def group_params(**kw):
    p = dict(groupid='ops', comment=None, tags=None, state='present')
    p.update(kw)
    return p


def test_update_sends_only_changed_fields_with_if_match_and_reports_412(server):
    stale = {'type': 'about:blank', 'title': 'Precondition failed', 'status': 412,
             'detail': 'revision 3 is not current (now 4)', 'request_id': 'r9'}
    s = server([(200, {}, {'version': '0', 'api': 'v1', 'schema_digest': SCHEMA_DIGEST}),
                (200, {}, GROUP), (412, {}, stale)])
    r = Resource(FakeModule(group_params(comment='new', tags=[])), Client(s.endpoint, token='t'), 'group')
    with pytest.raises(FerriteError) as e:
        r.run()
    method, path, headers, body = s.seen[-1]
    assert (method, path) == ('PUT', '/api/v1/access/groups/ops')
    assert headers['If-Match'] == '"3"'
    assert json.loads(body) == {'comment': 'new'}
    assert e.value.status == 412 and 'not current' in e.value.msg and e.value.request_id == 'r9'


def test_check_mode_predicts_and_writes_nothing(server):
    s = server([(200, {}, {'version': '0', 'api': 'v1', 'schema_digest': 'other'}), (200, {}, GROUP)])
    module = FakeModule(group_params(comment='new'), check_mode=True)
    result = Resource(module, Client(s.endpoint, token='t'), 'group').run()
    assert result['changed'] is True
    assert result['diff'] == {'before': {'groupid': 'ops', 'comment': 'old'}, 'after': {'groupid': 'ops', 'comment': 'new'}}
    assert result['object']['comment'] == 'new'
    assert [seen[0] for seen in s.seen] == ['GET', 'GET']
    assert module.warnings and 'different API schema' in module.warnings[0]


def test_absent_object_absent_again_is_no_change(server):
    missing = {'type': 'about:blank', 'title': 'Not found', 'status': 404}
    s = server([(200, {}, {'version': '0', 'api': 'v1'}), (404, {}, missing)])
    result = Resource(FakeModule(group_params(state='absent')), Client(s.endpoint, token='t'), 'group').run()
    assert result['changed'] is False
    assert [seen[0] for seen in s.seen] == ['GET', 'GET']
