"""rtproxy as a mitmproxy script, installed: `mitmdump -s "$(rtproxy --addon-path)"` (mitmweb too).

The file mitmproxy's `-s` loads when rtproxy is installed (pip, `pipx inject mitmproxy rtproxy`). It is
a top-level module: the folder mitmproxy puts on sys.path while it loads a script (addons/script.py,
load_script: the script's own folder) is then site-packages, which shadows nothing. A checkout's
addon/rtproxy.py is the same two lines after it puts addon/ on sys.path. `rtproxy --addon-path` prints
this file's path.
"""

from rtproxy_mitm import script_addons

addons: list = script_addons()
