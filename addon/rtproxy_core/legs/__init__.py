"""The two-leg view of a hop: one connection seen in front of a Worker (or any relay) and behind it.

rtproxy listens twice (rt_legs): the client-side listener's target is the hop, and the hop's upstream is
the upstream-side listener, whose target is Realtime. Each WebSocket upgrade on the first is a client leg
(what the page sent and got), each on the second an upstream leg (what the hop sent Realtime and got
back). This package records each leg, bounded, pairs a client leg with the upstream leg the hop opened for
it, and runs the leg rules over each pair: what the hop changed. No I/O: it is fed events.py's events, as
Session is (the per-connection Session and its rules go on running on each leg as usual).

- model.py: `Leg` and `LegFrame`, what is kept of each connection and frame;
- align.py: `align`, one direction's frames matched sent against got (dropped, injected, delayed, ...);
- rules.py: the leg rules, `@leg_rule` functions over a pair (the hop-* codes);
- book.py: `LegBook`, which pairs the legs and runs the rules as they change (`Pair`, `evaluate`);
- render.py: the report, rt.channels' lines and the content view's metadata.

Importers use the names below; the modules import each other in that order (rules.py names `Pair` for
types only).
"""

from .align import DELAY_S, Direction, align
from .book import LegBook, Pair, Update, evaluate, parse_ports
from .model import CLIENT, MAX_FRAMES, UPSTREAM, Leg, LegFrame
from .render import (
    METADATA,
    describe,
    fates,
    leg_metadata,
    pair_json,
    report_json,
    report_markdown,
    stray_metadata,
    view_lines,
)
from .rules import (
    LEG_RULES,
    LEG_RULES_BY_CODE,
    PER_LEG_HEADERS,
    LegCheck,
    LegRule,
    leg_rule,
    readme_table,
)

__all__ = [
    "CLIENT",
    "DELAY_S",
    "LEG_RULES",
    "LEG_RULES_BY_CODE",
    "MAX_FRAMES",
    "METADATA",
    "PER_LEG_HEADERS",
    "UPSTREAM",
    "Direction",
    "Leg",
    "LegBook",
    "LegCheck",
    "LegFrame",
    "LegRule",
    "Pair",
    "Update",
    "align",
    "describe",
    "evaluate",
    "fates",
    "leg_metadata",
    "leg_rule",
    "pair_json",
    "parse_ports",
    "readme_table",
    "report_json",
    "report_markdown",
    "stray_metadata",
    "view_lines",
]
