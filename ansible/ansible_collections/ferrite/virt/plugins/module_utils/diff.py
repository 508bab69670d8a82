# -*- coding: utf-8 -*-
# Copyright: Ferrite contributors
# SPDX-License-Identifier: Apache-2.0
"""The diff engine: compares only the fields a task sets with the object the API returns,
after normalising both to the schema (field rules come from the generated _spec.py).

- absent (None) means keep: the field is not managed by this task;
- '' or [] on a nullable field means clear (sent as null);
- unique arrays compare as sets; VLAN sets compare as sets of ids and ranges;
- maps keyed by slot (ports, disks, NICs) compare key by key: the set of keys must match,
  and inside an entry only the sub-fields the task gives are compared (the rest are kept);
- nested objects compare only the sub-fields the task gives.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

EMPTY = (None, '', [], {})


def _key(v):
    return json.dumps(v, sort_keys=True)


def vlan_items(v):
    """VLAN set entries as canonical strings: 10, '10', '20-29', {'from': 20, 'to': 29}."""
    out = set()
    for x in v or []:
        if isinstance(x, dict):
            out.add('%d-%d' % (int(x['from']), int(x['to'])))
        else:
            s = str(x).strip()
            if '-' in s:
                a, b = s.split('-', 1)
                out.add('%d-%d' % (int(a), int(b)))
            else:
                out.add(str(int(s)))
    return sorted(out)


def vlan_to_api(v):
    out = []
    for s in vlan_items(v):
        if '-' in s:
            a, b = s.split('-', 1)
            out.append({'from': int(a), 'to': int(b)})
        else:
            out.append(int(s))
    return out


def subset_equal(want, have):
    """True when every part of `want` equals `have` (dicts: only the keys `want` gives)."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return False
        return all(subset_equal(v, have.get(k)) for k, v in want.items() if v is not None)
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return False
        return all(subset_equal(a, b) for a, b in zip(want, have))
    if isinstance(want, bool) or isinstance(have, bool):
        return want is have or want == have and type(want) is type(have)
    if isinstance(want, (int, float)) and isinstance(have, (int, float)):
        return float(want) == float(have)
    return want == have


def clears(want, rule):
    return rule.get('nullable') and want in ('', [], {})


def equal(want, have, rule):
    """Whether the server's value `have` already satisfies the task's `want`."""
    if clears(want, rule):
        return have in EMPTY
    shape = rule.get('shape')
    if shape == 'vlanset':
        return vlan_items(want) == vlan_items(have)
    if shape == 'set':
        return sorted(_key(x) for x in want or []) == sorted(_key(x) for x in have or [])
    if shape == 'map':
        have = have or {}
        want = want or {}
        if set(want) != set(have):
            return False
        return all(subset_equal(v or {}, have.get(k)) for k, v in want.items())
    return subset_equal(want, have)


def to_api(want, have, rule):
    """The value to send: API form, keeping server sub-fields the task does not give."""
    if clears(want, rule):
        return None
    shape = rule.get('shape')
    if shape == 'vlanset':
        return vlan_to_api(want)
    if shape == 'map':
        have = have or {}
        out = {}
        for k, v in (want or {}).items():
            entry = dict(have.get(k) or {})
            entry.update(dict((a, b) for a, b in (v or {}).items() if b is not None))
            out[k] = entry
        return out
    if shape == 'object' and isinstance(want, dict):
        entry = dict(have or {})
        entry.update(dict((a, b) for a, b in want.items() if b is not None))
        return entry
    if rule.get('type') == 'float' and want is not None:
        return float(want)
    return want


def shown(value, rule):
    """A value as diff output shows it (sets sorted, VLANs canonical)."""
    shape = rule.get('shape')
    if shape == 'vlanset':
        return vlan_items(value)
    if shape == 'set' and isinstance(value, list):
        return sorted(value, key=_key)
    return value


def managed(params, rules, mode):
    """The fields this task sets that the API accepts in `mode` ('create' or 'update')."""
    out = {}
    for name, rule in rules.items():
        if params.get(name) is None:
            continue
        if rule.get(mode) or (mode == 'update' and rule.get('create')):
            out[name] = params[name]
    return out


def plan(params, current, rules):
    """Compares the task with an existing object.

    Returns (changes, immutable, before, after): `changes` maps updatable fields to the API
    value to send; `immutable` lists create-only fields that differ; `before`/`after` hold
    only the managed, readable fields for diff output.
    """
    changes = {}
    immutable = []
    before = {}
    after = {}
    for name, want in managed(params, rules, 'update').items():
        rule = rules[name]
        if not rule.get('read'):
            continue  # write-only (passwords): handled by the module's hook
        have = current.get(name)
        before[name] = shown(have, rule)
        if equal(want, have, rule):
            after[name] = shown(have, rule)
            continue
        value = to_api(want, have, rule)
        after[name] = shown(value, rule)
        if rule.get('update'):
            changes[name] = value
        else:
            immutable.append(name)
    return changes, immutable, before, after


def create_body(params, rules):
    """The create request: every create field the task sets, in API form."""
    body = {}
    for name, want in managed(params, rules, 'create').items():
        rule = rules[name]
        if not rule.get('create'):
            continue
        value = to_api(want, None, rule)
        if value is not None:
            body[name] = value
    return body


def create_after(body, rules):
    """The diff `after` of a create: what the task sets (secrets left out)."""
    return dict((k, shown(v, rules[k])) for k, v in body.items() if not rules[k].get('no_log'))


def snapshot(current, names, rules):
    """`before` of a delete: the managed fields of the object being removed."""
    out = {}
    for n in names:
        if n in rules and rules[n].get('read') and not rules[n].get('no_log'):
            out[n] = shown(current.get(n), rules[n])
    return out
