"""What the two-leg view shows: the report's `legs` key and *Hop legs* section, rt.channels' lines, and
what a leg's flow keeps for the content view (its pair, the changes, each frame's fate).

URLs, reasons and quoted frames are redacted here; the mitmproxy layer passes all of it through
`Redactor.output` once more before it is printed or stored.
"""

from __future__ import annotations

from typing import Any

from ..redact import Redactor
from ..report import finding_markdown
from .align import DELAY_S
from .book import LegBook, Pair
from .model import CLIENT, MAX_FRAMES, UPSTREAM, Leg, quote_frame

METADATA = "rtproxy.leg"  # flow.metadata key of a leg's flow: leg_metadata(), read by the content view
MAX_FATES = 200  # frames per leg whose fate (dropped, delayed, ...) is kept for the content view


def pair_json(p: Pair, r: Redactor) -> dict[str, Any]:
    frames_json = {}
    dirs = p.directions()
    for d in dirs or ():
        frames_json[d.arrow] = {
            "sent": len(d.sent),
            "got": len(d.got),
            "dropped": len(d.dropped),
            "as_text": len(d.as_text),
            "altered": len(d.altered),
            "injected": len(d.injected),
            "reordered": len(d.reordered),
            "delayed": len(d.delayed),
        }
    return {
        "client": p.client.summary(r),
        "upstream": p.upstream.summary(r) if p.upstream is not None else None,
        "paired_by": p.how or None,
        "ended": p.final,
        "changes": p.changes,
        "frames": frames_json,
        "findings": [f.as_dict() for f in p.findings],
    }


def report_json(book: LegBook, ports: tuple[int, int] | None) -> dict[str, Any]:
    r = book.redactor
    return {
        "client_port": ports[0] if ports else None,
        "upstream_port": ports[1] if ports else None,
        "pairs": [pair_json(p, r) for p in book.all_pairs()],
        "upstream_without_client": [leg.summary(r) for leg in book.unpaired_upstream()],
    }


def report_markdown(book: LegBook) -> str:
    pairs, strays = book.all_pairs(), book.unpaired_upstream()
    if not pairs and not strays:
        return ""
    out = [
        "## Hop legs",
        "",
        "| client leg | upstream leg | paired by | the hop changed |",
        "|---|---|---|---|",
    ]
    for p in pairs:
        up = p.upstream.conn if p.upstream is not None else "—"
        changes = ", ".join(f"`{c}`" for c in p.changes) or ("nothing" if p.final else "nothing yet")
        out.append(f"| {p.client.conn} | {up} | {p.how or '—'} | {changes} |")
    for leg in strays:
        out.append(f"| — | {leg.conn} | no client leg | — |")
    out.append("")
    for p in pairs:
        for f in p.findings:
            out += finding_markdown(f.as_dict(), f"client leg {p.client.conn}")
    out.append("")
    return "\n".join(out)


def _side_word(leg: Leg) -> str:
    return f"{leg.side} leg" + (f" (listener {leg.listener})" if leg.listener else "")


def describe(book: LegBook, leg_id: str) -> list[str]:
    """rt.channels' lines for a leg: its pair, what the hop changed, the frames so far."""
    leg = book.leg(leg_id)
    if leg is None:
        return []
    p = book.pair_of(leg_id)
    if p is None:
        return [f"{_side_word(leg)} of the hop: no client leg paired"]
    other = p.other(leg)
    if other is None:
        lines = [f"{_side_word(leg)} of the hop: no upstream leg" + ("" if p.final else " yet")]
    else:
        lines = [f"{_side_word(leg)} of the hop, paired with {other.side} leg {other.conn} by {p.how}"]
    changes = ", ".join(p.changes)
    lines.append(("the hop changed: " if p.final else "the hop changed so far: ") + (changes or "nothing"))
    for d in p.directions() or ():
        lines.append(
            f"frames {d.arrow}: {len(d.sent)} sent, {len(d.got)} got"
            + "".join(
                f", {n} {what}"
                for n, what in (
                    (len(d.dropped), "not arrived" if not p.final else "dropped"),
                    (len(d.as_text), "as text"),
                    (len(d.altered), "altered"),
                    (len(d.injected), "injected"),
                    (len(d.reordered), "reordered"),
                    (len(d.delayed), "delayed"),
                )
                if n
            )
        )
    return lines


def fates(p: Pair, leg: Leg, r: Redactor) -> list[list[Any]]:
    """[time, from_client, text] for each frame of `leg` that did not pass the hop unchanged (for the
    content view; frames are found by their time and direction)."""
    dirs = p.directions() if p.final else None
    if not dirs:
        return []
    out: list[list[Any]] = []
    for d in dirs:
        sending = (d.sender == CLIENT) == (leg.side == CLIENT)
        peer = d.receiver if sending else d.sender
        if sending:
            out += [
                [s.time, s.from_client, f"dropped by the hop: it never reached the {peer}"] for s in d.dropped
            ]
            out += [[s.time, s.from_client, f"sent after the {peer} leg had ended"] for s in d.late]
            out += [
                [s.time, s.from_client, f"reached the {peer} as text: {quote_frame(g, r)}"]
                for s, g in d.as_text
            ]
            out += [
                [s.time, s.from_client, f"reached the {peer} changed: {quote_frame(g, r)}"]
                for s, g in d.altered
            ]
            out += [
                [s.time, s.from_client, f"reached the {peer} {g.time - s.time:.1f} s later"]
                for s, g in d.delayed
            ]
            out += [
                [a.time, a.from_client, f"reached the {peer} out of order: after #{b.n}"]
                for b, a in d.reordered
            ]
        else:
            out += [
                [g.time, g.from_client, f"injected by the hop: the {peer} never sent it"] for g in d.injected
            ]
            out += [
                [g.time, g.from_client, f"the {peer} sent it as binary: {quote_frame(s, r)}"]
                for s, g in d.as_text
            ]
            out += [
                [g.time, g.from_client, f"the {peer} sent it otherwise: {quote_frame(s, r)}"]
                for s, g in d.altered
            ]
            out += [
                [g.time, g.from_client, f"the {peer} sent it {g.time - s.time:.1f} s earlier"]
                for s, g in d.delayed
            ]
    return out[:MAX_FATES]


def leg_metadata(p: Pair, leg: Leg, r: Redactor) -> dict[str, Any]:
    """What a flow keeps of its leg (flow.metadata; flow files keep it): the content view reads it."""
    other = p.other(leg)
    return {
        "side": leg.side,
        "listener": leg.listener,
        "paired_with": other.id if other is not None else None,
        "paired_conn": other.conn if other is not None else None,
        "paired_by": p.how or None,
        "ended": p.final,
        "changes": p.changes,
        "fates": fates(p, leg, r),
        "compared_until": _compared_until(p),
    }


def _compared_until(p: Pair) -> float | None:
    """The time after which frames were not compared (a leg stopped recording at MAX_FRAMES)."""
    caps = [leg.capped_at for leg in p.legs() if leg.capped_at is not None]
    return min(caps) - DELAY_S if caps else None


def stray_metadata(leg: Leg) -> dict[str, Any]:
    return {
        "side": leg.side,
        "listener": leg.listener,
        "paired_with": None,
        "paired_conn": None,
        "paired_by": None,
        "ended": leg.ended,
        "changes": [],
        "fates": [],
        "compared_until": None,
    }


def view_lines(meta: dict[str, Any], time: float | None, from_client: bool | None) -> list[str]:
    """The content view's lines about a message's leg and its pair (`meta`: leg_metadata)."""
    side = f"{meta.get('side')} leg" + (f" (listener {meta['listener']})" if meta.get("listener") else "")
    if meta.get("paired_conn"):
        other = UPSTREAM if meta.get("side") == CLIENT else CLIENT
        lines = [f"# hop: {side}, paired with {other} leg {meta['paired_conn']} by {meta.get('paired_by')}"]
    elif meta.get("side") == CLIENT:
        lines = [f"# hop: {side}, no upstream leg" + ("" if meta.get("ended") else " yet")]
    else:
        lines = [f"# hop: {side}, paired with no client leg"]
    changes = ", ".join(meta.get("changes") or []) or "nothing"
    lines.append(f"# the hop changed{'' if meta.get('ended') else ' so far'}: {changes}")
    if time is not None and meta.get("ended") and meta.get("paired_conn"):
        fate = next((t for at, fc, t in meta.get("fates") or [] if at == time and fc == from_client), None)
        until = meta.get("compared_until")
        if fate is None and until is not None and time > until:
            fate = f"not compared (each leg's first {MAX_FRAMES} frames are)"
        lines.append(f"# this frame: {fate or 'passed the hop unchanged'}")
    return lines
