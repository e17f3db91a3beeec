import json

from rtproxy_core.redact import REDACTED, Redactor, describe_jwt, jwt_claims
from rtproxy_local.jwt import mint

NOW = 1_800_000_000
TOKEN = None


def token(exp_delta=3600, role="authenticated"):
    return mint({"role": role, "exp": NOW + exp_delta, "sub": "user-1"})


def test_url_apikey_redacted_and_readable():
    t = token()
    out = Redactor().url(f"wss://abc.supabase.co/realtime/v1/websocket?apikey={t}&vsn=2.0.0")
    assert t not in out and "apikey=[redacted]" in out and "vsn=2.0.0" in out


def test_sb_keys_and_jwts_in_text():
    t = token(-7200)
    out = Redactor().text(f"key sb_publishable_abcdef123456 and {t} here", now=NOW)
    assert "sb_publishable_abcdef123456" not in out and t not in out
    assert "<jwt role=authenticated expired 2h ago>" in out


def test_payload_access_token_shows_claims_only():
    t = token(59 * 60 + 30)
    p = {"config": {}, "access_token": t, "nested": [{"token": "opaque-secret"}]}
    out = Redactor().payload(p, now=NOW)
    assert out["access_token"] == "<jwt role=authenticated exp in 59m>"
    assert out["nested"][0]["token"] == REDACTED
    assert p["access_token"] == t  # input untouched
    assert t not in json.dumps(out)


def test_url_keeps_everything_but_the_secret_as_written():
    t = token()
    for query, want in [
        (f"apikey={t}&vsn=2.0.0&notify_self", "apikey=[redacted]&vsn=2.0.0&notify_self"),
        (f"a=%2F%20x+y&APIKEY={t}&b=", "a=%2F%20x+y&APIKEY=[redacted]&b="),
        (f"%61pikey={t}&apikey=", "%61pikey=[redacted]&apikey="),
        ("vsn=1.0.0&&x", "vsn=1.0.0&&x"),
    ]:
        assert (
            Redactor().url(f"wss://h/realtime/v1/websocket?{query}")
            == f"wss://h/realtime/v1/websocket?{want}"
        )


def test_url_redacts_a_userinfo_password():
    r = Redactor()
    assert r.url("wss://deploy:hunter2@h:8443/realtime/v1/websocket?vsn=2.0.0") == (
        "wss://deploy:[redacted]@h:8443/realtime/v1/websocket?vsn=2.0.0"
    )
    assert r.url("https://a:p@ss@h/x") == "https://a:[redacted]@h/x"
    assert r.url("wss://deploy@h/x") == "wss://deploy@h/x"  # no password, nothing to redact


def test_output_redacts_every_string_of_a_structure():
    t = token()
    out = Redactor().output(
        {"topic": f"realtime:room-{t}", "ref": t, "payload": {"reason": f"bad {t}"}}, now=NOW
    )
    assert t not in json.dumps(out) and out["topic"] == "realtime:room-<jwt role=authenticated exp in 1h>"
    assert Redactor().output(f"[rt 1] join realtime:{t}") == Redactor().text(f"[rt 1] join realtime:{t}")


def test_show_secrets_opt_in():
    t = token()
    r = Redactor(show_secrets=True)
    assert r.url(f"/x?apikey={t}") == f"/x?apikey={t}"
    assert r.payload({"access_token": t}) == {"access_token": t}


def test_jwt_claims_and_non_jwts():
    assert jwt_claims(token())["role"] == "authenticated"
    assert jwt_claims("not.a.jwt") is None
    assert describe_jwt("garbage") == "<not a jwt>"


def test_deep_nesting_is_bounded():
    deep = {}
    cur = deep
    for _ in range(500):
        cur["a"] = {}
        cur = cur["a"]
    out = Redactor().payload(deep)
    assert "[nested too deep]" in json.dumps(out)


def test_a_jwt_cut_short_before_redaction_leaves_nothing_of_its_claims_or_signature():
    """Texts are clipped (a reason to 80 characters, a browser's error text) before the last pass."""
    t = token()
    header = t.split(".")[0]
    for cut in range(len(header) + 1, len(t)):
        out = Redactor().text(f"reason: {t[:cut]}", now=NOW)
        rest = t[len(header) + 1 : cut]
        assert not any(rest[i : i + 6] in out for i in range(len(rest) - 5)), (cut, out)


def test_payload_keys_and_bytes_are_redacted_too():
    t = token()
    out = Redactor().payload({t: {"metas": []}, "blob": t.encode(), "plain": b"\x00\x01"}, now=NOW)
    assert t not in json.dumps({k: str(v) for k, v in out.items()})
    assert out["plain"] == b"\x00\x01" and out["blob"].startswith(b"<jwt role=authenticated")
