"""The documentation site stays true to the code: its reference tables are the registries (scripts/tables.py
renders them into docs/reference/ at build time), every rt_* option is documented, every option it documents
exists, the nav holds every page, and the README carries none of the tables."""

import importlib.util
import re
from pathlib import Path

import pytest
from conftest import ROOT
from rtproxy_core.faults import FAULTS
from rtproxy_core.rules import ORDER, RULES_BY_CODE

DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()
_spec = importlib.util.spec_from_file_location("tables", ROOT / "scripts" / "tables.py")
assert _spec is not None and _spec.loader is not None
tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tables)
ADDON_SOURCES = "\n".join(p.read_text() for p in (ROOT / "addon" / "rtproxy_mitm").glob("*.py"))
OPTIONS = set(re.findall(r'name="(rt_[a-z_]+)"', ADDON_SOURCES))


def rendered(page: str) -> str:
    """A docs page as the site builds it: its table markers replaced by the tables (mkdocs.yml's hook)."""
    return tables.render((DOCS / page).read_text())


def codes_in(text: str) -> list[str]:
    """The first cell of each table row, in order: `| \\`code\\` | ...`."""
    return re.findall(r"^\| `([^`]+)` \|", text, re.MULTILINE)


def test_every_table_is_on_one_page_and_every_marker_names_one():
    assert tables.check() == []
    assert set(tables.pages()) == set(tables.tables())


def test_a_missing_table_or_a_bad_marker_is_named(tmp_path):
    with pytest.raises(ValueError, match="no table 'nope'"):
        tables.render("<!-- table: nope -->")
    (tmp_path / "a.md").write_text("<!-- table: faults -->\n<!-- table: nope -->\n")
    (tmp_path / "b.md").write_text("<!-- table: faults -->\n")
    problems = tables.check(tmp_path)
    assert "a.md: no table 'nope'" in problems
    assert "the faults table is on 2 pages: a.md, b.md" in problems
    assert "the findings table is on no page: add `<!-- table: findings -->`" in problems


def test_the_findings_page_lists_every_rule_in_order_and_every_hop_rule():
    from rtproxy_core import legs

    page = rendered("reference/findings.md")
    assert "<!-- table:" not in page
    assert codes_in(page) == [*ORDER, *(r.code for r in legs.LEG_RULES)]


def test_the_faults_probe_and_command_pages_are_their_registries():
    from rtproxy_mitm.commands import LiveCommands
    from rtproxy_tools.probe import CHECKS

    assert codes_in(rendered("reference/faults.md")) == [f.usage for f in FAULTS.values()]
    assert codes_in(rendered("reference/probe-checks.md")) == [c.name for c in CHECKS]
    commands = [c.split()[0] for c in codes_in(rendered("reference/commands.md")) if c.startswith("rt.")]
    declared = [f.command_name for f in vars(LiveCommands).values() if hasattr(f, "command_name")]
    assert commands == declared


def test_options_match():
    assert OPTIONS, "no options found in the addon sources"
    documented = set(re.findall(r"^\| `(rt_[a-z_]+)` \|", rendered("reference/options.md"), re.MULTILINE))
    assert documented == OPTIONS


def test_the_readme_carries_no_reference_table():
    assert "<!-- table:" not in README
    rows = set(codes_in(README))
    assert not rows & (set(RULES_BY_CODE) | set(FAULTS) | OPTIONS), "a reference table is pasted in README.md"


def test_the_nav_holds_every_page_and_only_pages_that_exist():
    nav = re.findall(r"^\s+- (?:[^:\n]+: )?(\S+\.md)$", (ROOT / "mkdocs.yml").read_text(), re.MULTILINE)
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages and len(nav) == len(set(nav))


def test_mkdocs_loads_the_tables_hook_and_test_sh_builds_strict():
    config = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"^hooks:\n  - scripts/tables.py$", config, re.MULTILINE)
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert 'mkdocs" build --strict' in script
    assert Path(ROOT / "scripts" / "docs.sh").read_text().count('mkdocs" serve -a 127.0.0.1:8000') == 1


def test_every_fault_names_real_findings():
    for f in FAULTS.values():
        assert f.finding in RULES_BY_CODE, f.name
        for code in re.findall(r"`([a-z]+(?:-[a-z]+)+)`", f.finding_note):  # other findings it names
            assert code in RULES_BY_CODE, (f.name, code)


def test_every_rtprobe_check_names_a_rule():
    from rtproxy_tools.probe import CHECKS

    for c in CHECKS:
        assert c.code in RULES_BY_CODE, c.name
