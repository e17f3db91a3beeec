#!/usr/bin/env python3
"""Old path of `rtclient` (rtproxy_tools/client.py), kept so existing commands keep working: use `rtclient`."""

import sys

from rtproxy_tools.client import main

if __name__ == "__main__":
    sys.exit(main())
