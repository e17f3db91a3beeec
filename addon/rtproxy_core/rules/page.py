"""Rules only the page can give (rt_page_probe): what the page's WebSocket did with the frames the wire
delivered (session.pageview.PageView, fed by the probe's PageEvents)."""

from __future__ import annotations

from ..session import Session
from .model import Check, Ev, Evidence, Severity, rule


@rule(
    "binary-delivered-as-blob",
    Severity.ERROR,
    "SUBSCRIBED, but binary broadcasts are silently lost (vsn 2.0.0)",
    "Make the WebSocket wrapper forward binaryType to the native socket (get binaryType() { return "
    "this.socket.binaryType } and its setter), or pass no transport: realtime-js sets binaryType = "
    "'arraybuffer' and decodes only an ArrayBuffer; a Blob becomes {} and the broadcast is dropped.",
)
def _binary_delivered_as_blob(s: Session, c: Check) -> Evidence:
    page = s.page
    if page is None or not page.blobs:
        return
    native = sorted({b for (kind, b), _ in page.delivered.items() if kind == "Blob"})
    lost = list(s.binary_broadcasts)[: page.blobs]
    by_topic: dict[str, list[str]] = {}
    for _, topic, event in lost:
        by_topic.setdefault(topic, []).append(event)
    said = (
        f"the page's socket delivered {page.blobs} binary frame(s) to the app's handler as a Blob (the native "
        f"socket's binaryType was {'/'.join(native)}, never set to 'arraybuffer'); realtime-js decodes only an "
        f"ArrayBuffer, so each became an empty message; the wire delivered {s.binary_broadcast_count} binary "
        "broadcast(s) to the page"
    )
    if not by_topic:
        yield Ev(None, said, began=page.first_blob_at)
    for topic, events in by_topic.items():
        names = ", ".join(f'"{e}"' for e in dict.fromkeys(events))
        yield Ev(
            topic,
            f"{said}; lost on {topic}: {len(events)} broadcast(s) (event {names}, binary kind 4)",
            began=page.first_blob_at,
        )
