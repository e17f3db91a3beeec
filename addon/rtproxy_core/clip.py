"""Long fields in the lines rtproxy writes. A topic, event, ref, reason or error text is the sender's to
choose (Realtime takes topics of any length, and frames up to 5,000,000 bytes), so one frame could make a
line of megabytes: a field past FIELD_MAX characters is written as its start and its length
(`realtime:aaaa...(5,012 chars)`), and a whole line past LINE_MAX the same way.

Clip what is printed after it was redacted (`Redactor.output`): a clipped JWT keeps too little of itself
for the redactor to know it (what it still knows, `redact.JWT_CUT`, it hides)."""

from __future__ import annotations

import re

FIELD_MAX = 200  # characters of one field (a topic, ref, event, reason) in a log line
LINE_MAX = 1500  # characters of one log line, its `[rt <conn>] ` prefix included
_RUN = re.compile(rf"\S{{{FIELD_MAX + 1},}}")  # a run of more than FIELD_MAX characters without a space


def clip(text: str, limit: int = FIELD_MAX) -> str:
    """`text` as it is when it has at most `limit` characters, else cut to `limit` characters ending in
    its length: `realtime:aaaa...(5,012 chars)`. Clipping the result again changes nothing."""
    n = len(text)
    if n <= limit:
        return text
    mark = f"...({n:,} chars)"  # ASCII: one "…" would make Python store the string at 2 bytes a character
    return text[: max(limit - len(mark), 0)] + mark


def clip_line(line: str) -> str:
    """A log line as written: each run of more than FIELD_MAX characters without a space (a topic, a ref,
    an event, a URL, a JSON value) clipped, then the whole line to LINE_MAX characters."""
    if len(line) <= FIELD_MAX:
        return line
    return clip(_RUN.sub(lambda m: clip(m.group()), line), LINE_MAX)
