#!/usr/bin/env python3
"""Old path of `rtdiagnose` (rtproxy_tools/diagnose.py), kept so existing commands keep working: use `rtdiagnose`."""

import sys

from rtproxy_tools.diagnose import main

if __name__ == "__main__":
    sys.exit(main())
