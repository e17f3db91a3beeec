#!/usr/bin/env python3
"""Old path of `rtlocal` (rtproxy_tools/local.py), kept so existing commands keep working: use `rtlocal`."""

import sys

from rtproxy_tools.local import main

if __name__ == "__main__":
    sys.exit(main())
