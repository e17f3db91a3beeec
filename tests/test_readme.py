"""README.md is short and true from a fresh clone: at most 10 KB; every link it has leads to a file (and a
heading) that exists; every command in its bash blocks is a script here, a command this project installs
([project.scripts]) or mitmproxy's, given only options its `--help` lists, `rt_*` options that exist and
repository files that exist; the offline command it shows runs; its mitmweb command is the walkthrough's,
which tests/browser/test_mitmweb.py runs. Each program's --help runs once."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from functools import cache

import pytest
from conftest import BIN, ROOT

README = (ROOT / "README.md").read_text()
SCRIPTS = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
MITMPROXY = {"mitmdump", "mitmweb"}
SUBCOMMANDS = {"rtworker": {"check"}}
PASS_THROUGH = {"scripts/run.sh": "rtproxy"}  # its arguments go to rtproxy
OPTIONS = set(
    re.findall(r'name="(rt_[a-z_]+)"', "\n".join(p.read_text() for p in (ROOT / "addon").rglob("*.py")))
)


def bash_lines(text: str) -> list[str]:
    """Each command line of the ```bash blocks, continuation lines joined."""
    blocks = re.findall(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    return [line for b in blocks for line in b.replace("\\\n", " ").split("\n") if line.strip()]


def commands(line: str) -> list[list[str]]:
    """The simple commands of a line: split at && || | ; &, and each $(...) inside a word as one more."""
    out: list[list[str]] = [[]]
    for word in shlex.split(line, comments=True):
        if word in {"&&", "||", "|", ";", "&"}:
            out.append([])
            continue
        for inner in re.findall(r"\$\(([^)]*)\)", word):
            out.extend(commands(inner))
        out[-1].append(word)
    return [c for c in out if c]


def program(words: list[str]) -> tuple[str, list[str]]:
    """The program a command runs, as named here (a command, or a script path), and its arguments."""
    name = words[0].removeprefix(".venv/bin/")
    return name, words[1:]


@cache
def help_text(name: str, sub: str | None) -> str:
    exe = str(BIN / name)
    r = subprocess.run(
        [exe, *([sub] if sub else []), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    # mitmproxy's tools exit 1 after their help; every other command 0
    assert r.returncode in ((0, 1) if name in MITMPROXY else (0,)) and "usage:" in r.stdout, (
        name,
        sub,
        r.stderr,
    )
    return r.stdout


def uses() -> list[tuple[str, str | None, str]]:
    """(program, subcommand, option) for every option given to a command README shows."""
    out = []
    for line in bash_lines(README):
        for words in commands(line):
            name, args = program(words)
            target = PASS_THROUGH.get(name, name)
            if target not in SCRIPTS | MITMPROXY:
                continue
            sub = args[0] if args and args[0] in SUBCOMMANDS.get(target, ()) else None
            out += [(target, sub, a.split("=")[0]) for a in args if a.startswith("-")]
    return sorted(set(out), key=str)


def test_the_readme_is_short():
    assert len(README.encode()) <= 10_000


def test_every_program_is_here_or_installed_and_every_path_exists():
    seen = set()
    for line in bash_lines(README):
        for words in commands(line):
            name, args = program(words)
            seen.add(name)
            if name == "pipx":  # its own command: only what it installs is this project's
                assert args[0] in {"install", "inject"}, line
                continue
            if "/" in name:
                assert (ROOT / name).is_file() and (ROOT / name).stat().st_mode & 0o111, line
            else:
                assert name in SCRIPTS | MITMPROXY, (
                    f"{name}: not a command this project or mitmproxy installs"
                )
                assert (BIN / name).is_file(), name
            for a in args:
                if re.match(r"(examples|addon|scripts|docs|worker|tests)/", a):
                    assert (ROOT / a).exists(), (line, a)
    assert {"scripts/run.sh", "scripts/test.sh", "rtdiagnose", "rtreplay", "rtworker", "rtprobe"} <= seen


def test_every_set_names_an_option():
    for line in bash_lines(README):
        for words in commands(line):
            for i, w in enumerate(words[:-1]):
                if w == "--set":
                    name = words[i + 1].split("=")[0]
                    assert name in OPTIONS, (line, name)


@pytest.mark.parametrize(
    ("name", "sub", "option"),
    [pytest.param(*u, id=" ".join(filter(None, u))) for u in uses()],
)
def test_every_option_is_in_the_commands_help(name, sub, option):
    assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_text(name, sub)), (name, sub, option)


def test_the_offline_command_runs_as_shown():
    """`rtdiagnose examples/expired-token.har`: the finding the README promises, exit 1 (an error finding)."""
    [line] = [x for x in bash_lines(README) if "rtdiagnose" in x]
    words = shlex.split(line, comments=True)
    r = subprocess.run(
        [str(BIN / "rtdiagnose"), *words[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 1 and "[error] token-expired realtime:orders" in r.stdout, r.stdout + r.stderr


def test_the_mitmweb_command_is_the_walkthroughs():
    """README's mitmweb command is the block tests/browser/test_mitmweb.py runs (docs/mitmweb.md)."""
    walkthrough = (ROOT / "docs" / "mitmweb.md").read_text()
    block = walkthrough[walkthrough.index("<!-- mitmweb-command:") :].split("```bash\n", 1)[1].split("```")[0]
    mine = [line for line in bash_lines(README) if line.startswith(".venv/bin/mitmweb")]
    assert mine == bash_lines(f"```bash\n{block}```\n")


def slug(heading: str) -> str:
    """A heading's anchor, as MkDocs (Python-Markdown's toc) and GitHub make it for these headings."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[\s-]+", "-", text)


def test_every_link_leads_somewhere():
    links = re.findall(r"\]\(([^)\s]+)\)", README)
    assert len(links) >= 20
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        path, _, anchor = link.partition("#")
        assert (ROOT / path).exists(), link
        if anchor:
            headings = re.findall(r"^#+ (.*)$", (ROOT / path).read_text(), re.MULTILINE)
            assert anchor in {slug(h) for h in headings}, link


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
