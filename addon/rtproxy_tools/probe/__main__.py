"""`python -m rtproxy_tools.probe`: rtprobe."""

import sys

from .cli import main

sys.exit(main())
