"""The README stays true to the code: its reference tables are the registries (scripts/tables.py writes
them), every rt_* option is documented, and every option the README documents exists."""

import importlib.util
import re

import pytest
from conftest import ROOT
from rtproxy_core.faults import FAULTS
from rtproxy_core.rules import RULES, RULES_BY_CODE

README = (ROOT / "README.md").read_text()
_spec = importlib.util.spec_from_file_location("tables", ROOT / "scripts" / "tables.py")
assert _spec is not None and _spec.loader is not None
tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tables)
ADDON_SOURCES = "\n".join(p.read_text() for p in (ROOT / "addon" / "rtproxy_mitm").glob("*.py"))
OPTIONS = set(re.findall(r'name="(rt_[a-z_]+)"', ADDON_SOURCES))


def test_the_readme_tables_are_the_registries():
    """The findings, hop findings, faults and rtprobe tables are what scripts/tables.py writes from the
    registries, word for word and in order (run it after changing a rule, fault or check)."""
    new, changed = tables.update(README)
    assert changed == [] and new == README


def test_a_stale_table_is_named():
    stale = README.replace(f"| `{RULES[0].code}` |", "| `renamed` |", 1)
    assert tables.update(stale)[1] == ["findings"]
    with pytest.raises(ValueError, match="missing"):
        tables.update(README.replace("<!-- table: faults -->", ""))


def test_every_fault_names_real_findings():
    for f in FAULTS.values():
        assert f.finding in RULES_BY_CODE, f.name
        for code in re.findall(r"`([a-z]+(?:-[a-z]+)+)`", f.finding_note):  # other findings it names
            assert code in RULES_BY_CODE, (f.name, code)


def test_options_match():
    assert OPTIONS, "no options found in the addon sources"
    documented = set(re.findall(r"^\| `(rt_[a-z_]+)` \|", README, re.MULTILINE))
    assert documented == OPTIONS


def test_every_rtprobe_check_names_a_rule():
    from rtproxy_tools.probe import CHECKS

    for c in CHECKS:
        assert c.code in RULES_BY_CODE, c.name
