#!/usr/bin/env python3
"""Old path of `rtdecode` (rtproxy_tools/decode.py), kept so existing commands keep working: use `rtdecode`."""

import sys

from rtproxy_tools.decode import main

if __name__ == "__main__":
    sys.exit(main())
