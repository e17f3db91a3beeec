"""What rtprobe prints: the checklist or its JSON, every line through `Scrubber`; the docs' table and
--help's list of checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from rtproxy_core.redact import REDACTED, Redactor

from .checks import CHECKS, FAIL, PASS, SKIP, ProbeResult


@dataclass(frozen=True, slots=True)
class Scrubber:
    """Everything rtprobe prints passes through here: the key wherever it appears (it need not look like
    a secret), then the Redactor (JWTs, apikey=, sb_ keys). --show-secrets turns both off."""

    redactor: Redactor
    key: str = ""

    def _key(self, s: str) -> str:
        if not self.key or self.redactor.show_secrets:
            return s
        return s.replace(self.key, REDACTED).replace(quote(self.key, safe=""), REDACTED)

    def text(self, s: str) -> str:
        return self.redactor.text(self._key(s))

    def url(self, s: str) -> str:
        return self.redactor.url(self._key(s))

    def output(self, value: Any) -> Any:
        """The last pass over what is printed, whole (Redactor.output), the key replaced in every string
        of it first: pieces are scrubbed where they are built, this catches what a piece missed."""

        def keyed(v: Any) -> Any:
            if isinstance(v, str):
                return self._key(v)
            if isinstance(v, dict):
                return {k: keyed(x) for k, x in v.items()}
            if isinstance(v, list):
                return [keyed(x) for x in v]
            return v

        return self.redactor.output(keyed(value))


LABEL = {PASS: "PASS", FAIL: "FAIL", SKIP: "SKIP"}


def render_text(url: str, socket: str, results: list[ProbeResult]) -> str:
    """The checklist: `STATUS name — detail`, and for a failure `→ code` and the finding's fix."""
    lines = [f"rtprobe {url} ({socket})"]
    for r in results:
        lines.append(f"{LABEL[r.status]} {r.name} — {r.detail}")
        if r.status == FAIL:
            lines.append(f"     → {r.code}")
            lines.append(f"     fix: {r.fix}")
    n = {k: sum(r.status == k for r in results) for k in (PASS, FAIL, SKIP)}
    lines.append(f"{len(results)} checks: {n[PASS]} passed, {n[FAIL]} failed, {n[SKIP]} not checked")
    return "\n".join(lines)


def render_json(url: str, socket: str, results: list[ProbeResult]) -> dict[str, Any]:
    return {
        "url": url,
        "socket": socket,
        "checks": [r.as_dict() for r in results],
        "ok": all(r.status == PASS for r in results),
    }


def readme_table() -> str:
    """The docs' rtprobe table (docs/reference/probe-checks.md; tests/test_docs.py checks it)."""
    rows = [f"| `{c.name}` | {c.verifies} | `{c.code}` |" for c in CHECKS]
    return "\n".join(["| check | what it verifies | finding |", "|---|---|---|", *rows])


def checks_help() -> str:
    """The checks, for --help: name → finding, and what it verifies."""
    return "checks (→ the finding a failure is evidence of):\n" + "\n".join(
        f"  {c.name} → {c.code}\n      {c.verifies}" for c in CHECKS
    )
