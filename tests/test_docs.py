"""The README stays true to the code: every finding code, fault and rt_* option is documented (the rules
and faults tables word for word), and every option the README documents exists."""

import re

from conftest import ROOT
from rtproxy_core.faults import FAULTS, readme_table
from rtproxy_core.rules import RULES, RULES_BY_CODE

README = (ROOT / "README.md").read_text()
ADDON_SOURCES = "\n".join(p.read_text() for p in (ROOT / "addon" / "rtproxy_mitm").glob("*.py"))
OPTIONS = set(re.findall(r'name="(rt_[a-z_]+)"', ADDON_SOURCES))


def test_every_finding_code_is_in_the_readme_table():
    """The row says exactly what the rule says: code, severity, what the client sees, fix."""
    for r in RULES:
        assert f"| `{r.code}` | {r.severity} | {r.explains} | {r.fix} |" in README, r.code


def test_faults_table_is_the_registry():
    """The "Faults" section's rows say exactly what each registered fault says, in registry order: fault,
    what it does, client sees, finding."""
    section = README.split("\n## Faults", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    for f in FAULTS.values():
        assert f.readme_row in rows, f.name
    assert rows == readme_table().splitlines()


def test_every_fault_names_real_findings():
    for f in FAULTS.values():
        assert f.finding in RULES_BY_CODE, f.name
        for code in re.findall(r"`([a-z]+(?:-[a-z]+)+)`", f.finding_note):  # other findings it names
            assert code in RULES_BY_CODE, (f.name, code)


def test_options_match():
    assert OPTIONS, "no options found in the addon sources"
    documented = set(re.findall(r"^\| `(rt_[a-z_]+)` \|", README, re.MULTILINE))
    assert documented == OPTIONS


def test_rtprobe_table_is_the_checks():
    """The rtprobe section's rows are its checks, in order: check, what it verifies, finding (a rule's code)."""
    from rtproxy_tools.probe import CHECKS
    from rtproxy_tools.probe import readme_table as rtprobe_table

    section = README.split("\n## Probe a deployed relay: `rtprobe`", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert rows == rtprobe_table().splitlines()
    for c in CHECKS:
        assert c.code in RULES_BY_CODE, c.name
        assert f"| `{c.name}` | {c.verifies} | `{c.code}` |" in rows, c.name
