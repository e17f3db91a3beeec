"""The rules' registry: every rule runs in the one explicit ORDER, each `follows` names a finding that
exists, link() reads it, and the vocabularies (Severity, Confidence, Timers) say what they did before."""

from __future__ import annotations

import json

import pytest
from rtproxy_core import legs, rules
from rtproxy_core.rules.model import REGISTERED
from rtproxy_core.session import CLIENT_HEARTBEAT_S, CLIENT_JOIN_TIMEOUT_S, SERVER_IDLE_S, Session

LEG_CODES = {r.code for r in legs.LEG_RULES}


def test_order_names_every_registered_rule_once():
    assert len(rules.ORDER) == len(set(rules.ORDER)), "a code twice in ORDER"
    assert set(rules.ORDER) == set(REGISTERED), set(rules.ORDER) ^ set(REGISTERED)
    assert [r.code for r in rules.RULES] == list(rules.ORDER)
    assert list(rules.RULES_BY_CODE) == list(rules.ORDER)


def test_the_findings_made_outside_a_rule_are_registered_rules():
    """reconnect-loop (Diagnoser) and unexplained-failure (evaluate) are rules like the others, last."""
    assert rules.ORDER[-2:] == ("reconnect-loop", "unexplained-failure")
    assert rules.RECONNECT_LOOP is rules.RULES_BY_CODE["reconnect-loop"]
    assert rules.UNEXPLAINED is rules.RULES_BY_CODE["unexplained-failure"]


def test_a_code_registers_once():
    with pytest.raises(ValueError, match="registered twice"):
        rules.rule("join-timeout", rules.Severity.ERROR, "", "")(lambda s, c: iter(()))
    assert REGISTERED["join-timeout"] is rules.RULES_BY_CODE["join-timeout"]


def test_every_follows_names_a_rule_or_a_leg_rule():
    for r in rules.RULES:
        assert len(r.follows) == len(set(r.follows)), r.code
        assert r.code not in r.follows, r.code
        unknown = set(r.follows) - set(rules.RULES_BY_CODE) - LEG_CODES
        assert not unknown, (r.code, unknown)
        assert all(c in LEG_CODES for c in r.follows if c.startswith("hop-")), r.code
    assert not LEG_CODES & set(rules.RULES_BY_CODE)


def finding(code: str) -> rules.Finding:
    r = rules.RULES_BY_CODE[code]
    return rules.Finding(r.code, r.severity, r.explains, None, "", r.fix, confidence=r.confidence)


def test_link_reads_follows():
    """A symptom follows the first of its rule's `follows` present, and is listed right after it."""
    for r in rules.RULES:
        for cause in (c for c in r.follows if c in rules.RULES_BY_CODE):
            linked = rules.link([finding(r.code), finding(cause)])
            assert [(f.code, f.follows) for f in linked] == [(cause, None), (r.code, cause)], (r.code, cause)
    first, second = rules.RULES_BY_CODE["join-timeout"].follows[:2]
    linked = rules.link([finding("join-timeout"), finding(second), finding(first)])
    assert {f.code: f.follows for f in linked}["join-timeout"] == first


def test_severity_and_confidence_are_their_old_strings():
    assert [str(s) for s in rules.Severity] == ["error", "warning", "info"]
    assert [str(c) for c in rules.Confidence] == ["certain", "likely", "candidates"]
    f = finding("join-timeout")
    assert f.severity == "error" and f"{f.severity}" == "error" and f.confidence == "likely"
    d = f.as_dict()
    assert type(d["severity"]) is str and type(d["confidence"]) is str
    assert json.dumps([f.severity, f.confidence]) == '["error", "likely"]'


def test_rejection_fields():
    s = Session()
    assert rules.rejection(s) is None
    s.status, s.rejection = 401, "API key is missing"
    assert rules.rejection(s) == rules.Rejection(401, "API key is missing", "the upgrade")
    s.status, s.upstream_status, s.upstream_rejection = 101, 404, None
    rej = rules.rejection(s)
    assert rej is not None and (rej.status, rej.text, rej.request) == (404, "", "the hop's upstream upgrade")


def test_timers_keep_what_the_user_configured_apart_from_the_defaults():
    t = rules.Timers()
    assert t.configured == rules.TimerSettings(None, None, None)
    assert (t.join, t.heartbeat, t.idle) == (CLIENT_JOIN_TIMEOUT_S, CLIENT_HEARTBEAT_S, SERVER_IDLE_S)
    assert str(t) == "" and rules.Timers.parse("") == t
    assert t.in_force() == "join=10,heartbeat=25,idle=60"
    t = rules.Timers.parse("heartbeat=25, idle=5")
    assert t.configured == rules.TimerSettings(None, 25.0, 5.0) and (t.join, t.idle) == (10.0, 5.0)
    assert rules.Timers.parse(str(t)) == t and str(t) == "heartbeat=25,idle=5"
    with pytest.raises(AttributeError):
        t.join = 3  # type: ignore[misc]


def test_a_configured_heartbeat_goes_before_the_clients_default():
    s = Session()
    assert s.heartbeat_interval(None) == (CLIENT_HEARTBEAT_S, "rt_timers")
    s.client_kind = "realtime-js"
    assert s.heartbeat_interval(None) == (CLIENT_HEARTBEAT_S, "realtime-js's default")
    assert s.heartbeat_interval(25.0) == (25.0, "rt_timers")  # configured, even to the default
    assert s.heartbeat_interval(5.0) == (5.0, "rt_timers")


def test_upstream_failed_is_one_answer():
    s = Session()
    assert not s.upstream_failed and not s.failed
    s.upstream_status = 502
    assert s.upstream_failed and s.failed
    s = Session()
    s.hop_counts["upstream-failed"] = 1
    assert s.upstream_failed and s.failed


def test_every_claim_names_what_each_client_reports():
    """`explains` is checked against the real clients (tests/test_oracle.py): it names outcomes the
    clients report, and a "; realtime-py: …" segment speaks for that client only."""
    from rtproxy_core.rules import CLIENTS, RULES_BY_CODE, Outcome, claimed

    js, py = CLIENTS
    refused = RULES_BY_CODE["upgrade-rejected"]
    assert refused.outcomes(js) == {Outcome.CHANNEL_ERROR}
    assert refused.outcomes(py) == {Outcome.CONNECT_RAISES}
    assert claimed("SUBSCRIBED, but changes are lost; realtime-py: CHANNEL_ERROR", js) == {Outcome.SUBSCRIBED}
    assert claimed("nothing: the client went away", py) == frozenset()
    # Every rule that explains a failure names it, for every client (rtproxy's own command aside).
    quiet = {"client-gone", "rtproxy-command"}
    for code, r in RULES_BY_CODE.items():
        for client in CLIENTS:
            assert bool(r.outcomes(client)) != (code in quiet), (code, client, r.explains)
