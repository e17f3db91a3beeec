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
from rtproxy_core.diagnosis import top_finding
from rtproxy_core.events import HopKind
from rtproxy_core.frames import TOPIC_PREFIX
from rtproxy_core.rules import CLIENTS, Finding, Outcome, Severity
from rtproxy_core.session import Session

from .flowevents import ORIGINAL_HEADERS, ORIGINAL_URL, UPSTREAM_URL, client_url, closed_event, is_realtime
from .internals import wrap_har_entries

# ✖ (U+2716): a text glyph every common font has (DejaVu, Liberation, the system fonts), so it shows where
# mitmweb's own markers (🔴, 🟠, …: color emoji) need an emoji font. mitmweb shows any marker as its emoji.
MARKER = ":heavy_multiplication_x:"
TAG = "rtproxy: "  # before the finding code, last in rtproxy's comment
# A comment rtproxy wrote (when the flow's metadata does not say): this form, or the older "rtproxy: CODE …".
OURS = re.compile(rf"(^{TAG}|· {TAG}[a-z0-9-]+( \[rt \w+\])?$)")
MARKED, COMMENTED = "rtproxy.marked", "rtproxy.comment"  # flow.metadata: what rtproxy set on the flow


def channel(topic: str | None) -> str:
    """A topic as the app names its channel: `realtime:orders` is supabase.channel('orders')."""
    if topic is None:
        return ""
    return topic.removeprefix(TOPIC_PREFIX) or topic


def outcome(f: Finding, session: Session) -> str:
    """What the connection's client reports, as the finding claims it (rules.Outcome): `TIMED_OUT`,
    `CHANNEL_ERROR/CLOSED`; realtime-js's when the frames do not say which client it is. A socket that
    opened did not make connect() raise."""
    claims = f.outcomes(session.client_kind or CLIENTS[0])
    if session.status == 101:
        claims -= {Outcome.CONNECT_RAISES}
    return "/".join(o.value for o in Outcome if o in claims)


def comment_for(session: Session) -> str | None:
    """The top finding of a connection in one line (diagnosis.top_finding, which rt.channels names too), or
    None if it has no error or warning: the channel and the outcome its client reports, the cause (the code
    in words, and rtproxy's own commands on the connection before it), the code, the connection's id."""
    top = top_finding(session.findings)
    if top is None:
        return None
    head = " ".join(filter(None, [channel(top.topic), outcome(top, session)]))
    commands = dict.fromkeys(
        h.detail.split(":", 1)[0] for h in session.hops if h.what == HopKind.COMMAND and h.time <= top.time
    )
    cause = top.code.replace("-", " ") + (f" after {', '.join(commands)}" if commands else "")
    text = " · ".join(filter(None, [head, cause, f"{TAG}{top.code} [rt {session.conn}]"]))
    return session.redactor.output(" ".join(text.split()))


def show_findings(flow: http.HTTPFlow, session: Session) -> None:
    """Bring the flow's comment and marker up to date with the session's findings. rtproxy marks a flow
    once (a marker the user took off stays off) and keeps only its own comment up to date (one the user
    wrote or cleared stays as it is); what it wrote is in the flow's metadata, which flow files keep."""
    comment = comment_for(session)
    if comment is None:
        return
    changed = False
    ours = flow.metadata.get(COMMENTED)
    if ours is not None:
        may_comment = flow.comment == ours
    else:
        may_comment = not flow.comment or bool(OURS.search(flow.comment))
    if may_comment and flow.comment != comment:
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
