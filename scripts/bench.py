#!/usr/bin/env python3
"""Old path of `rtbench` (rtproxy_tools/bench/), kept so existing commands keep working: use `rtbench`."""

import sys

from rtproxy_tools.bench import main

if __name__ == "__main__":
    sys.exit(main())
