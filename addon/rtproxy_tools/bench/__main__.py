"""python -m rtproxy_tools.bench: rtbench."""

import sys

from . import main

sys.exit(main())
