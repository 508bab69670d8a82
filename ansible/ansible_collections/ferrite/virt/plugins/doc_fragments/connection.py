# -*- coding: utf-8 -*-
# Copyright: Ferrite contributors
# SPDX-License-Identifier: Apache-2.0

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # The connection options of every module, with the Terraform provider's environment names.
    DOCUMENTATION = r'''
options:
  endpoint:
    description:
      - API endpoint, for example C(https://host:8006). Falls back to E(FERRITE_ENDPOINT).
    type: str
  token:
    description:
      - API token (or ticket). Falls back to E(FERRITE_TOKEN). Giving it together with O(username) or
        O(password) is an error.
    type: str
  username:
    description:
      - User for password login (NAME@REALM). Falls back to E(FERRITE_USERNAME).
    type: str
  password:
    description:
      - Password of O(username). Falls back to E(FERRITE_PASSWORD).
    type: str
  tls_fingerprint:
    description:
      - SHA-256 fingerprint of the daemon's certificate (any case, colons optional). Checked right after the TLS
        handshake, before any request (and so any credential) is sent. Falls back to E(FERRITE_TLS_FINGERPRINT).
    type: str
  ca_path:
    description:
      - CA bundle to verify the daemon's certificate with, instead of the system store. Falls back to E(FERRITE_CA_PATH).
    type: path
  insecure:
    description:
      - Skip certificate verification (default false). Falls back to E(FERRITE_INSECURE).
    type: bool
  request_timeout:
    description:
      - Seconds one socket operation may take (default 30). Falls back to E(FERRITE_REQUEST_TIMEOUT).
    type: float
  timeout:
    description:
      - Seconds the whole operation may take, retries and task waits included (default 600). Falls back to
        E(FERRITE_TIMEOUT).
    type: float
'''
