"""Diagnosis rules: why a channel ended in CHANNEL_ERROR, TIMED_OUT or CLOSED, or why data went missing.

Each rule is one small unit, registered with `@rule` (model.py): a stable kebab-case code, a severity, the
client-visible outcome it explains, the fix, how sure its evidence makes it by default, the findings it
can follow from as a symptom (`follows`), and a function that looks at a Session and yields (topic,
evidence) or an `Ev` when its evidence is there. By theme:

- upgrade.py: a refused upgrade (no apikey, a wrong path, a gateway, a refusal that says nothing);
- reasons.py: the causes Realtime names in words (tenant, token, quota, restart, database);
- forwarding.py: what happened to frames between the client and Realtime (a hop, the vsn);
- channels.py: one channel's join, bindings and end;
- page.py: what the page did with the frames (rt_page_probe);
- liveness.py: heartbeats and the server's idle close;
- ending.py: how the connection ended, and reconnect loops;
- commands.py: what rtproxy itself did on request.

said.py classifies every string the server sends over one table (catalog.py), so a string lands in
exactly one finding. engine.py runs the rules in ORDER, causes before symptoms; `link` lists a
connection's findings causes first, each followed by its symptoms, so the first finding is the cause. A
finding says how sure it is: certain (the wire shows it), likely (inferred, usually from timing), or
candidates (the wire cannot tell; the candidates are ranked by what it does show).

A new rule: its function with `@rule(...)` in the module of its theme, its code in engine.ORDER (before
the symptoms it causes, after the causes it follows), a case in tests/test_rules.py, then
the docs' findings table shows it (scripts/tables.py, CONTRIBUTING.md).
"""

from .engine import (
    ORDER,
    RECONNECT_LOOP,
    RULES,
    RULES_BY_CODE,
    UNEXPLAINED,
    clean_end,
    evaluate,
    findings_of,
    link,
    rule_failed,
    rules_table,
)
from .model import (
    CLIENTS,
    FAILURES,
    Check,
    Confidence,
    Ev,
    Evidence,
    Finding,
    Outcome,
    Rule,
    SessionRule,
    Severity,
    Timers,
    TimerSettings,
    claimed,
    rule,
    said_for,
)
from .page import FROM_PAGE, SEEN_BY_PAGE
from .said import Rejection, classify_reason, named, rejection, said

__all__ = [
    "CLIENTS",
    "FAILURES",
    "FROM_PAGE",
    "ORDER",
    "RECONNECT_LOOP",
    "RULES",
    "RULES_BY_CODE",
    "SEEN_BY_PAGE",
    "UNEXPLAINED",
    "Check",
    "Confidence",
    "Ev",
    "Evidence",
    "Finding",
    "Outcome",
    "Rejection",
    "Rule",
    "SessionRule",
    "Severity",
    "TimerSettings",
    "Timers",
    "claimed",
    "classify_reason",
    "clean_end",
    "evaluate",
    "findings_of",
    "link",
    "named",
    "rejection",
    "rule",
    "rule_failed",
    "rules_table",
    "said",
    "said_for",
]
