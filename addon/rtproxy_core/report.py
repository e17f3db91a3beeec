"""Reports over sessions: JSON (rtdiagnose --json, rt.report), Markdown (rt.report), text (rtdiagnose),
and the channel table (rt.channels).

Everything here comes from Session.summary() and the findings, which are already redacted.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from . import frames
from .diagnosis import ranked, top_finding
from .events import HopKind
from .rules import CLIENTS, FROM_PAGE, SEEN_BY_PAGE, Finding, Outcome, Severity
from .session import Session


def connection_json(s: Session) -> dict[str, Any]:
    summary = s.summary()
    return {
        "url": summary["url"],
        "status": summary["status"],
        "vsn": summary["vsn"],
        "upstream_url": summary["upstream_url"],
        "rejection": summary["rejection"],
        "close": summary["close"],
        "heartbeats": summary["heartbeats"],
        "channels": summary["channels"],
        "frames": frame_counts(s),
        "error_frames": [{"time": e.time, "text": s.redactor.text(e.text)} for e in s.error_frames],
        "findings": _with_chains(ranked(s.findings)),
    }


def frame_counts(s: Session) -> dict[str, Any]:
    """Frames by direction ("out": the client's, "in": the server's) and kind, the undecodable ones, the
    errors the browser recorded among them, and those the capture reader left out, by why."""
    binary = s.binary_frames
    return {
        "out": {"text": s.frames_from_client - binary[True], "binary": binary[True]},
        "in": {"text": s.frames_from_server - binary[False], "binary": binary[False]},
        "undecodable": s.decode_errors,
        "errors": s.error_frame_count,
        "dropped": dict(s.dropped_frames),
    }


def _frame_lines(s: Session, c: dict[str, Any]) -> list[str]:
    """What the frame counts say that needs saying: frames that could not be read, and browser errors."""
    fr, lines = c["frames"], []
    if fr["undecodable"]:
        lines.append(f"{fr['undecodable']} undecodable frame(s)")
    if fr["dropped"]:
        why = ", ".join(f"{n} {reason}" for reason, n in fr["dropped"].items())
        lines.append(f"{sum(fr['dropped'].values())} frame(s) left out by the reader ({why})")
    start = s.opened_at or 0.0
    for e in c["error_frames"]:
        at = f" at {e['time'] - start:.1f} s" if start and e["time"] >= start else ""
        lines.append(f"browser error frame{at}: {e['text']}")
    if fr["errors"] > len(c["error_frames"]):
        lines.append(f"({fr['errors']} browser error frames in all)")
    return lines


def _with_chains(found: list[Finding]) -> list[dict[str, Any]]:
    """Each finding as JSON with `chain`: the findings it follows, root cause first (rules.link's
    `follows`, followed back), so the cause of a symptom is read without walking the list."""
    by_code = {f.code: f for f in found}
    out = []
    for f in found:
        chain: list[str] = []
        cause = f.follows
        while cause is not None and cause in by_code and cause not in chain:
            chain.append(cause)
            cause = by_code[cause].follows
        out.append(f.as_dict() | {"chain": chain[::-1]})
    return out


def report_json(sessions: list[Session]) -> dict[str, Any]:
    return {"connections": [connection_json(s) for s in sessions]}


def has_error(sessions: list[Session]) -> bool:
    return any(f.severity == Severity.ERROR for s in sessions for f in s.findings)


def report_text(sessions: list[Session]) -> str:
    if not sessions:
        return "no Realtime connections in the capture\n"
    lines = []
    for i, s in enumerate(sessions, 1):
        c = connection_json(s)
        close = c["close"]
        end = "" if close is None else f", closed {close['code']} {close['reason']}".rstrip()
        if close is not None and close["code"] is None:  # no close frame, or (a HAR) none recorded
            end = ", closed without a close frame" if s.closed and s.closed.recorded else ""
        lines.append(f"connection {i}: {c['url']}")
        if c["status"] is None and s.closed is not None and s.closed.error:  # never answered: nothing closed
            lines.append(f"  no answer to the upgrade, vsn {c['vsn']}")
        else:
            lines.append(
                f"  handshake {c['status']}{(' ' + c['rejection']) if c['rejection'] else ''}, "
                f"vsn {c['vsn']}{end}"
            )
        for ch in s.channels.values():
            lines.append("  " + ch.describe(s.redactor))
        lines.extend("  " + line for line in _frame_lines(s, c))
        if not c["findings"]:
            lines.append("  no findings")
        for f in c["findings"]:
            where = f" {f['topic']}" if f["topic"] else ""
            lines.append(f"  [{f['severity']}] {f['code']}{where} → {f['explains']}")
            lines.append(f"      {_how_sure(f)}evidence: {f['evidence']}")
            lines.append(f"      fix: {f['fix']}")
    return "\n".join(lines) + "\n"


def _how_sure(f: dict[str, Any]) -> str:
    """ "likely; follows heartbeat-gap; " — nothing for a certain cause."""
    parts = []
    if f.get("confidence") and f["confidence"] != "certain":
        parts.append(f["confidence"] + (": " + ", ".join(f["candidates"]) if f.get("candidates") else ""))
    if f.get("follows"):
        parts.append("follows " + " → ".join(f.get("chain") or [f["follows"]]))
    return "; ".join(parts) + "; " if parts else ""


def report_markdown(sessions: list[Session]) -> str:
    counts = Counter(f.code for s in sessions for f in s.findings)
    out = ["# rtproxy report", "", f"{len(sessions)} Realtime connection(s).", ""]
    if counts:
        out += ["## Findings", "", "| code | count |", "|---|---|"]
        out += [f"| `{code}` | {n} |" for code, n in counts.most_common()]
        out.append("")
    for i, s in enumerate(sessions, 1):
        c = connection_json(s)
        out += [
            f"## Connection {i}: {c['url']}",
            "",
            f"Handshake {c['status']}{(' ' + c['rejection']) if c['rejection'] else ''}, vsn {c['vsn']}"
            + (f", closed {c['close']['code']} {c['close']['reason']}".rstrip() if c["close"] else "")
            + ".",
            "",
        ]
        if c["channels"]:
            out += ["| channel | state | join latency | in / out | reason |", "|---|---|---|---|---|"]
            for ch in c["channels"]:
                lat = f"{ch['join_latency_ms']:.0f} ms" if ch["join_latency_ms"] is not None else "—"
                out.append(
                    f"| {ch['topic']} | {ch['state']} | {lat} | {ch['received']} / {ch['sent']} | "
                    f"{ch['reason'] or ''} |"
                )
            out.append("")
        out += [f"- {line}" for line in _frame_lines(s, c)]
        for f in c["findings"]:
            out += finding_markdown(f, f["topic"])
        out.append("")
    return "\n".join(out)


def finding_markdown(f: dict[str, Any], where: str | None) -> list[str]:
    """A finding's lines in a Markdown report (`f`: Finding.as_dict()), found `where` (a channel's topic, a
    client leg; None: the connection): code and severity, what the client sees, the evidence and how sure
    it is, the fix."""
    on = f" on {where}" if where else ""
    return [
        f"- **{f['code']}** ({f['severity']}){on} — {f['explains']}",
        f"  - evidence: {_how_sure(f)}{f['evidence']}",
        f"  - fix: {f['fix']}",
    ]


# ------------------------------------------------------------------------------------ the channel table

TABLE_COLUMNS = ("conn", "socket", "topic", "state", "join", "outcome", "finding")


def socket_state(s: Session) -> str:
    """The connection in a word or two: open, closed CODE, dropped (no close frame), refused STATUS, no
    answer (the upgrade never got one), upgrading."""
    if s.status is None:
        return "upgrading" if s.closed is None else "no answer"
    if s.status != 101:
        return f"refused {s.status}"
    if s.closed is None:
        return "open"
    if s.closed.code is None:
        return "dropped" if s.closed.recorded else "ended"
    return f"closed {s.closed.code}"


def channel_table(sessions: list[Session], now: float) -> dict[str, Any]:
    """rt.channels as JSON: each connection (its id, socket state, vsn, top finding) and each channel's
    current instance (topic, state, join latency, the client's last outcome as of `now` or the
    connection's end, the channel's top finding). Findings are `top_finding`'s, as the flow's comment."""
    out = []
    for s in sessions:
        at = s.ended_at if s.ended_at is not None else now
        top = top_finding(s.findings)
        channels = []
        for ch in s.current.values():
            topic = s.redactor.text(ch.topic)  # findings name topics redacted
            mine = top_finding(s.findings, topic)
            channels.append(
                {
                    "topic": topic,
                    "join": ch.seq,
                    "state": ch.state.value,
                    "join_latency_ms": None if ch.join_latency_ms is None else round(ch.join_latency_ms),
                    "outcome": ch.outcome(at, s.join_timeout_s),
                    "finding": mine.code if mine else None,
                }
            )
        out.append(
            {
                "conn": s.conn,
                "socket": socket_state(s),
                "vsn": s.vsn,
                "finding": top.code if top else None,
                "channels": channels,
            }
        )
    return {"connections": out}


def channel_table_text(table: dict[str, Any]) -> list[str]:
    """The table's lines: a header, then one row per channel (a connection without channels: one row,
    topic `-`), columns padded to the widest value."""
    rows = [[c.upper() for c in TABLE_COLUMNS]]
    for c in table["connections"]:
        for ch in c["channels"] or [None]:
            if ch is None:
                rows.append([c["conn"], c["socket"], "-", "-", "-", "-", c["finding"] or "-"])
                continue
            topic = ch["topic"] if ch["join"] == 1 else f"{ch['topic']} (join {ch['join']})"
            join = "-" if ch["join_latency_ms"] is None else f"{ch['join_latency_ms']} ms"
            rows.append(
                [c["conn"], c["socket"], topic, ch["state"], join, ch["outcome"] or "-", ch["finding"] or "-"]
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_COLUMNS))]
    return ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]


FINDING_TAG = "rtproxy: "  # before the finding code in finding_line (mitmweb's comment knows its own by it)


def channel_name(topic: str | None) -> str:
    """A topic as the app names its channel: `realtime:orders` is supabase.channel('orders')."""
    if topic is None:
        return ""
    return topic.removeprefix(frames.TOPIC_PREFIX) or topic


def claimed_outcome(f: Finding, session: Session) -> str:
    """What the connection's client reports, as the finding claims it (rules.Outcome): `TIMED_OUT`,
    `CHANNEL_ERROR/CLOSED`; realtime-js's when the frames do not say which client it is. A socket that
    opened did not make connect() raise."""
    claims = f.outcomes(session.client_kind or CLIENTS[0])
    if session.status == 101:
        claims -= {Outcome.CONNECT_RAISES}
    return "/".join(o.value for o in Outcome if o in claims)


def finding_line(session: Session) -> str | None:
    """The top finding of a connection in one line (diagnosis.top_finding, which rt.channels names too), or
    None if it has no error or warning: the channel and the outcome its client reports, the cause (the code
    in words, rtproxy's own commands on the connection before it, and "(seen by the page probe)" for a
    finding whose evidence is the page's), the code, the connection's id. mitmweb's flow comment
    (rtproxy_mitm/marks.py)."""
    top = top_finding(session.findings)
    if top is None:
        return None
    head = " ".join(filter(None, [channel_name(top.topic), claimed_outcome(top, session)]))
    commands = dict.fromkeys(
        h.detail.split(":", 1)[0] for h in session.hops if h.what == HopKind.COMMAND and h.time <= top.time
    )
    cause = top.code.replace("-", " ") + (f" after {', '.join(commands)}" if commands else "")
    if top.code in FROM_PAGE:
        cause += f" ({SEEN_BY_PAGE})"
    text = " · ".join(filter(None, [head, cause, f"{FINDING_TAG}{top.code} [rt {session.conn}]"]))
    line: str = session.redactor.output(" ".join(text.split()))
    return line
