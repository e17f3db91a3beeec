"""Keeps mitmproxy's own output free of Realtime secrets.

mitmdump prints every flow and WebSocket message with its URL, and a Realtime URL carries the apikey in
its query. Unless the user opted in to secrets (rt_show_secrets), rtproxy sets mitmproxy's dumper_filter
so Realtime upgrade flows are left to rtproxy's own, redacted lines. A dumper_filter the user set is
kept, with a warning.

One secret is the user's to see: mitmweb's own login token, in the URL mitmweb prints for its UI
(`Web server listening at http://127.0.0.1:8081/?token=…`). While the UI listens on loopback only, that
URL passes the redaction whole; on any other address its token stays redacted, and rtproxy says to log in
with web_password instead.
"""

from __future__ import annotations

import ipaddress
import logging

from mitmproxy import ctx
from mitmproxy.version import VERSION
from rtproxy_core.redact import Redactor

from .internals import web_login_url
from .sanitize import messages_not_sanitized

logger = logging.getLogger("rtproxy")

# Realtime socket URLs, upgrade or not (a hop that strips `Upgrade` turns one into a plain GET), and any
# URL with an apikey in its query.
REALTIME_FLOWS_HIDDEN = '!(~u "/websocket" | ~u "[?&]apikey=")'


def loopback(host: str) -> bool:
    """Is HOST (mitmweb's web_host) reachable from this machine only?"""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def own_login_url() -> str | None:
    """mitmweb's login URL, token included, while its UI listens on loopback only; else None."""
    url = web_login_url()
    if url is None or "web_host" not in ctx.options or not loopback(ctx.options.web_host):
        return None
    return url


class RedactRecords(logging.Filter):
    """Every log line passes through `Redactor.output` last: rtproxy's own, and mitmproxy's, which quote
    a raw request head now and then (a client that broke off in the middle of its request, a request it
    cannot parse), apikey and all. mitmweb's own login URL (own_login_url) passes whole."""

    rtproxy_redact = True  # recognised (and replaced) across script reloads

    def __init__(self) -> None:
        super().__init__()
        self.redactor = Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redactor.output(message)
        if redacted != message and (login := own_login_url()) and login in message:
            redacted = login.join(self.redactor.output(part) for part in message.split(login))
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # A traceback quotes what the exception says (a frame, a token). Formatters print exc_text
            # when it is set (logging.Formatter.format), so the redacted text is what gets printed.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.output(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.output(record.stack_info)
        return True


def redact_log_handlers(on: bool) -> None:
    """Put a RedactRecords on every handler of the root logger (where mitmproxy's termlog and event log
    are), or take it off."""
    for handler in logging.getLogger().handlers:
        for f in [f for f in handler.filters if getattr(f, "rtproxy_redact", False)]:
            handler.removeFilter(f)
        if on:
            handler.addFilter(RedactRecords())


class Quiet:
    def running(self) -> None:
        url = web_login_url()
        if (
            url is not None
            and "?token=" in url
            and own_login_url() is None
            and not ctx.options.rt_show_secrets
        ):
            logger.warning(
                f"rtproxy: mitmweb's UI listens on {ctx.options.web_host or 'every address'}, not on loopback "
                "only, so its login token stays redacted in this log; set a password to log in "
                "(--set web_password=…), or listen on 127.0.0.1 (--web-host 127.0.0.1)"
            )

    def configure(self, updated: set[str]) -> None:
        if "rt_show_secrets" in updated:
            redact_log_handlers(not ctx.options.rt_show_secrets)
        if "dumper_filter" not in ctx.options or not ({"rt_show_secrets", "dumper_filter"} & updated):
            return
        current = ctx.options.dumper_filter
        if ctx.options.rt_show_secrets:
            if current == REALTIME_FLOWS_HIDDEN:
                ctx.options.update(dumper_filter="")
        elif not current:
            ctx.options.update(dumper_filter=REALTIME_FLOWS_HIDDEN)
            logger.info(
                "rtproxy: mitmproxy's own lines for Realtime upgrades are hidden (their URLs carry the "
                "apikey); rtproxy logs them redacted. --set rt_show_secrets=true shows everything."
            )
        elif current != REALTIME_FLOWS_HIDDEN:
            messages = (
                "; on this mitmproxy, WebSocket messages as they went"
                if messages_not_sanitized(VERSION)
                else ""
            )
            logger.warning(
                "rtproxy: your dumper_filter lets mitmproxy print Realtime flows and the app's calls to its "
                "Supabase project; it prints them as rtproxy stores them, credentials replaced (a JWT keeps "
                "its header and claims). rtproxy cannot cover what mitmproxy prints of other hosts' traffic "
                f"(URLs, headers, cookies, bodies as they went){messages}. Add & {REALTIME_FLOWS_HIDDEN} "
                "to leave Realtime flows to rtproxy's own, redacted lines"
            )
