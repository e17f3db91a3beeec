#!/usr/bin/env python3
"""Old path of `rtscale` (rtproxy_tools/scale.py), kept so existing commands keep working: use `rtscale`."""

import sys

from rtproxy_tools.scale import main

if __name__ == "__main__":
    sys.exit(main())
