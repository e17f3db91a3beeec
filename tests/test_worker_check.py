"""`rtworker check` on the fixture Workers of tests/workers/: one per defect class seen in users' Workers, in
the forms users write them (TypeScript project with wrangler.toml and imports, service-worker script, Pages
Function, dashboard one-file module), each with an expect.json naming the findings the check must report,
the wrong causes it must not name, and the source lines a static reading must point at.

Every check runs for real: the Worker bundled by esbuild (npm) and served by workerd (npm) in front of the
local Realtime server over TLS, rtprobe's checks and the real clients (realtime-py; realtime-js in Node)
through it. The checks run concurrently once per module (each has its own server and workerd), and the
tests read their reports.

Prerequisite: `npm ci` in worker/ and tests/node (scripts/test.sh runs it). Without workerd these tests
are skipped, except under CI (CI=true), where they fail.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from conftest import command, run_to_exit
from rtproxy_core.redact import Redactor
from rtproxy_local.jwt import dev_anon_key
from rtproxy_tools.probe import Scrubber
from rtproxy_tools.worker import WorkerError
from rtproxy_tools.workercheck import CheckReport, Options, run_check

# Without workerd or esbuild these skip (under CI: fail), as test_worker_projects does: importing it decides.
from test_worker_projects import MISSING, NO_ESBUILD

WORKERS = Path(__file__).parent / "workers"
FIXTURES = sorted(p.parent for p in (WORKERS / "defects").glob("*/expect.json"))
FORMS = sorted(p for p in (WORKERS / "forms").iterdir() if not p.name.startswith("."))
CORRECTED = Path(__file__).parent.parent / "worker"  # the corrected Worker, as a user would check it
# How each form users write runs in workerd (workerproject.WorkerProject.form).
RUNS_AS = {
    "ts-project": "module",
    "dashboard": "module",
    "service-worker": "service-worker",
    "pages": "pages",
}
PARALLEL = 4  # checks at once: each is a workerd, a server, a probe and two clients


def expect(fixture: Path) -> dict:
    return json.loads((fixture / "expect.json").read_text())


def target(fixture: Path) -> Path:
    """What a user would pass: the folder of a project, the file of a one-file Worker."""
    if fixture.is_file():
        return fixture
    files = [p for p in fixture.iterdir() if p.name != "expect.json"]
    if len(files) == 1 and files[0].is_file():
        return files[0]
    return fixture


@pytest.fixture(scope="module")
def reports() -> dict[Path, CheckReport | str]:
    if MISSING or NO_ESBUILD:
        pytest.fail(f"CI is set but workerd/esbuild cannot run: {MISSING or NO_ESBUILD}", pytrace=False)
    scrub = Scrubber(Redactor(False), dev_anon_key())

    async def all_checks() -> dict[Path, CheckReport | str]:
        gate = asyncio.Semaphore(PARALLEL)

        async def one(path: Path) -> CheckReport | str:
            async with gate:
                try:
                    return await run_check(target(path), Options(), scrub)
                except WorkerError as e:
                    return f"WorkerError: {e}"

        paths = [*FIXTURES, *FORMS, CORRECTED]
        return dict(zip(paths, await asyncio.gather(*(one(p) for p in paths)), strict=True))

    return asyncio.run(all_checks())


def codes(report: CheckReport | str) -> list[str]:
    assert isinstance(report, CheckReport), report
    return [v.code for v in report.verdicts]


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_verdict_names_the_defect_and_no_wrong_cause(fixture, reports):
    want, report = expect(fixture), reports[fixture]
    got = codes(report)
    assert isinstance(report, CheckReport)
    assert report.form == RUNS_AS[want["form"]], report.form
    for code in want["findings"]:
        assert code in got, (want["defect"], got, report.as_dict())
    for code in want.get("not", []):
        assert code not in got, (want["defect"], got, report.as_dict())
    if not want["findings"]:
        assert got == [], report.as_dict()
    assert (want.get("incomplete", "") in report.incomplete) and bool(report.incomplete) == (
        "incomplete" in want
    )
    for note in want.get("notes", []):
        assert any(note in n for n in report.notes), (note, report.notes)
    where = [w for v in report.verdicts for w in v.where] + report.notes
    for hit in want.get("static", []):
        assert any(f"{hit['file']}:{hit['line']}:" in w for w in where), (hit, where)


@pytest.mark.parametrize("form", FORMS, ids=lambda p: p.name)
def test_correct_workers_in_every_form_pass(form, reports):
    report = reports[form]
    assert codes(report) == [], report.as_dict() if isinstance(report, CheckReport) else report
    assert isinstance(report, CheckReport)
    assert all("SUBSCRIBED" in said for said in report.clients.values()), report.clients


def test_the_corrected_worker_passes_and_only_its_code_is_read(reports):
    """worker/ holds the corrected Worker and, beside it, the design's broken ones (fixtures/): the check
    reads the code that runs (src/index.js), not the folder's other files."""
    report = reports[CORRECTED]
    assert isinstance(report, CheckReport)
    assert codes(report) == [] and not report.incomplete
    assert not [n for n in report.notes if "in the code" in n], report.notes


async def test_command_json_and_exit_codes(tmp_path):
    """The command as a user runs it: --json on a defective Worker exits 1, a path that is no Worker exits 2
    with one line."""
    fixture = WORKERS / "defects" / "query-dropped"
    rc, out = await run_to_exit([command("rtworker"), "check", str(target(fixture)), "--json"])
    assert rc == 1, out
    doc = json.loads(out.strip().splitlines()[-1])
    assert not doc["ok"] and "apikey-missing" in [v["code"] for v in doc["verdicts"]]
    assert dev_anon_key().split(".")[0] not in out  # no JWT in the output
    rc, out = await run_to_exit([command("rtworker"), "check", str(tmp_path / "nothing-here")])
    assert rc == 2 and len(out.strip().splitlines()) == 1, out


async def test_the_workers_secrets_stay_out_of_the_report(tmp_path):
    """A .dev.vars secret the Worker puts in what it throws is redacted in the report (the control, with
    --show-secrets, shows it: the value did reach the report)."""
    secret = "rtproxy-test-secret-9f3c"  # a value no redactor pattern knows: only the project's secrets list
    (tmp_path / "wrangler.toml").write_text(
        'name = "t"\nmain = "index.js"\ncompatibility_date = "2026-01-15"\n'
    )
    (tmp_path / ".dev.vars").write_text(f"SHARED_SECRET={secret}\n")
    (tmp_path / "index.js").write_text(
        "export default { fetch(request, env) { throw new Error('refused with ' + env.SHARED_SECRET) } }\n"
    )
    hidden = await run_check(tmp_path, Options(clients=()), Scrubber(Redactor(False), dev_anon_key()))
    shown = await run_check(tmp_path, Options(clients=()), Scrubber(Redactor(True), dev_anon_key()))
    assert [v.code for v in hidden.verdicts] == ["worker-exception"]
    assert secret not in json.dumps(hidden.as_dict()) and "refused with" in json.dumps(hidden.as_dict())
    assert secret in json.dumps(shown.as_dict())
