"""CONTRIBUTING.md is true: every path it cites exists, every name it cites is found in the files its
section cites, the commands it gives run, and the finding-rule and fault recipes, followed literally in a
copy of addon/ (their examples taken from the document), register, evaluate and show in the site's
tables, as the document says. Subprocesses import only; nothing listens."""

from __future__ import annotations

import ast
import builtins
import importlib
import json
import keyword
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from conftest import ROOT

DOC = ROOT / "CONTRIBUTING.md"
ADDON = ROOT / "addon"
RECIPES = [
    "Add a finding rule",
    "Add a leg rule",
    "Add a fault",
    "Add a capture format",
    "Add a command-line tool",
    "Add an `rt.*` command",
    "Add a catalog string",
]

# ------------------------------------------------------------------------------------ the document


@dataclass
class Section:
    heading: str
    text: str  # the prose, fenced blocks left out
    fences: list[tuple[str, str]] = field(default_factory=list)  # (language, code)


def sections(doc: str) -> list[Section]:
    """The document split at every heading; each section's prose and its fenced blocks."""
    out = [Section("", "")]
    fence: tuple[str, list[str]] | None = None
    for line in doc.split("\n"):
        if fence is not None:
            if line.startswith("```"):
                out[-1].fences.append((fence[0], "\n".join(fence[1])))
                fence = None
            else:
                fence[1].append(line)
        elif line.startswith("```"):
            fence = (line[3:].strip(), [])
        elif line.startswith("#"):
            out.append(Section(line.lstrip("#").strip(), ""))
        else:
            out[-1].text += line + "\n"
    assert fence is None, "a fenced block is not closed"
    return out


def section(title: str, doc: str | None = None) -> Section:
    found = [s for s in sections(DOC.read_text() if doc is None else doc) if s.heading == title]
    assert len(found) == 1, f"CONTRIBUTING.md has {len(found)} sections {title!r}"
    return found[0]


def tokens(text: str) -> list[str]:
    """The text of every inline code span, its whitespace made single spaces."""
    return [" ".join(t.split()) for t in re.findall(r"`([^`]+)`", text)]


# ------------------------------------------------------------------------------------- resolving

PATH_EXT = re.compile(r"\.(py|md|toml|sh|json|js|mjs)$")
CODE = re.compile(r"^(@?[A-Za-z_][\w.]*(\(.*\))?( -> .+)?=?|\(.*\) -> .+)$")
IDENT = re.compile(r"[A-Za-z_]\w*")


def is_path(tok: str) -> bool:
    return " " not in tok and ("/" in tok or bool(PATH_EXT.search(tok.split("::")[0])) or tok == ".venv")


def is_command(tok: str) -> bool:
    return " " in tok and ("/" in tok.split()[0] or tok.split()[0] == "export")


@dataclass
class Names:
    """What one Python file defines or imports, anywhere in it."""

    defined: set[str] = field(default_factory=set)  # functions, classes, assigned names, parameters
    strings: set[str] = field(default_factory=set)  # string literals that are one name ("rt_legs")
    imported: dict[str, str] = field(default_factory=dict)  # local name -> what it is ("pkg.mod.name")
    members: dict[str, set[str]] = field(default_factory=dict)  # class -> its methods and fields


def _module_of(path: Path) -> str | None:
    try:
        rel = path.relative_to(ADDON)
    except ValueError:
        return None
    parts = rel.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def names_in(path: Path) -> Names:
    tree = ast.parse(path.read_text(), str(path))
    n = Names()
    package = _module_of(path)
    if package is not None and path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            n.defined.add(node.name)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            n.defined.update(x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if x)
        elif isinstance(node, ast.ClassDef):
            members = n.members.setdefault(node.name, set())
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    members.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members.add(item.target.id)
                elif isinstance(item, ast.Assign):
                    members.update(t.id for t in item.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            n.defined.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            n.strings.add(node.value)
        elif isinstance(node, ast.Import):
            for a in node.names:
                local = a.asname or a.name.split(".")[0]
                n.imported[local] = a.name if a.asname else local
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = (package or "").split(".")
                up = up[: len(up) - (node.level - 1)] if node.level > 1 else up
                base = ".".join(p for p in [*up, base] if p)
            for a in node.names:
                n.imported[a.asname or a.name] = f"{base}.{a.name}"
                n.imported.setdefault(base.split(".")[0], base.split(".")[0])
    return n


def _load(dotted: str) -> object:
    """The object a dotted name names: a module, or an attribute of the longest module prefix."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for p in parts[i:]:
            obj = getattr(obj, p)
        return obj
    raise ImportError(dotted)


def resolves(name: str, files: list[Path]) -> bool:
    """Is `name` (an identifier or a dotted name) defined in one of these files? A dotted name resolves
    through a class of theirs, a module they import, or a file of theirs named by its first part."""
    py = [f for f in files if f.suffix == ".py"]
    head, *rest = name.split(".")
    if not rest:
        return (
            keyword.iskeyword(name)
            or hasattr(builtins, name)
            or any(name in (n := names_in(f)).defined | n.strings or name in n.imported for f in py)
        )
    for f in py:
        n = names_in(f)
        if head in n.members and rest[0] in n.members[head]:
            return True
        if head in n.imported:
            try:
                obj = _load(n.imported[head])
                for p in rest:
                    obj = getattr(obj, p)
                return True
            except (ImportError, AttributeError):
                pass
        if head in (f.stem, f.parent.name if f.name == "__init__.py" else "") and rest[0] in n.defined:
            return True
    return False


def check_node(word: str) -> str | None:
    """A path, or a pytest node id (`file::test[param]`): None if it exists, else why not."""
    path, _, node = word.partition("::")
    if not (ROOT / path).exists():
        return f"no such path: {path}"
    if node:
        test, _, param = node.partition("[")
        if test not in names_in(ROOT / path).defined:
            return f"no {test} in {path}"
        if param and param.rstrip("]") not in (ROOT / path).read_text():
            return f"no parameter {param.rstrip(']')} in {path}"
    return None


def problems(sec: Section) -> list[str]:
    """What the section cites that does not exist: paths, commands' paths, names, quoted text."""
    out: list[str] = []
    toks = tokens(sec.text)
    paths = [t for t in toks if is_path(t) and "/" in t]
    dirs = {ROOT} | {ROOT / p for p in paths if (ROOT / p).is_dir()} | {(ROOT / p).parent for p in paths}
    files: list[Path] = []
    for t in (t for t in toks if is_path(t)):
        if "/" in t or t == ".venv":
            if why := check_node(t):
                out.append(why)
            elif (ROOT / t.split("::")[0]).is_file():
                files.append(ROOT / t.split("::")[0])
            continue
        where = [d / t for d in dirs if (d / t).is_file()]  # a bare file name: in a folder cited here
        if not where:
            out.append(f"no {t} in the folders this section cites")
        files.extend(where)
    texts = [f.read_text() for f in files]
    for t in toks:
        if is_path(t):
            continue
        if is_command(t):
            out += [why for w in shlex.split(t) if "/" in w and "$" not in w if (why := check_node(w))]
        elif CODE.match(t):
            head = re.match(r"@?([\w.]*)", t)[1]
            if head and not (resolves(head, files) or "." in head and any(head in x for x in texts)):
                out.append(f"{head} is in none of {[str(f.relative_to(ROOT)) for f in files]}")
            inner = t[len(head) + (t[0] == "@") :]  # a call's or a signature's names: parameters, types
            out += [
                f"{w} (in {t}) is in none of the section's files"
                for w in IDENT.findall(inner)
                if not resolves(w, files)
            ]
        elif not any(t in x for x in texts):
            out.append(f"{t!r} is not in {[str(f.relative_to(ROOT)) for f in files]}")
    return out


# ---------------------------------------------------------------------------- citations and commands


def test_the_document_has_every_recipe_and_the_readme_links_it():
    headings = [s.heading for s in sections(DOC.read_text())]
    assert [h for h in headings if h.startswith("Add ")] == RECIPES
    assert "(CONTRIBUTING.md)" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("title", [s.heading for s in sections(DOC.read_text()) if s.heading])
def test_every_path_and_name_a_section_cites_exists(title):
    assert problems(section(title)) == []


@pytest.mark.parametrize("title", RECIPES)
def test_each_recipe_step_starts_with_the_file_to_touch(title):
    steps = re.findall(r"^\d+\. (.*)$", section(title).text, re.MULTILINE)
    assert steps, title
    for step in steps:
        first = tokens(step)[0] if tokens(step) else ""
        assert step.startswith(f"`{first}`") and is_path(first) and (ROOT / first).exists(), step


def test_the_checker_notices_what_does_not_exist():
    doc = (
        "### Made up\n\n1. `addon/rtproxy_core/faults.py`: `@fault` and `FAULTS`, `FaultPlan.on_frame`,\n"
        "`addon/rtproxy_core/nowhere.py`, `@faultz`, `FaultPlan.on_frames`, `nowhere.py`,\n"
        "`(p: Pair) -> Iterator[str]`, `drop-leaves`, `.venv/bin/python -m pytest tests/test_faults.py::nope`\n"
    )
    assert problems(section("Made up", doc)) == [
        "no such path: addon/rtproxy_core/nowhere.py",
        "no nowhere.py in the folders this section cites",
        "faultz is in none of ['addon/rtproxy_core/faults.py']",
        "FaultPlan.on_frames is in none of ['addon/rtproxy_core/faults.py']",
        "Pair (in (p: Pair) -> Iterator[str]) is in none of the section's files",
        "Iterator (in (p: Pair) -> Iterator[str]) is in none of the section's files",
        "'drop-leaves' is not in ['addon/rtproxy_core/faults.py']",
        "no nope in tests/test_faults.py",
    ]


def test_the_shell_commands_name_what_exists():
    """Every command of a bash block: its program is a file here, and each path and test it names exists."""
    lines = [
        line.split("  #")[0]
        for s in sections(DOC.read_text())
        for lang, code in s.fences
        if lang == "bash"
        for line in code.split("\n")
        if line.strip()
    ]
    assert len(lines) >= 6
    for line in lines:
        for command in line.split("&&"):
            words = shlex.split(command)
            assert (ROOT / words[0]).is_file() and os.access(ROOT / words[0], os.X_OK), line
            assert [why for w in words if "/" in w if (why := check_node(w))] == [], line


def test_test_sh_runs_ruff_mypy_mkdocs_then_pytest_with_the_arguments():
    script = (ROOT / "scripts" / "test.sh").read_text()
    words = (
        '/.venv/bin/ruff" check',
        '/.venv/bin/mypy"',
        '/.venv/bin/mkdocs" build --strict',
        '-m pytest "$@"',
    )
    ruff, mypy, docs, pytest_ = (script.index(w) for w in words)
    assert ruff < mypy < docs < pytest_  # lint, types, the documentation site, then the tests


def test_tables_check_passes_on_this_tree():
    r = run([str(ROOT / "scripts" / "tables.py"), "--check"], ROOT)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr


# ------------------------------------------------------------------------- the recipes, followed


def run(args: list[str], root: Path) -> subprocess.CompletedProcess[str]:
    """Python with `root`/addon first on the path (the .venv's editable install may name another tree)."""
    env = {**os.environ, "PYTHONPATH": str(root / "addon"), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def copy_tree(tmp: Path) -> Path:
    """addon/, scripts/ and docs/'s pages, as tables.py finds docs/ from its own place."""
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ADDON, tmp / "addon", ignore=ignore)
    shutil.copytree(ROOT / "scripts", tmp / "scripts", ignore=ignore)
    shutil.copytree(ROOT / "docs", tmp / "docs", ignore=shutil.ignore_patterns("*.png"))
    return tmp


def python_blocks(title: str) -> list[str]:
    return [code for lang, code in section(title).fences if lang == "python"]


def at_anchor(path: Path, block: str) -> None:
    """A block that shows where its new lines go: the last of its lines that the file has (once) is the
    anchor, and the lines after it go after it."""
    text = path.read_text()
    lines = block.split("\n")
    at = max(i for i, line in enumerate(lines) if line + "\n" in text)
    anchor = lines[at] + "\n"
    assert text.count(anchor) == 1 and lines[at + 1 :], (path.name, anchor)
    path.write_text(text.replace(anchor, anchor + "\n".join(lines[at + 1 :]) + "\n"))


def add_rule(tmp: Path, order: bool = True) -> str:
    """The finding-rule recipe's example: the function in channels.py, the code in engine.ORDER."""
    function, order_lines = python_blocks("Add a finding rule")
    rules = tmp / "addon" / "rtproxy_core" / "rules"
    with (rules / "channels.py").open("a") as f:
        f.write("\n\n" + function + "\n")
    if order:
        at_anchor(rules / "engine.py", order_lines)
    return re.search(r'@rule\(\s*"([a-z-]+)"', function)[1]


EVALUATE = """
import json, sys
import rtproxy_core
from rtproxy_core.diagnosis import Diagnoser
from rtproxy_core.events import Closed, Frame, Handshake, Opened
from rtproxy_core.rules import ORDER, RULES_BY_CODE
from rtproxy_core.session import Session

T, OK = 1.8e9, {"status": "ok", "response": {}}
def v2(join_ref, ref, event, payload, client, t):
    data = json.dumps([join_ref, ref, "realtime:room", event, payload]).encode()
    return Frame(client, False, data, T + t)

s = Session("c")
for e in [
    Opened("wss://abc.supabase.co/realtime/v1/websocket?apikey=k&vsn=2.0.0", [], T),
    Handshake(101, [], b"", T + 0.01),
    v2("1", "1", "phx_join", {"config": {}}, True, 0.1),
    v2("1", "1", "phx_reply", OK, False, 0.2),
    v2("1", "2", "phx_leave", {}, True, 1.0),
    v2("1", "2", "phx_reply", OK, False, 1.1),
    v2("1", "1", "phx_close", {}, False, 1.2),
    Closed(1000, "", True, T + 2),
]:
    s.feed(e)
code = sys.argv[1]
print(json.dumps({
    "from": rtproxy_core.__file__,
    "order": list(ORDER),
    "severity": str(RULES_BY_CODE[code].severity),
    "found": [[f.code, f.topic, f.evidence] for f in Diagnoser().end(s)],
}))
"""


def test_the_finding_rule_recipe_registers_evaluates_and_tables_follow(tmp_path):
    tmp = copy_tree(tmp_path)
    code = add_rule(tmp)
    r = run(["-c", EVALUATE, code], tmp)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["from"] == str(tmp / "addon" / "rtproxy_core" / "__init__.py")
    order = got["order"]
    assert order[order.index("left-after-join") + 1] == code and got["severity"] == "info"
    assert [code, "realtime:room", "realtime:room closed"] in got["found"]

    # Nothing to run: the findings table, as the site builds it, has the row in ORDER; the pages are as good.
    table = run(["scripts/tables.py", "findings"], tmp)
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.split("\n") if line.startswith("| `")]
    at = rows.index(f"| `{code}` | info | nothing: an example | Nothing to fix. |")
    assert rows[at - 1].startswith("| `left-after-join` |")
    assert run(["scripts/tables.py", "--check"], tmp).returncode == 0


def test_a_rule_missing_from_order_stops_the_import_naming_it(tmp_path):
    code = add_rule(copy_tree(tmp_path), order=False)
    r = run(["-c", "import rtproxy_core.rules"], tmp_path)
    assert r.returncode == 1
    text = " ".join(section("Add a finding rule").text.split())
    said = re.search(r'`RuntimeError` saying "(ORDER must [^"]*)\[\.\.\.\]\)"', text)
    assert said, "the recipe quotes the error"
    assert f"RuntimeError: {said[1]}['{code}'])" in r.stderr.splitlines()[-1]


def test_the_fault_recipe_registers_decides_and_the_faults_table_shows_it(tmp_path):
    spec_field, function, on_frame = python_blocks("Add a fault")
    tmp = copy_tree(tmp_path)
    faults = tmp / "addon" / "rtproxy_core" / "faults.py"
    at_anchor(faults, spec_field)
    text = faults.read_text()
    faults.write_text(text.replace("\n\ndef parse_faults(", "\n\n" + function + "\n\n\ndef parse_faults(", 1))
    at_anchor(faults, on_frame)
    name = re.search(r'@fault\(\s*"([a-z-]+)"', function)[1]
    script = f"""
import json
from rtproxy_core import faults
from rtproxy_core.rules import RULES_BY_CODE
name = {name!r}
assert list(faults.FAULTS)[-1] == name and faults.FAULTS[name].finding in RULES_BY_CODE
assert name in faults.help_text() and f"| `{{name}}` |" in faults.readme_table()
push = json.dumps(["1", "3", "realtime:room", "access_token", {{"access_token": "x"}}]).encode()
join = json.dumps(["1", "1", "realtime:room", "phx_join", {{}}]).encode()
on = faults.FaultPlan(faults.parse_faults(name), "2.0.0")
off = faults.FaultPlan(faults.parse_faults(""), "2.0.0")
assert on.on_frame(True, False, push).drop and on.on_frame(True, False, push).note
assert not on.on_frame(True, False, join).drop and not off.on_frame(True, False, push).drop
"""
    r = run(["-c", script], tmp)
    assert r.returncode == 0, r.stderr
    table = run(["scripts/tables.py", "faults"], tmp)
    assert table.returncode == 0 and f"| `{name}` |" in table.stdout, table.stderr
