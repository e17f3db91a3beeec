"""What Session.feed returns: the lines worth logging, each at a level."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class NoteLevel(StrEnum):
    """How loud a Note is: the log level a live run writes it at (rtproxy_mitm/tracker.py)."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"


@dataclass(slots=True)
class Note:
    level: NoteLevel
    text: str
    topic: str | None = None
    # A line about the connection itself (its upgrade, its end): a handful per connection, which the
    # live log's per-connection cap (rtproxy_mitm/connlog.py) never suppresses.
    always: bool = False
