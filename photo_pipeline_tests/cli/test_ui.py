"""`photo-pipeline ui` on the embedded defaults: the UI answers, the code location loads under the
name workspace.yaml gives it, and the launcher is `dg dev` (no supersession warning)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from photo_pipeline_tests.conftest import BIN, stop_process_group

pytestmark = pytest.mark.slow

LOCATIONS_QUERY = '{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus locationOrLoadError { __typename } } } } }'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def code_locations(port: int) -> list[dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": LOCATIONS_QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.load(answer)["data"]["workspaceOrError"]["locationEntries"]


def test_ui_serves_the_code_location_through_dg_dev(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTO_", "DAGSTER_", "AWS_"))}
    env.update({"PHOTO_PIPELINE_HOME": str(tmp_path / "home"), "COLUMNS": "400"})
    log_path = tmp_path / "ui.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "photo-pipeline"), "ui", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            deadline, entries = time.monotonic() + 120, []
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    entries = code_locations(port)
                except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, TypeError):
                    entries = []
                if entries and entries[0]["loadStatus"] == "LOADED":
                    break
                time.sleep(1)
        finally:
            stop_process_group(process)
    output = log_path.read_text(errors="replace")
    assert [(e["name"], e["loadStatus"], e["locationOrLoadError"]["__typename"]) for e in entries] == [
        ("photo_pipeline", "LOADED", "RepositoryLocation")
    ], output[-4000:]
    assert f"{BIN / 'dg'} dev -p {port}" in output  # the command it printed and ran
    assert "SupersessionWarning" not in output
