"""examples/: the sanitized captures a new user tries first. Each says what examples/README.md says it
does (rtdiagnose's first finding), rtsanitize finds nothing more in it, and nothing in it is a credential:
no apikey or sb_ key but rtsanitize's marker, no JWT with a signature. Small: a few KB each."""

from __future__ import annotations

import json
import re

import pytest
from conftest import ROOT, command, run_to_exit
from rtproxy_core.redact import SANITIZED

EXAMPLES = ROOT / "examples"
FIRST = {  # each example, and the code rtdiagnose names first on each of its connections
    "refused-private-join.har": "join-unauthorized",
    "expired-token.har": "token-expired",
    "worker-drops-query.flows": "apikey-missing",
}
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.([A-Za-z0-9_-]*)")
SB_KEY = re.compile(rb"sb_(?:publishable|secret)_[A-Za-z0-9_-]+")
APIKEY = re.compile(rb"apikey=([^&\"\s,]*)", re.IGNORECASE)


def test_the_folder_holds_the_examples_its_readme_describes():
    assert {p.name for p in EXAMPLES.iterdir()} == {*FIRST, "README.md"}
    readme = (EXAMPLES / "README.md").read_text()
    for name, code in FIRST.items():
        assert f"`{name}`" in readme and f"`{code}`" in readme
        assert f"rtdiagnose examples/{name}" in readme


@pytest.mark.parametrize("name", FIRST)
async def test_rtdiagnose_names_each_examples_failure_first(name):
    status, out = await run_to_exit([command("rtdiagnose"), "--json", str(EXAMPLES / name)])
    assert status == 1, out  # an error finding
    connections = json.loads(out)["connections"]
    assert connections and all(c["findings"][0]["code"] == FIRST[name] for c in connections), out


@pytest.mark.parametrize("name", FIRST)
async def test_rtsanitize_finds_nothing_more_to_remove(name, tmp_path):
    again = tmp_path / name
    status, out = await run_to_exit([command("rtsanitize"), str(EXAMPLES / name), str(again)])
    assert status == 0 and "replaced nothing: no credential found" in out, out
    if name.endswith(".har"):
        assert again.read_bytes() == (EXAMPLES / name).read_bytes()  # written back byte for byte


@pytest.mark.parametrize("name", FIRST)
def test_no_credential_in_the_files(name):
    data = (EXAMPLES / name).read_bytes()
    assert len(data) < 8_000
    marker = SANITIZED.encode()
    signatures = JWT.findall(data)
    assert all(sig == marker for sig in signatures), signatures  # claims kept, never a signature
    assert set(SB_KEY.findall(data)) <= {b"sb_publishable_" + marker, b"sb_secret_" + marker}
    keys = APIKEY.findall(data)
    assert keys and set(keys) <= {marker, b"sb_publishable_" + marker, b"sb_secret_" + marker}, keys
