#!/usr/bin/env python3
"""Writes the README's reference tables from the registries they document, so a new rule, leg rule, fault,
rtprobe check or rt.* command is one module plus its test: run this, and the README says it.

    .venv/bin/python scripts/tables.py           # rewrite the tables in README.md
    .venv/bin/python scripts/tables.py --check   # exit 1 and name each table that is out of date

Each table stands right after a marker line `<!-- table: NAME -->` in README.md; the table is the run of
lines starting with `|` that follows it. tests/test_docs.py runs the check.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This checkout's registries, whichever checkout .venv's editable install points at.
sys.path.insert(0, str(ROOT / "addon"))
README = ROOT / "README.md"
MARKER = re.compile(r"^<!-- table: ([a-z-]+) -->$", re.MULTILINE)


def tables() -> dict[str, Callable[[], str]]:
    """Each table's name and the function that writes it, from the registry it documents."""
    from rtproxy_core import faults, legs, rules
    from rtproxy_mitm import commands
    from rtproxy_tools import probe

    return {
        "findings": lambda: rules.rules_table(rules.RULES),  # rtproxy_core/rules (engine.ORDER)
        "hop-findings": legs.readme_table,  # rtproxy_core/legs/rules.py
        "faults": faults.readme_table,  # rtproxy_core/faults.py
        "rtprobe-checks": probe.readme_table,  # rtproxy_tools/probe/checks.py
        "live-commands": commands.readme_table,  # rtproxy_mitm/commands.py (signatures and docstrings)
    }


def update(text: str) -> tuple[str, list[str]]:
    """`text` with every marked table written anew, and the names of the tables that changed. A marker
    naming no table, or a table with no marker, raises ValueError."""
    writers = tables()
    found = MARKER.findall(text)
    unknown = sorted(set(found) - writers.keys())
    missing = sorted(writers.keys() - set(found))
    if unknown or missing:
        raise ValueError(f"README markers: unknown {unknown}, missing {missing}")
    lines = text.split("\n")
    out: list[str] = []
    changed: list[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        m = MARKER.match(lines[i])
        i += 1
        if m is None:
            continue
        start = i
        while i < len(lines) and lines[i].startswith("|"):
            i += 1
        new = writers[m[1]]().split("\n")
        if lines[start:i] != new:
            changed.append(m[1])
        out.extend(new)
    return "\n".join(out), changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is out of date")
    args = ap.parse_args(argv)
    text = README.read_text()
    try:
        new, changed = update(text)
    except ValueError as e:
        print(f"tables.py: {e}", file=sys.stderr)
        return 2
    if args.check:
        for name in changed:
            print(f"README.md: the {name} table is out of date: run scripts/tables.py", file=sys.stderr)
        return 1 if changed else 0
    if new != text:
        README.write_text(new)
    print(f"README.md: {', '.join(changed) or 'no table'} rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
