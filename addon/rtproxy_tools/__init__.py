"""rtproxy's command-line tools, on PATH once the project is installed (pyproject.toml [project.scripts]):

    rtdiagnose  captures -> findings (diagnose.py)      rtdecode  one frame per line -> decoded (decode.py)
    rtprobe     checks a relay in front of Realtime      rtclient  the real Python client joins a channel
    rtlocal     the local Realtime-compatible server     rtbench / rtscale  the benchmark and the scale run
    rtsanitize  a capture without its credentials        rtreplay  re-runs one connection of a capture
    rtworker    a Cloudflare Worker run in workerd       rtproxy   mitmproxy with rtproxy's addons built in

Each is a thin entry point over rtproxy_core (and rtproxy_local, rtproxy_mitm where it needs them).
"""

import os

__version__ = "0.1.0"  # the one place: pyproject.toml reads it ([tool.setuptools.dynamic]); CHANGELOG.md


def version_text(prog: str) -> str:
    """What each command's --version prints."""
    return f"{prog} {__version__}"


KEY_ENV = "SUPABASE_ANON_KEY"  # the one variable every tool reads a key from (rtreplay's SUPABASE_KEY too)


def key_from_env() -> str | None:
    """The apikey the user exported for the tools: $SUPABASE_ANON_KEY, else the older $SUPABASE_KEY."""
    return os.environ.get(KEY_ENV) or os.environ.get("SUPABASE_KEY") or None
