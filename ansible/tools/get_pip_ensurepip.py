"""Stand-in for ansible-test's pip bootstrap script (get-pip-X.Y.py from ci-files.testing.ansible.com)
where that host is unreachable: bootstraps pip from the interpreter's bundled ensurepip wheel, then
installs the pinned pip version ansible-test asked for from PyPI, as get-pip does.

scripts/test copies it to ~/.ansible/test/cache/get_pip_<version>.py only when the real script
cannot be downloaded."""

import ensurepip
import os
import subprocess
import sys

GET_PIP_ONLY = ('--no-setuptools', '--no-wheel')

env = dict(os.environ)
ensurepip.bootstrap(upgrade=True)
# ensurepip points PIP_CONFIG_FILE at /dev/null for its own offline install; the pinned pip
# comes from PyPI with the machine's pip configuration (proxies, CA bundle) as get-pip would.
args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + args, env=env)
