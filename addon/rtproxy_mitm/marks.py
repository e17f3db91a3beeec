"""Findings where mitmweb users look: the flow's marker and its comment.

A Realtime flow whose connection has an error finding is marked (mitmproxy's flow marker); its comment
holds the connection's top finding in one line, what a user needs first leading, since mitmweb's Comment
column shows about 17 characters until it is widened: the channel, what the client saw, the cause in a few
words, then rtproxy's finding code and the connection's id as the log prints it (what rtproxy's commands
take as their target):

    orders TIMED_OUT · join dropped by proxy · rtproxy: join-dropped-by-proxy [rt 3f8370]

A warning sets the comment only. Both are flow attributes, so `-w` flow files keep them; `Marks` writes
the comment (and the marker) into `savehar`'s entries too, which mitmproxy leaves out, and for a Realtime
flow the client's URL and the close (`har_entry`). A marker or comment the user set is never replaced,
nor one the user removed put back.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from mitmproxy import ctx, hooks, http
from rtproxy_core.captures import RTPROXY_KEY
from rtproxy_core.report import FINDING_TAG, finding_line
from rtproxy_core.rules import FROM_PAGE, Severity
from rtproxy_core.session import Session

from .flowevents import ORIGINAL_HEADERS, ORIGINAL_URL, UPSTREAM_URL, client_url, closed_event, is_realtime
from .internals import wrap_har_entries

# ✖ (U+2716): a text glyph every common font has (DejaVu, Liberation, the system fonts), so it shows where
# mitmweb's own markers (🔴, 🟠, …: color emoji) need an emoji font. mitmweb shows any marker as its emoji.
MARKER = ":heavy_multiplication_x:"
# A comment rtproxy wrote (when the flow's metadata does not say): this form, or the older "rtproxy: CODE …".
OURS = re.compile(rf"(^{FINDING_TAG}|· {FINDING_TAG}[a-z0-9-]+( \[rt \w+\])?$)")
MARKED, COMMENTED = "rtproxy.marked", "rtproxy.comment"  # flow.metadata: what rtproxy set on the flow
# flow.metadata: the connection's findings whose evidence is the page's ([code, evidence], redacted), for the
# content view (contentview.py)
PAGE_FINDINGS = "rtproxy.page_findings"


def show_findings(flow: http.HTTPFlow, session: Session) -> None:
    """Bring the flow's comment and marker up to date with the session's findings. rtproxy marks a flow
    once (a marker the user took off stays off) and keeps only its own comment up to date (one the user
    wrote or cleared stays as it is); what it wrote is in the flow's metadata, which flow files keep."""
    changed = False
    page = [[f.code, f.evidence] for f in session.findings if f.code in FROM_PAGE]
    if page and flow.metadata.get(PAGE_FINDINGS) != page:
        flow.metadata[PAGE_FINDINGS], changed = page, True
    comment = finding_line(session)
    if comment is None and not changed:
        return
    ours = flow.metadata.get(COMMENTED)
    if ours is not None:
        may_comment = flow.comment == ours
    else:
        may_comment = not flow.comment or bool(OURS.search(flow.comment))
    if comment is not None and may_comment and flow.comment != comment:
        flow.comment, flow.metadata[COMMENTED], changed = comment, comment, True
    if (
        not flow.marked
        and not flow.metadata.get(MARKED)
        and any(f.severity == Severity.ERROR for f in session.findings)
    ):
        flow.marked, flow.metadata[MARKED], changed = MARKER, True, True
    if changed:
        try:
            ctx.master.addons.trigger(hooks.UpdateHook([flow]))  # mitmweb's list shows it now
        except AttributeError:  # no master (a flow file read offline)
            pass


def har_entry(flow: http.HTTPFlow, entry: dict) -> dict:
    """A savehar entry with the flow's comment (HAR 1.2 `entries[].comment`) and marker (`_marked`), and for
    a Realtime flow what savehar leaves out that the diagnosis needs (`captures.RTPROXY_KEY`): the URL and
    headers the client sent (the entry's are the flow's, which a reroute rewrote: in relay mode, rtproxy's
    internal relay), what went upstream, and how the WebSocket ended (savehar keeps no close)."""
    if flow.comment:
        entry["comment"] = flow.comment
    if flow.marked:
        entry["_marked"] = flow.marked
    if is_realtime(flow, by_frames=True):
        ours: dict = {"clientUrl": flow.metadata.get(ORIGINAL_URL) or client_url(flow)}
        if ORIGINAL_HEADERS in flow.metadata:
            ours["clientHeaders"] = [{"name": k, "value": v} for k, v in flow.metadata[ORIGINAL_HEADERS]]
        if UPSTREAM_URL in flow.metadata:
            ours["upstreamUrl"] = flow.metadata[UPSTREAM_URL]
        if flow.websocket is not None and flow.websocket.timestamp_end is not None:
            end = closed_event(flow)
            ours["close"] = {
                "code": end.code,
                "reason": end.reason,
                "byClient": end.by_client,
                "time": end.time,
                "endedFirst": end.ended_first,
            }
        entry[RTPROXY_KEY] = ours
    return entry


class Marks:
    """Where the marks and comments show: `savehar` (the command and `hardump`) keeps the flows' comments
    and markers, and mitmweb's flow list gets its Comment column (mitmweb's own `web_columns` option),
    before Path, so the finding is on the list without a click."""

    def __init__(self) -> None:
        self._unwrap: Callable[[], None] | None = None

    def load(self, loader) -> None:
        # Left in place at `done`: savehar writes `hardump` in its own `done`, after rtproxy's.
        self._unwrap = wrap_har_entries(har_entry)

    def running(self) -> None:
        # Only while the columns are mitmweb's default: a choice the user made stays. Before Path, which
        # takes what the other columns leave: mitmweb shows the Comment column 150 px wide, and widened
        # (a double click on its header's edge) it would push itself off the right of the window.
        if "web_columns" in ctx.options and not ctx.options.has_changed("web_columns"):
            columns = list(ctx.options.web_columns)
            if "comment" not in columns:
                at = columns.index("path") if "path" in columns else len(columns)
                ctx.options.update(web_columns=[*columns[:at], "comment", *columns[at:]])
