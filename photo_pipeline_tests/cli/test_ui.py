"""`photo-pipeline ui` on the embedded defaults, started as the README says (from the project
folder, where the production dagster.yaml sits): the UI answers with the code location named by
workspace.yaml, its start-up prints nothing a newcomer must decode, and stopping its PID stops
everything it started."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from photo_pipeline.cli.commands import sqlite_file_made_absolute
from photo_pipeline_tests.processes import stop_process_tree
from photo_pipeline_tests.ui.local_ui import (
    BIN,
    ROOT,
    processes_in_session,
    start_ui,
    stop_by_pid,
)

# A line that warns: a log record at level WARNING (Dagster's own format is "... - WARNING - ..."),
# a Python warning category (SupersessionWarning, PreviewWarning, UserWarning...), or Dagster's
# telemetry banner.
WARNING = re.compile(r"\bWARNING\b|\b[A-Z]\w*Warning\b|Telemetry:")

# Warnings the start-up may still print, each with why it cannot be removed: substring -> reason.
# Empty: every warning seen so far had a cause we could remove (see `ui` in cli/commands.py and
# instance/local.py). Add an entry only with its reason.
ALLOWED_WARNINGS: dict[str, str] = {}


def startup_warnings(output: str) -> list[str]:
    return [
        line
        for line in output.splitlines()
        if WARNING.search(line) and not any(allowed in line for allowed in ALLOWED_WARNINGS)
    ]


@pytest.mark.slow
def test_ui_starts_quietly_and_stops_with_its_pid(tmp_path: Path) -> None:
    # Started like a shell's background command (SIGINT ignored): `kill PID` must still stop it.
    ui = start_ui(tmp_path / "home", tmp_path / "ui.log", cwd=ROOT, sigint_ignored=True)
    try:
        locations = ui.code_locations()
        assert [(e["name"], e["loadStatus"], e["locationOrLoadError"]["__typename"]) for e in locations] == [
            ("photo_pipeline", "LOADED", "RepositoryLocation")
        ], ui.output()[-4000:]
        # The command it printed and became: dg dev on the project's workspace.yaml.
        assert f"{BIN / 'dg'} dev -w {ROOT / 'workspace.yaml'} --host 127.0.0.1 --port {ui.port}" in ui.startup_output
        assert startup_warnings(ui.startup_output) == [], ui.startup_output[-6000:]

        stop_by_pid(ui)
        assert ui.process.returncode == 0, ui.output()[-3000:]
        assert processes_in_session(ui.process.pid) == [], "left running after `kill PID`"
        assert not ui.serving(), f"something still serves port {ui.port} after `kill PID`"
    finally:
        stop_process_tree(ui.process)


def test_warning_lines_are_recognised() -> None:
    """The filter above catches what the start-up used to print (it cannot pass by matching nothing)."""
    printed_before = [
        "2026-11-29 06:36:31 +0000 - dagster - WARNING - Found a dagster instance configuration value (dagster.yaml) "
        "in the current folder, but your DAGSTER_HOME environment variable is set to /tmp/home/dagster.",
        "2026-11-29 06:36:37 +0000 - dagster.daemon.EventLogConsumerDaemon - WARNING - No cursor for event type "
        "DagsterEventType.RUN_FAILURE, ignoring older events",
        "/venv/lib/python3.11/site-packages/dagster/_cli/dev.py:140: SupersessionWarning: Function `dev_command` is superseded",
        "  Telemetry:",
    ]
    quiet = "2026-11-29 06:39:51 +0000 - dagster.daemon.SensorDaemon - INFO - Sensor raw_object_sensor skipped: looked at 11 raw object(s)"
    assert startup_warnings("\n".join([*printed_before, quiet])) == printed_before


def test_ui_keeps_a_relative_sqlite_file_where_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ui` runs Dagster from the local instance's folder: a SQLite file given relative to the
    folder it was started in must still mean that file; any other URL passes unchanged."""
    monkeypatch.chdir(tmp_path)
    assert sqlite_file_made_absolute("sqlite:///photos.db") == f"sqlite:///{tmp_path / 'photos.db'}"
    assert sqlite_file_made_absolute("sqlite:////srv/photos.db") == "sqlite:////srv/photos.db"
    assert sqlite_file_made_absolute("sqlite://") == "sqlite://"
    postgres = "postgresql+psycopg://photos:s3cret@db.internal:5432/photos"
    assert sqlite_file_made_absolute(postgres) == postgres
