"""The Quiet addon in-process (mitmproxy.test.taddons): mitmproxy's dumper_filter keeps Realtime URLs out of
its own lines unless the user opted in; every log record passes the redactor, its traceback included."""

from __future__ import annotations

import logging
import time

from mitmproxy.addons.dumper import Dumper
from mitmproxy.test import taddons
from rtproxy_local.jwt import mint
from rtproxy_mitm.quiet import REALTIME_FLOWS_HIDDEN, Quiet, RedactRecords
from rtproxy_mitm.tracker import Tracker

TOKEN = mint({"role": "anon", "exp": int(time.time()) + 3600})


def test_dumper_filter_hides_realtime_flows_until_secrets_are_asked_for(caplog):
    quiet = Quiet()
    with taddons.context(Dumper(), Tracker(), quiet) as tctx, caplog.at_level(logging.INFO, logger="rtproxy"):
        tctx.configure(quiet, rt_show_secrets=False)
        assert tctx.options.dumper_filter == REALTIME_FLOWS_HIDDEN
        tctx.configure(quiet, rt_show_secrets=True)
        assert tctx.options.dumper_filter == ""
        assert "hidden (their URLs carry the apikey)" in caplog.text


def test_a_users_own_dumper_filter_is_kept_with_a_warning(caplog):
    quiet = Quiet()
    with (
        taddons.context(Dumper(), Tracker(), quiet) as tctx,
        caplog.at_level(logging.WARNING, logger="rtproxy"),
    ):
        tctx.configure(quiet, dumper_filter="~u /api")
        assert tctx.options.dumper_filter == "~u /api"
        [record] = [r for r in caplog.records if r.name == "rtproxy"]
        assert "your dumper_filter lets mitmproxy print Realtime URLs" in record.getMessage()


def test_every_record_is_redacted_its_traceback_too():
    handler_out = []

    class Keep(logging.Handler):
        def emit(self, record):
            handler_out.append(self.format(record))

    handler = Keep()
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    handler.addFilter(RedactRecords())
    log = logging.getLogger("rtproxy.test-quiet")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.info("rtproxy's own line: join realtime:room-%s", TOKEN)
        try:
            raise KeyError(f'["1", "1", "realtime:boom-{TOKEN}", "phx_join", {{}}]')
        except KeyError:
            log.exception("rtproxy internal error")
    finally:
        log.removeHandler(handler)
    text = "\n".join(handler_out)
    assert "Traceback" in text and "KeyError" in text and "realtime:boom-<jwt role=anon" in text
    assert TOKEN not in text and TOKEN.split(".")[2] not in text
