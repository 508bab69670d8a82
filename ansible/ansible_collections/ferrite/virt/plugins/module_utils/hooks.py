# -*- coding: utf-8 -*-
# Copyright: Ferrite contributors
# SPDX-License-Identifier: Apache-2.0
"""Per-resource hooks of the resource engine (runner.py): everything that is not a plain
create / update / delete: guest power state and templates, volume resize and clone, uploads,
user passwords, token secrets, snapshot restore, and confirming management-interface changes."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os

from ansible_collections.ferrite.virt.plugins.module_utils.ferrite import (
    FerriteError, client_from_options, quote_path)

GUEST_PATH = {'container': '/containers', 'vm': '/vms'}


def guest_path(r):
    return GUEST_PATH[r.kind if r.kind in GUEST_PATH else r.p['guest_type']]


def guest_id(r):
    """The id of the guest named by a snapshot task's `guest` option."""
    base = GUEST_PATH[r.p['guest_type']]
    for g in r.client.list_all(base, {'name': r.p['guest']}):
        if g.get('name') == r.p['guest']:
            return g['id']
    raise FerriteError('%s %s does not exist' % (r.p['guest_type'], r.p['guest']), status=404)


def prepare(r):
    """Uploads: the SHA-256 of the local file is what the pool must hold."""
    if r.kind == 'upload' and r.p.get('src') and not r.p.get('sha256') and r.p.get('state') != 'absent':
        r.p['sha256'] = file_sha256(r.p['src'])


def replace_upload(r, current):
    """The pool holds other bytes under this name: delete and upload again."""
    r.changed = True
    if r.check:
        return current
    r.client.request('DELETE', r.item(current))
    return upload(r, dict(content=r.p.get('content') or current.get('content'), sha256=r.p.get('sha256')))


def creates_without(r, missing):
    """Fields the create type requires that a hook supplies instead."""
    if r.res.get('guest') and r.p.get('clone_from'):
        return True
    if r.kind == 'volume' and r.p.get('clone_from') and missing == ['size']:
        return True
    return False


def create(r, body):
    """A create that is not a plain POST of the body; None means POST it."""
    p = r.p
    if r.kind == 'upload':
        return upload(r, body)
    if r.res.get('guest') and p.get('clone_from'):
        src = first_named(r.client.list_all(guest_path(r), {'name': p['clone_from']}), p['clone_from'])
        if src is None:
            raise FerriteError('clone_from: %s %s does not exist' % (r.kind, p['clone_from']), status=404)
        req = {'name': p['name']}
        for k in ('id', 'pool'):
            if body.get(k) is not None:
                req[k] = body[k]
        if p.get('clone_snapshot'):
            req['snapshot'] = p['clone_snapshot']
        obj = r.client.request('POST', '%s/%s/clone' % (guest_path(r), src['id']), req, idempotent=True).body
        rest = dict((k, v) for k, v in body.items() if k not in req and r.rules[k].get('update'))
        if rest:
            obj = r.client.request('PUT', r.item(obj), rest, headers={'If-Match': '"%s"' % obj['revision']}).body
        return obj
    if r.kind == 'volume' and p.get('clone_from'):
        req = {'name': p['name'], 'linked': bool(p.get('linked'))}
        path = '/storage/pools/%s/volumes/%s/clone' % (quote_path(p['pool']), quote_path(p['clone_from']))
        r.client.follow(r.client.request('POST', path, req, idempotent=True))
        return r.get({'name': p['name']})
    if r.kind == 'snapshot' or r.kind == 'volume_snapshot':
        r.client.request('POST', r.collection(), body, idempotent=True)
        return r.find()
    return None


def created(r, obj):
    """After a plain create: keep a one-time secret out of the object, confirm network changes."""
    if r.kind == 'api_token' and 'token' in obj:
        obj = dict(obj)
        r.result['secret'] = obj.pop('token')
    confirm_network(r, obj)
    return obj


def before_update(r, current, changes):
    """Volume size: grow with resize, never shrink."""
    if r.kind != 'volume' or 'size' not in changes:
        return changes
    want, have = changes['size'], current.get('size', 0)
    if want < have:
        raise FerriteError('volume %s is %d bytes; volumes never shrink (task wants %d)' % (r.p['name'], have, want))
    return changes


def updated(r, obj, changes, current):
    confirm_network(r, obj)
    r.result['restart_needed'] = sorted(k for k in changes if r.res.get('guest') and not r.rules[k].get('live'))
    return obj


def confirm_network(r, obj):
    """A change touching the management interface rolls back unless confirmed: confirm it
    over a fresh connection, proving the API is still reachable after the change."""
    if not r.res.get('network') or not isinstance(obj, dict):
        return
    if not (obj.get('status') or {}).get('confirm_deadline'):
        return
    fresh = client_from_options(r.module.params)
    try:
        fresh.request('POST', '/network/confirm', {'names': [obj['name']]})
    except FerriteError as e:
        raise FerriteError('the change to %s touched the management interface and could not be confirmed over a '
                           'new connection (%s); the daemon rolls it back at %s'
                           % (obj['name'], e.msg, obj['status']['confirm_deadline']))
    finally:
        fresh.close()


def after_write(r, obj, state, was_created):
    """Hooks after create or update: passwords, templates, power state, restores."""
    if r.kind == 'user':
        return user_password(r, obj, was_created)
    if r.kind in ('snapshot', 'volume_snapshot') and state == 'restored':
        return restore(r, obj)
    if r.kind == 'volume' and r.p.get('template') and not obj.get('template'):
        r.changed = True
        r.before['template'] = False
        r.after['template'] = True
        if not r.check:
            obj = r.client.request('POST', r.item(obj) + '/template').body
        return obj
    if r.res.get('guest'):
        return guest_power(r, obj, state, was_created)
    return obj


def user_password(r, obj, was_created):
    p = r.p
    if was_created or not p.get('password') or p.get('update_password') != 'always':
        return obj
    r.changed = True
    r.after['password'] = '(set)'
    if not r.check:
        r.client.request('PUT', r.item(obj) + '/password', {'password': p['password']})
    return obj


def restore(r, obj):
    r.changed = True
    r.after['restored'] = obj.get('name')
    if r.check:
        return obj
    verb = 'restore' if r.kind == 'snapshot' and r.p['guest_type'] == 'vm' else 'rollback'
    r.client.request('POST', '%s/%s/%s' % (r.collection(), quote_path(obj['name']), verb))
    return r.find()


def guest_power(r, obj, state, was_created):
    """Templates, power state and restarts of containers and VMs."""
    p = r.p
    path = r.item(obj) if not r.check or not was_created else None
    if p.get('is_template') is False and obj.get('is_template'):
        raise FerriteError('%s %s is a template; a template cannot become a guest again' % (r.kind, p['name']))
    now = ((obj.get('status') or {}).get('state')) or 'stopped'
    want = {'started': 'running', 'stopped': 'stopped', 'frozen': 'frozen', 'paused': 'paused',
            'restarted': 'running'}.get(state)
    actions = []
    if p.get('is_template') and not obj.get('is_template'):
        if now != 'stopped':
            actions.append('shutdown')
        actions.append('template')
        r.before['is_template'] = False
        r.after['is_template'] = True
        now = 'stopped'
    elif state == 'restarted':
        actions.append('reboot' if now == 'running' else 'start')
    elif want is not None and want != now:
        if now in ('frozen', 'paused') and want == 'running':
            actions.append('unfreeze' if now == 'frozen' else 'resume')
        elif want == 'stopped':
            actions.append('shutdown')
        else:
            if now == 'stopped':
                actions.append('start')
            if want in ('frozen', 'paused'):
                actions.append('freeze' if want == 'frozen' else 'pause')
    restart_needed = r.result.get('restart_needed') or []
    if restart_needed and now == 'running' and state in ('present', 'started') and not actions:
        if p.get('restart_on_change'):
            actions.append('reboot')
        else:
            r.module.warn('%s takes effect at the next start of %s %s (restart_on_change: true restarts it)'
                          % (', '.join(restart_needed), r.kind, p['name']))
    if want is not None or actions:
        r.before['power'] = now
        r.after['power'] = want or now
    if not actions:
        return obj
    r.changed = True
    r.result['actions'] = actions
    if r.check:
        return obj
    for a in actions:
        slow = a in ('shutdown', 'reboot')
        # The daemon waits up to 30 s for the guest to stop before killing it.
        obj = r.client.request('POST', '%s/%s' % (path, a), {} if slow else None,
                               server_time=45 if slow else None).body
    return obj


def first_named(items, name):
    for x in items:
        if x.get('name') == name:
            return x
    return None


def upload(r, body):
    """Streams the file to the pool's upload route with its SHA-256."""
    src = r.p.get('src')
    if not src:
        raise FerriteError('src is required to upload %s' % r.p['name'])
    digest = file_sha256(src)
    if body.get('sha256') and body['sha256'].lower() != digest:
        raise FerriteError('%s has SHA-256 %s, not the %s the task gives' % (src, digest, body['sha256']))
    query = {'name': r.p['name'], 'content': body.get('content'), 'sha256': digest}
    size = os.path.getsize(src)
    with open(src, 'rb') as f:
        path = '/storage/pools/%s/upload' % quote_path(r.p['pool'])
        return r.client.request('POST', path, query=query, upload=(f, size)).body


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()
