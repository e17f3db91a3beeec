#!/usr/bin/env python3
"""Old path of `rtprobe` (rtproxy_tools/probe), kept so existing commands keep working: use `rtprobe`."""

import sys

from rtproxy_tools.probe import main

if __name__ == "__main__":
    sys.exit(main())
