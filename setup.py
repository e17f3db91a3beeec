"""The one build step pyproject.toml cannot say: the Worker's sources go into the wheel as package data.

rtworker runs the corrected Worker and its fixtures, its own runtime Workers and npm's package.json from
the repository's worker/ (and `rtworker check` realtime-js's client from tests/node/); an installed
rtproxy has no repository, so the wheel carries a copy at rtproxy_tools/data/worker and data/node
(workerbase.py looks there when rtproxy does not run from a checkout). Copied at build time, not kept
twice in git; MANIFEST.in puts the same files in the sdist, which `python -m build` builds the wheel from.
Everything else is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# (the repository's folder, the files, where in the package); keep MANIFEST.in in step.
DATA = (
    (
        "worker",
        (
            "src/*.js",
            "fixtures/*.js",
            "runtime/*.js",
            "wrangler.toml",
            "package.json",
            "package-lock.json",
        ),
        "rtproxy_tools/data/worker",
    ),
    ("tests/node", ("client.mjs", "package.json", "package-lock.json"), "rtproxy_tools/data/node"),
)


def data_files() -> list[tuple[Path, str]]:
    """(source file, its path in the wheel) for every file DATA names; a pattern that matches nothing is
    an error (a wheel without the Worker would install and fail later)."""
    out = []
    for folder, patterns, dest in DATA:
        for pattern in patterns:
            found = sorted((HERE / folder).glob(pattern))
            if not found:
                raise FileNotFoundError(f"setup.py: nothing matches {folder}/{pattern}")
            out += [(f, f"{dest}/{f.relative_to(HERE / folder).as_posix()}") for f in found]
    return out


class BuildPyWithWorker(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install runs from the checkout, worker/ and all
            return
        for src, rel in data_files():
            target = Path(self.build_lib) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if self.editable_mode:
            return outputs
        return outputs + [str(Path(self.build_lib) / rel) for _, rel in data_files()]


setup(cmdclass={"build_py": BuildPyWithWorker})
