"""The README stays true to the code: every finding code, fault and rt_* option is documented, and
every option the README documents exists."""

import re

from conftest import ROOT
from rtproxy_core.faults import FAULTS
from rtproxy_core.rules import RULES

README = (ROOT / "README.md").read_text()
ADDON_SOURCES = "\n".join(p.read_text() for p in (ROOT / "addon" / "rtproxy_mitm").glob("*.py"))
OPTIONS = set(re.findall(r'name="(rt_[a-z_]+)"', ADDON_SOURCES))


def test_every_finding_code_is_in_the_readme_table():
    """The row says exactly what the rule says: code, severity, what the client sees, fix."""
    for r in RULES:
        assert f"| `{r.code}` | {r.severity} | {r.explains} | {r.fix} |" in README, r.code


def test_every_fault_is_documented():
    for name in FAULTS:
        assert f"| `{name}" in README, name


def test_options_match():
    assert OPTIONS, "no options found in the addon sources"
    documented = set(re.findall(r"^\| `(rt_[a-z_]+)` \|", README, re.MULTILINE))
    assert documented == OPTIONS
