# -*- coding: utf-8 -*-
# Copyright: Ferrite contributors
# SPDX-License-Identifier: Apache-2.0

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.ferrite.virt.plugins.module_utils import diff as D
from ansible_collections.ferrite.virt.plugins.module_utils._spec import RESOURCES

BRIDGE = RESOURCES['bridge']['fields']
CONTAINER = RESOURCES['container']['fields']


def test_only_user_set_fields_are_compared():
    current = {'name': 'br0', 'stp': True, 'mtu': 1500, 'tags': ['a']}
    changes, immutable, before, after = D.plan({'name': 'br0', 'mtu': 1500, 'stp': None}, current, BRIDGE)
    assert changes == {}
    assert immutable == []
    assert before == after == {'name': 'br0', 'mtu': 1500}
    assert 'stp' not in before and 'tags' not in before


def test_sets_ignore_order():
    changes = D.plan({'tags': ['b', 'a']}, {'tags': ['a', 'b']}, BRIDGE)[0]
    assert changes == {}
    changes = D.plan({'tags': ['b', 'c']}, {'tags': ['a', 'b']}, BRIDGE)[0]
    assert changes == {'tags': ['b', 'c']}


def test_vlan_sets_are_canonical():
    assert D.equal(['10', '20-29'], [{'from': 20, 'to': 29}, 10], BRIDGE['vlans'])
    assert not D.equal(['10'], [11], BRIDGE['vlans'])
    assert D.to_api(['10', '20-29'], None, BRIDGE['vlans']) == [10, {'from': 20, 'to': 29}]


def test_maps_compare_per_key_and_keep_server_subfields():
    have = {'net0': {'bridge': 'br0', 'mac': '02:00:00:00:00:01'}}
    rule = CONTAINER['net']
    assert D.equal({'net0': {'bridge': 'br0'}}, have, rule)
    assert not D.equal({'net0': {'bridge': 'br0'}, 'net1': {'bridge': 'br0'}}, have, rule)
    assert not D.equal({}, have, rule)
    sent = D.to_api({'net0': {'bridge': 'br1'}}, have, rule)
    assert sent == {'net0': {'bridge': 'br1', 'mac': '02:00:00:00:00:01'}}


def test_create_only_fields_are_immutable():
    changes, immutable, before, after = D.plan({'name': 'c1', 'privileged': True}, {'name': 'c1', 'privileged': False},
                                               CONTAINER)
    assert changes == {}
    assert immutable == ['privileged']


def test_bool_is_not_int():
    assert not D.subset_equal(True, 1)
    assert D.subset_equal(2, 2.0)


def test_nullable_empty_clears():
    rules = RESOURCES['user']['fields']
    changes = D.plan({'comment': ''}, {'comment': 'x'}, rules)[0]
    assert changes == {'comment': None}
    assert D.plan({'comment': ''}, {}, rules)[0] == {}


def test_write_only_fields_are_not_compared():
    rules = RESOURCES['user']['fields']
    changes, immutable, before, after = D.plan({'password': 'secret'}, {'userid': 'a@local'}, rules)
    assert changes == {} and before == {} and after == {}


def test_create_body_and_after_hide_secrets():
    rules = RESOURCES['user']['fields']
    body = D.create_body({'userid': 'a@local', 'password': 'pw', 'state': 'present'}, rules)
    assert body == {'userid': 'a@local', 'password': 'pw'}
    assert D.create_after(body, rules) == {'userid': 'a@local'}
