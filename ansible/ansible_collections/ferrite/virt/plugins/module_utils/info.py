# -*- coding: utf-8 -*-
# Copyright: Ferrite contributors
# SPDX-License-Identifier: Apache-2.0
"""The modules that manage no resource: task following, container exec and the *_info modules."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.ferrite.virt.plugins.module_utils.ferrite import FerriteError, quote_path
from ansible_collections.ferrite.virt.plugins.module_utils.runner import new_module, run_with_client


def _run(spec, fn, check_mode=True):
    module = new_module(spec, check_mode)
    run_with_client(module, lambda client: fn(module, client))


def run_task(spec):
    def go(module, client):
        p = module.params
        task = client.get('/tasks/%s' % quote_path(p['id']))
        changed = False
        if p['state'] == 'cancelled' and task.get('state') not in ('succeeded', 'failed', 'cancelled'):
            changed = True
            if module.check_mode:
                return dict(changed=True, task=task)
            task = client.wait_task(p['id'], cancel=True)
        elif not module.check_mode:
            task = client.wait_task(p['id'])
        if p['fail_on_error'] and p['state'] == 'finished' and task.get('state') in ('failed', 'cancelled'):
            problem = task.get('problem') or {}
            raise FerriteError('task %s %s: %s' % (task['id'], task['state'], problem.get('detail') or problem.get('title')),
                               problem=problem, task=task)
        return dict(changed=changed, task=task)
    _run(spec, go)


def run_container_exec(spec):
    def go(module, client):
        p = module.params
        found = [c for c in client.list_all('/containers', {'name': p['name']}) if c.get('name') == p['name']]
        if not found:
            raise FerriteError('container %s does not exist' % p['name'], status=404)
        body = {'command': p['command']}
        if p.get('command_timeout'):
            body['timeout'] = p['command_timeout']
        res = client.request('POST', '/containers/%s/exec' % found[0]['id'], body).body
        out = dict(changed=True, result=res, rc=res.get('exit_code'), stdout=res.get('stdout', ''),
                   stderr=res.get('stderr', ''))
        if p['fail_on_nonzero'] and res.get('exit_code') != 0:
            raise FerriteError('command exited with %s' % res.get('exit_code'), **out)
        return out
    _run(spec, go, check_mode=False)


def run_node_info(spec):
    def go(module, client):
        node = module.params.get('node')
        if not node:
            nodes = client.get('/nodes').get('items', [])
            node = nodes[0]['node'] if nodes else 'localhost'
        return dict(changed=False, node=client.get('/nodes/%s' % quote_path(node)))
    _run(spec, go)


def _filters(p):
    return dict((k, p[k]) for k in ('name', 'tag') if p.get(k))


def run_guest_info(spec):
    def go(module, client):
        p = module.params
        out = dict(changed=False, containers=[], vms=[])
        if p['type'] in ('all', 'container'):
            out['containers'] = client.list_all('/containers', _filters(p))
        if p['type'] in ('all', 'vm'):
            out['vms'] = client.list_all('/vms', _filters(p))
        return out
    _run(spec, go)


def run_storage_info(spec):
    def go(module, client):
        out = dict(changed=False, pools=client.list_all('/storage/pools'), volumes=[])
        if module.params.get('pool'):
            out['volumes'] = client.list_all('/storage/pools/%s/volumes' % quote_path(module.params['pool']))
        return out
    _run(spec, go)


def run_network_info(spec):
    def go(module, client):
        return dict(changed=False, bridges=client.list_all('/network/bridges'), vlans=client.list_all('/network/vlans'),
                    bonds=client.list_all('/network/bonds'),
                    interfaces=client.get('/network/interfaces').get('items', []))
    _run(spec, go)


def run_access_info(spec):
    def go(module, client):
        return dict(changed=False, users=client.list_all('/access/users'), groups=client.list_all('/access/groups'),
                    roles=client.list_all('/access/roles'), acl=client.list_all('/access/acl'),
                    tokens=client.list_all('/access/tokens'))
    _run(spec, go)


def run_task_info(spec):
    def go(module, client):
        p = module.params
        if p.get('id'):
            return dict(changed=False, tasks=[client.get('/tasks/%s' % quote_path(p['id']))])
        q = dict((k, p[k]) for k in ('state', 'type') if p.get(k))
        return dict(changed=False, tasks=client.list_all('/tasks', q))
    _run(spec, go)
