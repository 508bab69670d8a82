# -*- coding: utf-8 -*-
# Copyright: Ferrite contributors
# Apache License 2.0 (SPDX-License-Identifier: Apache-2.0 OR GPL-3.0-or-later); also offered under the
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt).

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: ferrite
short_description: Ferrite containers and VMs as inventory hosts
description:
  - Reads every container and VM with two paginated list calls (C(GET /containers) and C(GET /vms)), never one call
    per guest, and makes each a host named after the guest.
  - Groups hosts by kind (C(ferrite_container), C(ferrite_vm)), state (C(ferrite_running), ...), tag
    (C(ferrite_tag_<tag>)), bridge (C(ferrite_bridge_<bridge>)) and access VLAN (C(ferrite_vlan_<id>)).
  - Sets the host variables C(ferrite_id), C(ferrite_type), C(ferrite_state), C(ferrite_tags), C(ferrite_config), and
    C(ansible_host) from the first static address of the guest's NICs.
  - Inventory files must be named C(*.ferrite.yml) or C(*.ferrite.yaml).
author:
  - Ferrite contributors (@ferrite)
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: The name of this plugin.
    required: true
    type: str
    choices: [ferrite.virt.ferrite]
  endpoint:
    description: API endpoint, for example C(https://host:8006).
    type: str
    env:
      - name: FERRITE_ENDPOINT
  token:
    description: API token; giving it together with O(username) or O(password) is an error.
    type: str
    env:
      - name: FERRITE_TOKEN
  username:
    description: User for password login (NAME@REALM).
    type: str
    env:
      - name: FERRITE_USERNAME
  password:
    description: Password of O(username).
    type: str
    env:
      - name: FERRITE_PASSWORD
  tls_fingerprint:
    description: SHA-256 fingerprint of the daemon's certificate, checked before any credential is sent.
    type: str
    env:
      - name: FERRITE_TLS_FINGERPRINT
  ca_path:
    description: CA bundle to verify the daemon's certificate with.
    type: path
    env:
      - name: FERRITE_CA_PATH
  insecure:
    description: Skip certificate verification.
    type: bool
    default: false
    env:
      - name: FERRITE_INSECURE
  request_timeout:
    description: Seconds one socket operation may take, so a hung API cannot block the run.
    type: float
    default: 30
    env:
      - name: FERRITE_REQUEST_TIMEOUT
  timeout:
    description: Seconds the whole inventory read may take.
    type: float
    default: 60
  name:
    description: Only guests whose name matches this glob (filtered by the server).
    type: str
  tag:
    description: Only guests carrying this tag (filtered by the server).
    type: str
  types:
    description: Which kinds of guests to list.
    type: list
    elements: str
    choices: [container, vm]
    default: [container, vm]
'''

EXAMPLES = r'''
# inventory.ferrite.yml
plugin: ferrite.virt.ferrite
endpoint: https://ferrite.example:8006
tls_fingerprint: "AB:CD:..."
tag: web
keyed_groups:
  - key: ferrite_config.memory
    prefix: mem
'''

from ansible.errors import AnsibleError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.ferrite.virt.plugins.module_utils.ferrite import FerriteError, client_from_options

KIND_PATH = {'container': '/containers', 'vm': '/vms'}


def safe(s):
    return ''.join(c if c.isalnum() else '_' for c in str(s))


def first_address(guest):
    for slot in sorted((guest.get('net') or {}).keys()):
        ip = (guest['net'][slot] or {}).get('ip')
        if ip:
            return ip.split('/')[0]
    return None


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = 'ferrite.virt.ferrite'

    def verify_file(self, path):
        return super(InventoryModule, self).verify_file(path) and path.endswith(('.ferrite.yml', '.ferrite.yaml'))

    def fetch(self):
        opts = dict((k, self.get_option(k)) for k in (
            'endpoint', 'token', 'username', 'password', 'tls_fingerprint', 'ca_path', 'insecure',
            'request_timeout', 'timeout'))
        query = dict((k, self.get_option(k)) for k in ('name', 'tag') if self.get_option(k))
        client = None
        try:
            client = client_from_options(opts)
            return dict((kind, client.list_all(KIND_PATH[kind], query)) for kind in self.get_option('types'))
        except FerriteError as e:
            raise AnsibleError('ferrite inventory: %s' % e.msg)
        finally:
            if client is not None:
                client.close()

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        self._read_config_data(path)
        key = self.get_cache_key(path)
        use_cache = self.get_option('cache') and cache
        update_cache = self.get_option('cache') and not cache
        data = None
        if use_cache:
            try:
                data = self._cache[key]
            except KeyError:
                update_cache = True
        if data is None:
            data = self.fetch()
        if update_cache:
            self._cache[key] = data
        self.populate(data)

    def populate(self, data):
        strict = self.get_option('strict')
        for kind, guests in sorted(data.items()):
            for g in guests:
                host = g['name']
                self.inventory.add_host(host)
                state = (g.get('status') or {}).get('state', 'unknown')
                config = dict((k, v) for k, v in g.items() if k not in ('status', 'snapshots'))
                hostvars = dict(ferrite_id=g.get('id'), ferrite_type=kind, ferrite_state=state,
                                ferrite_tags=g.get('tags') or [], ferrite_config=config)
                addr = first_address(g)
                if addr:
                    hostvars['ansible_host'] = addr
                for k, v in hostvars.items():
                    self.inventory.set_variable(host, k, v)
                groups = ['ferrite_%s' % kind, 'ferrite_%s' % safe(state)]
                groups += ['ferrite_tag_%s' % safe(t) for t in g.get('tags') or []]
                for nic in (g.get('net') or {}).values():
                    nic = nic or {}
                    if nic.get('bridge'):
                        groups.append('ferrite_bridge_%s' % safe(nic['bridge']))
                    if nic.get('tag') is not None:
                        groups.append('ferrite_vlan_%s' % nic['tag'])
                for grp in groups:
                    self.inventory.add_group(grp)
                    self.inventory.add_child(grp, host)
                self._set_composite_vars(self.get_option('compose'), hostvars, host, strict=strict)
                self._add_host_to_composed_groups(self.get_option('groups'), hostvars, host, strict=strict)
                self._add_host_to_keyed_groups(self.get_option('keyed_groups'), hostvars, host, strict=strict)
