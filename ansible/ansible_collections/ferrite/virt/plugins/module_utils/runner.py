# -*- coding: utf-8 -*-
# Copyright: Ferrite contributors
# SPDX-License-Identifier: Apache-2.0
"""The engine every generated resource module calls: find the object by the task's key,
compare (module_utils/diff.py), stop there in check mode, otherwise write and read back.
Per-resource hooks (power state, resize, clone, upload, secrets) live in hooks.py."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.ferrite.virt.plugins.module_utils import diff as D
from ansible_collections.ferrite.virt.plugins.module_utils import hooks
from ansible_collections.ferrite.virt.plugins.module_utils._spec import RESOURCES, SCHEMA_DIGEST
from ansible_collections.ferrite.virt.plugins.module_utils.ferrite import (
    CONNECTION_ENV, FerriteError, client_from_options, quote_path)


def connection_spec():
    """The connection options (documented in doc_fragments/connection.py)."""
    types = dict(endpoint='str', token='str', username='str', password='str', tls_fingerprint='str',
                 ca_path='path', insecure='bool', request_timeout='float', timeout='float')
    spec = {}
    for name, ty in types.items():
        spec[name] = dict(type=ty, fallback=(env_fallback, [CONNECTION_ENV[name]]))
        if name in ('token', 'password'):
            spec[name]['no_log'] = True
    return spec


def new_module(spec, check_mode=True):
    full = dict(spec)
    full.update(connection_spec())
    return AnsibleModule(argument_spec=full, supports_check_mode=check_mode)


def run_with_client(module, fn):
    """Runs fn(client) and exits the module with its result, or fails with the API problem."""
    client = None
    try:
        client = client_from_options(module.params)
        result = fn(client)
    except FerriteError as e:
        module.fail_json(**e.result())
    finally:
        if client is not None:
            client.close()
    module.exit_json(**result)


class Resource(object):
    def __init__(self, module, client, kind):
        self.module = module
        self.client = client
        self.kind = kind
        self.res = RESOURCES[kind]
        self.rules = self.res['fields']
        # The task's values under the API's field names (a field named like a connection
        # option, such as a user's password, has a prefixed option name).
        self.p = dict(module.params)
        for field, option in self.res.get('renamed', {}).items():
            self.p[field] = module.params.get(option)
        self.check = module.check_mode
        self.changed = False
        self.before = {}
        self.after = {}
        self.result = {}

    # -- paths ----------------------------------------------------------------------------

    def parents(self):
        vals = {}
        for name in self.res.get('parents', []):
            if name == 'guest_id':
                vals[name] = hooks.guest_id(self)
            else:
                vals[name] = self.p[name]
        return vals

    def collection(self):
        return fill(self.res['collection'], self.parents())

    def item(self, obj):
        vals = self.parents()
        vals[self.res['id_field']] = obj[self.res['id_field']]
        return fill(self.res['item'], vals)

    # -- lookup ---------------------------------------------------------------------------

    def find(self):
        kind = self.kind
        if self.res.get('read_in_list'):
            page = self.client.get(self.collection())
            return first(page.get('items', []), name=self.p['name'])
        if self.res.get('guest'):
            items = self.client.list_all(self.collection(), {'name': self.p['name']})
            return first(items, name=self.p['name'])
        if kind == 'acl':
            keys = self.res['lookup']
            return first(self.client.list_all(self.collection()), **dict((k, self.p[k]) for k in keys))
        if kind == 'api_token':
            user = self.p.get('user') or self.client.whoami()['username']
            return self.get({'id': '%s!%s' % (user, self.p['name'])})
        if kind == 'vlan' and not self.p.get('name'):
            return self.get({'name': '%s.%s' % (self.p['parent'], self.p['vlan_id'])})
        return self.get({self.res['id_field']: self.p[self.res['id_field']]})

    def get(self, obj):
        r = self.client.get_or_none(self.item(obj))
        return None if r is None else r.body

    # -- the run --------------------------------------------------------------------------

    def run(self):
        if self.client.server_digest() not in (None, SCHEMA_DIGEST):
            self.module.warn('the daemon serves a different API schema than this collection was generated '
                             'from; update the collection to match the daemon')
        state = self.p.get('state') or 'present'
        hooks.prepare(self)
        try:
            current = self.find()
        except FerriteError as e:
            if e.status != 404 or state != 'absent':
                raise
            current = None  # the parent (guest, pool, volume) is gone: so is the object
        if state == 'absent':
            obj = self.delete(current)
        elif current is None:
            obj = self.create()
        else:
            obj = self.update(current)
        if obj is not None and state != 'absent':
            obj = hooks.after_write(self, obj, state, current is None)
        self.result.update(changed=self.changed, diff=dict(before=self.before, after=self.after))
        if obj is not None:
            self.result['object'] = obj
        return self.result

    def query(self):
        if self.res.get('network') and self.p.get('confirm_timeout') is not None:
            return {'confirm_timeout': self.p['confirm_timeout']}
        return None

    def create(self):
        body = D.create_body(self.p, self.rules)
        missing = [n for n, r in self.rules.items() if r.get('required') and n not in body]
        if missing and not hooks.creates_without(self, missing):
            what = '%s %s' % (self.kind, self.p.get('name') or '')
            raise FerriteError('%s is required to create %s' % (', '.join(sorted(missing)), what))
        self.changed = True
        self.before = {}
        self.after = D.create_after(body, self.rules)
        if self.check:
            return body
        obj = hooks.create(self, body)
        if obj is None:
            resp = self.client.request('POST', self.collection(), body, query=self.query(), idempotent=True)
            obj = self.client.follow(resp)
            obj = hooks.created(self, obj)
        return obj

    def update(self, current):
        changes, immutable, self.before, self.after = D.plan(self.p, current, self.rules)
        if self.kind == 'upload' and immutable:
            return hooks.replace_upload(self, current)
        changes = hooks.before_update(self, current, changes)
        if immutable:
            raise FerriteError(
                '%s cannot change in place (%s); delete the object (state: absent) and create it again'
                % (', '.join(immutable), '; '.join('has %r, task wants %r' % (current.get(n), self.p.get(n))
                                                   for n in immutable)))
        if not changes:
            return current
        self.changed = True
        self.result['changed_fields'] = sorted(changes)
        if self.check:
            predicted = dict(current)
            predicted.update(changes)
            return predicted
        headers = {'If-Match': '"%s"' % current['revision']} if 'revision' in current else None
        if self.res.get('update') == 'resize':
            obj = self.client.request('POST', self.item(current) + '/resize', {'size': changes['size']},
                                      headers=headers).body
        else:
            obj = self.client.request('PUT', self.item(current), changes, query=self.query(), headers=headers).body
        return hooks.updated(self, obj, changes, current)

    def delete(self, current):
        if current is None:
            return None
        self.changed = True
        names = [n for n in self.rules if self.p.get(n) is not None] + [self.res['id_field']]
        self.before = D.snapshot(current, names, self.rules)
        self.after = {}
        if not self.check:
            query = dict(force=True) if self.res.get('guest') else self.query()
            self.client.request('DELETE', self.item(current), query=query, expect_status=(200, 202, 204))
        return None


def fill(template, values):
    out = template
    for k, v in values.items():
        out = out.replace('{%s}' % k, quote_path(v))
    return out


def first(items, **match):
    for x in items:
        if all(x.get(k) == v for k, v in match.items()):
            return x
    return None


def run_resource(kind, spec):
    module = new_module(spec)
    run_with_client(module, lambda client: Resource(module, client, kind).run())
