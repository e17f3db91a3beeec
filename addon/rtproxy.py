"""rtproxy: mitmproxy addon that stands in for the proxy between a web page and Supabase Realtime.

    mitmdump -s addon/rtproxy.py --mode reverse:http://worker.localhost@8080

Reroutes WebSocket upgrades aimed at the Worker host onto the Supabase Realtime URL (rt_mode), decodes
every Realtime frame and tracks every channel in the log. `mitmdump -s addon/rtproxy.py --options`
lists the rt_* options. The code lives in rtproxy_core (sans-I/O) and rtproxy_mitm (hooks); their
`script_addons()` is also what rtproxy_addon.py, the -s file of an installed rtproxy, loads
(`mitmdump -s "$(rtproxy --addon-path)"`).
"""

import os
import sys

# Import rtproxy's packages from this checkout, so any mitmproxy runs the addon without installing them
# (pipx, Homebrew, a venv of its own). mitmproxy's script loader puts this directory on sys.path only
# while the script loads (addons/script.py, load_script); the relay and the embedded server import later.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from rtproxy_mitm import script_addons  # the one definition; the installed -s file: rtproxy_addon.py

addons: list = script_addons()
