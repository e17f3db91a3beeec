"""rtproxy: mitmproxy with only what a Realtime debugging session needs, and rtproxy's addons.

    rtproxy --mode reverse:http://worker.localhost@8080 [--set rt_supabase_url=...] [-w flows.mitm]

The same proxy as `mitmdump -s addon/rtproxy.py`, with fewer addons and a cheaper hook dispatch
(internals.FastAddonManager), so more messages per second on the same CPU (docs/performance-measured.md). It keeps
the proxy core and its modes (reverse, regular, upstream, TLS and upstream certificates), options and
`--set`, the terminal log, `-w` saving, HAR saving (mitmproxy's savehar: `--set hardump=FILE` and the
`save.har` command), `-s` for extra scripts (run before rtproxy's addons), mitmproxy's core commands and
rtproxy's. It takes the mitmdump flags rtproxy's users use and refuses every other with
one line; `mitmdump -s "$(rtproxy --addon-path)"` and mitmweb stay for everything else mitmdump does.

At start it raises the soft open-file limit to the hard one (each proxied connection holds two sockets)
and says how many connections the limit allows when that is fewer than SCALE_CONNECTIONS.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
from collections.abc import Sequence
from pathlib import Path

SUPPORTED = ("--mode", "-p/--listen-port", "--listen-host", "--set", "-w", "-q", "-s", "--options")
MITMDUMP = 'mitmdump -s "$(rtproxy --addon-path)"'  # rtproxy as a script, in any mitmproxy 12
SCALE_CONNECTIONS = 10_000  # what rtscale holds through rtproxy (docs/performance-measured.md)
# The client's socket and the upstream's, with a remote upstream (rt_supabase_url); the embedded server
# (no rt_supabase_url) holds a third in the same process, the relay (rt_mode=relay) two more.
FDS_PER_CONNECTION = 2
FDS_SPARE = 256  # listeners, the log, the relay and embedded servers, files

logger = logging.getLogger("rtproxy")


def make_parser(opts) -> argparse.ArgumentParser:
    """mitmproxy.tools.main.run's parser: only the supported flags, each mapped to its option as
    mitmdump's (tools/cmdline.py, common_options) maps it."""
    p = argparse.ArgumentParser(
        prog="rtproxy",
        usage="rtproxy [--mode MODE] [-p PORT] [--listen-host HOST] [--set option=value] [-w PATH] [-q] "
        "[-s SCRIPT] [--options]",
        description="mitmproxy with only what a Supabase Realtime debugging session needs, and rtproxy. "
        f"For anything else mitmdump does, run {MITMDUMP}.",
    )
    p.add_argument("--version", action="store_true", help="show rtproxy's and mitmproxy's versions and exit")
    p.add_argument(
        "--addon-path",
        action="store_true",
        help="print the path of rtproxy's addon file, for mitmdump -s / mitmweb -s, and exit",
    )
    p.add_argument("--options", action="store_true", help="show all options and their default values")
    p.add_argument("--commands", action="store_true", help="show all commands and their signatures")
    p.add_argument(
        "--set",
        type=str,
        dest="setoptions",
        default=[],
        action="append",
        metavar="option[=value]",
        help="set an option (rt_* options included); repeat for each",
    )
    p.add_argument("-q", "--quiet", action="store_true", dest="quiet", help="log errors only")
    p.set_defaults(verbose=None, filter_args=None)
    opts.make_parser(p, "mode", short="m")
    opts.make_parser(p, "listen_host", metavar="HOST")
    opts.make_parser(p, "listen_port", metavar="PORT", short="p")
    opts.make_parser(p, "save_stream_file", metavar="PATH", short="w")
    opts.make_parser(p, "scripts", metavar="SCRIPT", short="s")
    return p


def unsupported(argv: Sequence[str]) -> str | None:
    """The one line for the first flag rtproxy does not take, or None (-h/--help is main's, before this)."""
    _, unknown = help_parser().parse_known_args(list(argv))
    for arg in unknown:
        flag = arg.split("=", 1)[0]
        if flag.startswith("-"):
            return (
                f"rtproxy: {flag} is not supported by the rtproxy command (it takes {', '.join(SUPPORTED)}); "
                f"run {MITMDUMP} for it"
            )
        return f"rtproxy: unexpected argument {arg!r} (it takes {', '.join(SUPPORTED)})"
    return None


def raise_nofile(needed: int) -> tuple[int, int, str]:
    """Raise RLIMIT_NOFILE so `needed` files fit: the soft limit up to `needed`, and the hard one too where
    the process may (root with CAP_SYS_RESOURCE); else the soft one as far as the hard one. Returns the
    soft and hard limits then, and why the hard one stayed ("" when it did not need to move)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = hard == resource.RLIM_INFINITY
    why = ""
    if soft != resource.RLIM_INFINITY and soft < needed:
        try:
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (needed, hard if unlimited or hard >= needed else needed)
            )
        except (ValueError, OSError) as e:
            why = f"raising the hard limit to {needed} was refused: {e}"
            if not unlimited and soft < hard:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, hard, why


def raise_open_files(connections: int = SCALE_CONNECTIONS) -> str | None:
    """raise_nofile for `connections` proxied connections. A line saying how many fit when that is fewer,
    and why; None when they all fit."""
    soft, _, why = raise_nofile(connections * FDS_PER_CONNECTION + FDS_SPARE)
    if soft == resource.RLIM_INFINITY:
        return None
    holds = max(0, (soft - FDS_SPARE) // FDS_PER_CONNECTION)
    if holds < connections:
        return (
            f"rtproxy: the open-file limit is {soft}: about {holds:,} concurrent connections, not "
            f"{connections:,}{f' ({why})' if why else ''}; raise the hard limit (ulimit -Hn as root, or "
            "LimitNOFILE= in a systemd unit) for more"
        )
    return None


def master_class(startup_warning: str | None = None):
    """The master for mitmproxy.tools.main.run; `startup_warning` is logged when the proxy runs."""
    from mitmproxy import hooks, master
    from mitmproxy.addons import (
        core,
        errorcheck,
        next_layer,
        proxyserver,
        save,
        savehar,
        script,
        termlog,
        tlsconfig,
    )
    from rtproxy_mitm import internals
    from rtproxy_mitm.addons import rtproxy_addons

    class RtproxyMaster(master.Master):
        """The addons a Realtime session uses, in mitmdump's relative order (addons/__init__.py
        default_addons, tools/dump.py): rtproxy's where mitmdump's script loader puts `-s` scripts, after
        the user's own `-s` scripts."""

        def __init__(self, opts) -> None:
            super().__init__(opts, with_termlog=False)
            self.addons = internals.FastAddonManager(self)
            self._termlog_addon = termlog.TermLog()
            self.addons.add(self._termlog_addon)
            own = rtproxy_addons()
            self.addons.add(
                core.Core(),
                proxyserver.Proxyserver(),
                script.ScriptLoader(),
                *own,
                next_layer.NextLayer(),
                save.Save(),
                savehar.SaveHar(),  # hardump and save.har; after rtproxy's, so its done (the last
                # findings, the flows' comments) comes before the HAR is written
                tlsconfig.TlsConfig(),
                errorcheck.ErrorCheck(),
            )
            # A script's addons get a configure with every option once loaded (addons/script.py,
            # Script.loadscript); rtproxy's expect it (defaults such as $SUPABASE_URL, the log filter that
            # redacts secrets). Built in, they would only hear of options changed later.
            for addon in own:
                self.addons.invoke_addon_sync(addon, hooks.ConfigureHook(set(self.options.keys())))

        async def running(self) -> None:
            if startup_warning:
                logger.info(startup_warning)  # a fact about this machine, not a fault
            await super().running()

    return RtproxyMaster


def help_parser() -> argparse.ArgumentParser:
    """make_parser over an Options that holds only what the flags need (mitmproxy's own, -w's and -s's),
    so --help prints before any addon loads and logs."""
    from types import SimpleNamespace

    from mitmproxy import addonmanager, options
    from mitmproxy.addons import save, script

    opts = options.Options()
    loader = addonmanager.Loader(SimpleNamespace(options=opts))
    save.Save().load(loader)
    script.ScriptLoader().load(loader)
    return make_parser(opts)


def addon_path() -> str:
    """The file mitmproxy's -s loads rtproxy from: a checkout's addon/rtproxy.py (it puts addon/ on
    sys.path itself, so a mitmproxy without rtproxy installed runs it too), else the installed top-level
    rtproxy_addon.py (the mitmproxy's Python must have rtproxy: `pipx inject mitmproxy rtproxy`)."""
    here = Path(__file__).resolve().parent.parent  # addon/ in a checkout, site-packages when installed
    checkout = here / "rtproxy.py"
    return str(checkout if here.name == "addon" and checkout.is_file() else here / "rtproxy_addon.py")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        help_parser().print_help()
        return 0
    if "--addon-path" in args:
        print(addon_path())
        return 0
    if "--version" in args:
        from mitmproxy.utils import debug

        from rtproxy_tools import version_text

        print(version_text("rtproxy"))
        print(debug.dump_system_info())
        return 0
    if why := unsupported(args):
        print(why, file=sys.stderr)
        return 2
    from mitmproxy.tools import main as mitmproxy_main
    from mitmproxy.version import VERSION
    from rtproxy_mitm import mitmproxy_refused

    if refused := mitmproxy_refused(VERSION):
        print(refused, file=sys.stderr)
        return 1
    mitmproxy_main.run(master_class(startup_warning=raise_open_files()), make_parser, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
