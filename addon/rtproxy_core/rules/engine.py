"""Running the rules over a session: `evaluate` runs every rule in ORDER and adds an unexplained-failure
for a failure no finding explains; `link` marks each symptom with the finding it follows (its rule's
`follows`) and puts a connection's findings causes first, each followed by its symptoms.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ..events import HopKind
from ..redact import Redactor
from ..session import CLOSED, JOINED, JOINING, LEAVING, Channel, Session
from . import channels, commands, ending, forwarding, liveness, page, reasons, upgrade  # noqa: F401 - they register
from .commands import after_commands
from .model import (
    REGISTERED,
    Check,
    Confidence,
    Ev,
    Evidence,
    Finding,
    Rule,
    SessionRule,
    Severity,
    rule,
)
from .said import one_pass


@rule(
    "unexplained-failure",
    Severity.WARNING,
    "CHANNEL_ERROR, TIMED_OUT or CLOSED in a way no other finding explains",
    "The evidence is quoted as the wire shows it. Capture the run with a flow file (mitmdump -w) for close "
    "frames and the hop's own actions, and report it as an rtproxy gap if the cause is still unnamed.",
    Confidence.LIKELY,
)
def _unexplained_failure(s: Session, c: Check) -> Evidence:
    """evaluate() adds it where no other finding explains a failure (_unexplained)."""
    return iter(())


# Decisiveness order, causes before the symptoms they produce (apikey-missing before join-timeout): the
# rules run in it, and link() ranks findings of one severity by it, so a report's first finding is the cause.
ORDER: tuple[str, ...] = (
    # Handshake-level causes: nothing else can work until the upgrade (and the URL it carries) is right.
    "apikey-missing",
    "vsn-missing",
    "tenant-not-found",
    "path-wrong",
    "token-expired",
    "token-invalid",
    "rate-limited",
    "realtime-disabled",
    "server-restarting",
    "database-unavailable",
    "worker-exception",
    "upgrade-rejected",
    "refusal-replaced",
    "upstream-unreachable",
    "connect-failed",
    # What happened to frames on the way.
    "early-101",
    "join-dropped-by-proxy",
    "serializer-mismatch",
    "binary-on-v1",
    "binary-as-text",
    "binary-delivered-as-blob",
    "handler-threw",
    "send-on-closed-socket",
    "dropped-while-offline",
    # One channel's fate.
    "join-unauthorized",
    "join-error",
    "binding-mismatch",
    "postgres-changes-error",
    "channel-shutdown",
    "join-timeout",
    "join-unanswered",
    "duplicate-join",
    "left-after-join",
    # Liveness.
    "client-silent",
    "no-heartbeat",
    "heartbeat-timeout",
    "heartbeat-gap",
    "server-idle-close",
    # How the connection ended.
    "client-gone",
    "idle-socket-dropped",
    "proxy-idle-timeout",
    "server-gone",
    "reserved-close-code",
    "close-not-forwarded",
    "server-close",
    "message-too-large",
    # What rtproxy did, what spans connections, and what nothing else explains.
    "rtproxy-command",
    "reconnect-loop",
    "unexplained-failure",
)
RULES: tuple[SessionRule, ...] = tuple(
    REGISTERED[code] for code in ORDER
)  # KeyError: a code no rule registers
RULES_BY_CODE: dict[str, SessionRule] = {r.code: r for r in RULES}
if len(RULES_BY_CODE) != len(ORDER) or RULES_BY_CODE.keys() != REGISTERED.keys():
    unplaced = sorted(REGISTERED.keys() - RULES_BY_CODE.keys())
    raise RuntimeError(f"ORDER must name every registered rule once (not in it: {unplaced})")

RECONNECT_LOOP = RULES_BY_CODE["reconnect-loop"]  # diagnosis.Diagnoser makes its findings
UNEXPLAINED = RULES_BY_CODE["unexplained-failure"]

SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
_POSITION = {code: i for i, code in enumerate(ORDER)}


def _rank(f: Finding) -> tuple[int, float, int]:
    """Errors before warnings before info; within, the one whose evidence began first (Finding.anchor);
    ORDER breaks ties (a leg rule's finding after every rule's)."""
    return SEVERITY_ORDER[f.severity], round(f.anchor, 3), _POSITION.get(f.code, len(_POSITION))


def evaluate(s: Session, check: Check) -> list[Finding]:
    """All findings whose evidence is present now, in ORDER; then, for what nothing explains, an
    unexplained-failure with the raw evidence."""
    with one_pass(s):
        out = _evaluate(s, check)
        out.extend(_unexplained(s, check, out))
    return out


def _evaluate(s: Session, check: Check) -> list[Finding]:
    out = []
    after = after_commands(s, check.now) if s.hop_counts.get(HopKind.COMMAND) else ""
    code = s.closed.code if s.closed is not None and s.closed.code is not None else None
    for r in RULES:
        explains = r.explains.replace("<code>", str(code)) if code is not None else r.explains
        suffix = "" if r.code == "rtproxy-command" else after
        out.extend(findings_of(r, s, check, s.conn, check.now, s.redactor, explains=explains, suffix=suffix))
    return out


def findings_of[SubjectT, CheckT](
    r: Rule[SubjectT, CheckT],
    subject: SubjectT,
    check: CheckT,
    conn: str,
    now: float,
    redactor: Redactor,
    *,
    explains: str | None = None,
    suffix: str = "",
    first: bool = False,
) -> list[Finding]:
    """One rule's findings on its subject (a Session, or a leg Pair): a Finding for each evidence item it
    yields (only the first with `first`), its topic and text redacted, `suffix` after the text. A rule
    that raises adds a rule-failed finding after what it yielded: one broken rule hides no other."""
    out: list[Finding] = []
    try:
        for item in r.evidence(subject, check):
            ev = Ev(None, item) if isinstance(item, str) else item if isinstance(item, Ev) else Ev(*item)
            confidence = Confidence.CANDIDATES if ev.candidates else (ev.confidence or r.confidence)
            out.append(
                Finding(
                    r.code,
                    r.severity,
                    r.explains if explains is None else explains,
                    redactor.text(ev.topic) if ev.topic else None,
                    redactor.text(ev.text + suffix),
                    r.fix,
                    conn,
                    now,
                    confidence,
                    ev.candidates,
                    began=ev.began,
                )
            )
            if first:
                break
    except Exception as e:  # noqa: BLE001 - one broken rule must not hide the others
        out.append(rule_failed(r.code, e, conn, now))
    return out


def rule_failed(code: str, error: Exception, conn: str, now: float) -> Finding:
    """The finding that stands in for a rule that raised: the others still run."""
    return Finding(
        "rule-failed",
        Severity.INFO,
        "nothing",
        None,
        f"{code}: {type(error).__name__}: {error}",
        "Report this as an rtproxy bug.",
        conn,
        now,
    )


def clean_end(s: Session, ch: Channel, final: bool) -> bool | None:
    """Did this channel instance end joined-then-left-cleanly? None: it has not ended (or the capture
    cannot say how it did)."""
    if ch.implicit:
        return None  # the capture started after its join
    if ch.state == JOINED:
        return None if s.closed is None or not s.closed.recorded else not s.failed
    if ch.state == CLOSED:
        return ch.joined_at is not None and (
            ch.closed_by == "client" or not s.failed and ch.closed_by is None
        )
    if ch.state in (LEAVING, JOINING) and (s.closed is None or not s.closed.recorded):
        return None  # in flight when the capture (or the run) ended
    if ch.state == LEAVING:
        return ch.joined_at is not None and not final or (s.closed is not None and not s.failed)
    if ch.state == JOINING and not final:
        return None
    return False


def _unexplained(s: Session, check: Check, found: list[Finding]) -> list[Finding]:
    topics = {f.topic for f in found}
    conn_level = any(f.topic is None for f in found)
    out = []
    for ch in s.channels.values():
        topic = s.redactor.text(ch.topic)
        if topic in topics or clean_end(s, ch, check.final) is not False:
            continue
        # A connection-level finding explains a channel that failed with its socket, or never got a reply.
        if conn_level and (ch.reason is None or ch.reason.startswith("socket closed")):
            continue
        out.append(
            _unexplained_finding(
                s,
                check,
                topic,
                f"{ch.label} ended {ch.state}"
                + (f" ({ch.reason})" if ch.reason else "")
                + f" after {ch.sent} frame(s) out, {ch.received} in"
                + (f"; last system message: {ch.system[-1].message}" if ch.system else ""),
            )
        )
        topics.add(topic)
    if not found and not out and s.failed:
        cl = s.closed
        how = (
            f"status {s.status}"
            if s.status not in (None, 101)
            else f"close {cl.code if cl and cl.code is not None else 'without a close frame'}"
            + (f' "{cl.reason}"' if cl and cl.reason else "")
        )
        out.append(
            _unexplained_finding(s, check, None, f"the connection failed ({how}); no rule explains it")
        )
    return out


def _unexplained_finding(s: Session, check: Check, topic: str | None, text: str) -> Finding:
    r = UNEXPLAINED
    return Finding(
        r.code,
        r.severity,
        r.explains,
        topic,
        s.redactor.text(text),
        r.fix,
        s.conn,
        check.now,
        Confidence.LIKELY,
    )


def link(findings: list[Finding]) -> list[Finding]:
    """Each symptom marked with the finding it follows, and the list ordered causes first, each followed
    by its symptoms (errors before warnings before info among the causes; ORDER within)."""
    codes = {f.code for f in findings}
    linked = []
    for f in findings:
        r = RULES_BY_CODE.get(f.code)  # None: a leg rule's finding (legs.py), which follows nothing
        cause = next((c for c in r.follows if c in codes and c != f.code), None) if r else None
        linked.append(replace(f, follows=cause) if cause != f.follows else f)
    # A reconnect loop follows the connection's own cause: its first root error or warning.
    roots = sorted(
        (
            f
            for f in linked
            if f.follows is None
            and f.code != "reconnect-loop"
            and f.severity in (Severity.ERROR, Severity.WARNING)
        ),
        key=_rank,
    )
    if roots:
        linked = [replace(f, follows=roots[0].code) if f.code == "reconnect-loop" else f for f in linked]
    causes = sorted((f for f in linked if f.follows is None), key=_rank)
    out: list[Finding] = []
    placed: set[int] = set()

    def place(f: Finding) -> None:
        if id(f) in placed:
            return
        placed.add(id(f))
        out.append(f)
        for g in sorted((g for g in linked if g.follows == f.code and id(g) not in placed), key=_rank):
            place(g)

    for f in causes:
        place(f)
    for f in sorted(linked, key=_rank):  # symptoms of a cause that is itself a symptom placed later: cycles
        place(f)
    return out


def rules_table(rules: Iterable[Rule[Any, Any]]) -> str:
    """The docs' table of these rules (docs/reference/findings.md), in their order: code, severity, what
    the client sees, fix (the connection's rules, RULES; the leg rules, legs.LEG_RULES)."""
    rows = [f"| `{r.code}` | {r.severity} | {r.explains} | {r.fix} |" for r in rules]
    return "\n".join(["| code | severity | what the client sees | fix |", "|---|---|---|---|", *rows])
