#!/usr/bin/env python3
"""The documentation site's reference tables, written from the registries they document when the site is
built, so a new rule, leg rule, fault, option, rtprobe check or rt.* command is one module plus its test: the
site says it, and nothing is pasted anywhere.

    .venv/bin/python scripts/tables.py            # each table and the page that shows it
    .venv/bin/python scripts/tables.py findings   # print one table as the site renders it
    .venv/bin/python scripts/tables.py --check    # exit 1 naming a table no page shows, or a bad marker

A page shows a table with a marker line `<!-- table: NAME -->` (docs/reference/*.md); mkdocs.yml loads this
file as a hook, and `on_page_markdown` puts the table in the marker's place at build time. tests/test_docs.py
checks the rendered pages against the registries.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
# This checkout's registries, whichever checkout .venv's editable install points at.
sys.path.insert(0, str(ROOT / "addon"))
DOCS = ROOT / "docs"
MARKER = re.compile(r"^<!-- table: ([a-z-]+) -->$", re.MULTILINE)


def options_table() -> str:
    """Every rt_* option as its part declares it (`load`): name, default, the help `--options` prints."""
    from rtproxy_mitm import faults, legs, page, stalled, tracker, trim, worker

    declared: list[dict[str, Any]] = []

    class Loader:  # records what each part declares; the parts' load only declares options
        def add_option(self, **kw: Any) -> None:
            declared.append(kw)

    parts = (
        page.PageProbe,
        worker.Worker,
        tracker.Tracker,
        faults.Faults,
        trim.Trim,
        legs.Legs,
        stalled.HeaderLimits,
    )
    with mock.patch.dict(os.environ, clear=False) as env:
        env.pop("SUPABASE_URL", None)  # the default it would read: the site documents the variable instead
        for cls in parts:
            cls.load(object.__new__(cls), Loader())  # type: ignore[arg-type]

    def default(value: object) -> str:
        if isinstance(value, bool):
            return f"`{str(value).lower()}`"
        return f"`{value}`" if value != "" else "empty"

    rows = ["| option | default | what it does |", "|---|---|---|"]
    for o in declared:
        text = " ".join(o["help"].split()).replace("|", "\\|")
        rows.append(f"| `{o['name']}` | {default(o['default'])} | {text} |")
    return "\n".join(rows)


def tables() -> dict[str, Callable[[], str]]:
    """Each table's name and the function that writes it, from the registry it documents."""
    from rtproxy_core import faults, legs, rules
    from rtproxy_mitm import commands
    from rtproxy_tools import probe

    return {
        "findings": lambda: rules.rules_table(rules.RULES),  # rtproxy_core/rules (engine.ORDER)
        "hop-findings": legs.readme_table,  # rtproxy_core/legs/rules.py
        "faults": faults.readme_table,  # rtproxy_core/faults.py
        "options": options_table,  # the rt_* options, as rtproxy_mitm's parts declare them
        "rtprobe-checks": probe.readme_table,  # rtproxy_tools/probe/checks.py
        "live-commands": commands.readme_table,  # rtproxy_mitm/commands.py (signatures and docstrings)
    }


def _html_safe(line: str) -> str:
    """A table row as Markdown shows it: `<` outside code spans is text (`<ref>`), not an HTML tag."""
    parts = line.split("`")
    return "`".join(p.replace("<", "&lt;") if i % 2 == 0 else p for i, p in enumerate(parts))


def render(text: str) -> str:
    """`text` with each marker line replaced by its table; a marker naming no table raises ValueError."""
    writers = tables()

    def table(m: re.Match[str]) -> str:
        if m[1] not in writers:
            raise ValueError(f"no table {m[1]!r} (known: {', '.join(writers)})")
        return "\n".join(_html_safe(line) for line in writers[m[1]]().split("\n"))

    return MARKER.sub(table, text)


def pages(docs: Path = DOCS) -> dict[str, list[str]]:
    """Each marker's table name and the pages (relative to docs/) that show it."""
    out: dict[str, list[str]] = {}
    for path in sorted(docs.rglob("*.md")):
        for name in MARKER.findall(path.read_text()):
            out.setdefault(name, []).append(path.relative_to(docs).as_posix())
    return out


def check(docs: Path = DOCS) -> list[str]:
    """What is wrong with the markers: a table no page shows, one shown twice, a marker naming no table."""
    found = pages(docs)
    problems = [f"{', '.join(p)}: no table {n!r}" for n, p in found.items() if n not in tables()]
    problems += [
        f"the {n} table is on no page: add `<!-- table: {n} -->`" for n in tables() if n not in found
    ]
    problems += [
        f"the {n} table is on {len(p)} pages: {', '.join(p)}" for n, p in found.items() if len(p) > 1
    ]
    return problems


# ------------------------------------------------------------------------------ mkdocs hooks (mkdocs.yml)


def on_pre_build(config: Any) -> None:
    if problems := check(Path(config["docs_dir"])):
        from mkdocs.exceptions import PluginError

        raise PluginError("scripts/tables.py: " + "; ".join(problems))


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return render(markdown)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name", nargs="?", help="print this table, as the site renders it")
    ap.add_argument("--check", action="store_true", help="exit 1 if a table is on no page or a marker is bad")
    args = ap.parse_args(argv)
    if args.name:
        if args.name not in tables():
            print(f"tables.py: no table {args.name!r} (known: {', '.join(tables())})", file=sys.stderr)
            return 2
        print(render(f"<!-- table: {args.name} -->"))
        return 0
    problems = check()
    for p in problems:
        print(f"tables.py: {p}", file=sys.stderr)
    if not args.check:
        where = pages()
        for name in tables():
            print(f"{name}: docs/{', docs/'.join(where.get(name, ['(no page)']))}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
