"""A real `photo-pipeline ui` on a home folder of its own, started the way a user starts it and
stopped by its PID: used by the UI tests and by scripts/ui_screenshots.py.

Everything is bounded: the demo by a timeout, the start-up by a deadline, the stop by a wait.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from photo_pipeline_tests.processes import stop_process_tree

# The venv's scripts (photo-pipeline, dg) beside the interpreter running this.
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
SENSORS = ("raw_object_sensor", "pending_photo_sensor")
STARTUP_SECONDS = 120
DEMO_SECONDS = 180
STOP_SECONDS = 60

RUNS_QUERY = "{ runsOrError(limit: 20) { ... on Runs { results { runId status } } } }"
# A run's statuses after which it changes no more.
FINISHED_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}
LOCATIONS_QUERY = (
    "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
    "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ui_environment(home: Path) -> dict[str, str]:
    """This process's environment without any PHOTO_, DAGSTER_ or AWS_ setting (the embedded
    defaults, as on a newcomer's machine), on `home`. PYTHONPATH stays: it picks the worktree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTO_", "DAGSTER_", "AWS_"))}
    env.update({"PHOTO_PIPELINE_HOME": str(home), "COLUMNS": "200"})
    return env


def run_demo(home: Path) -> None:
    """`photo-pipeline demo` on `home`: two albums, one with a corrupt photo, each rendered."""
    result = subprocess.run(
        [str(BIN / "photo-pipeline"), "demo"],
        cwd=ROOT, env=ui_environment(home), capture_output=True, text=True, timeout=DEMO_SECONDS,
    )
    assert result.returncode == 0, f"photo-pipeline demo failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def album_with_failed_photos(home: Path) -> uuid.UUID:
    """The demo album whose corrupt photo failed (the Studio album)."""
    from photo_pipeline.photos.models import PhotoStatus
    from photo_pipeline.photos.repository import PhotoRepository
    from photo_pipeline.settings import default_database_url

    repository = PhotoRepository.from_url(default_database_url(home))
    try:
        failing = [album for album, counts in repository.status_counts_by_album().items() if counts.get(PhotoStatus.FAILED)]
    finally:
        repository.engine.dispose()
    assert len(failing) == 1, f"expected one demo album with failed photos, found {failing}"
    return failing[0]


def drift_for_the_plan(home: Path, album: uuid.UUID) -> Path:
    """Drift the demo does not have, for a reconciliation plan to show: a stray thumbnail (an hour
    old, past the orphans' grace: `delete_rendition`) and a completed photo's lost thumbnail
    (`rerender`). Returns the stray's path."""
    thumbs = home / "objects" / "processed" / "thumbs" / str(album)
    lost = next(path for path in sorted(thumbs.iterdir()) if path.is_file())
    stray = thumbs / f"{uuid.uuid4()}.jpg"
    stray.write_bytes(lost.read_bytes())
    hour_ago = time.time() - 3600
    os.utime(stray, (hour_ago, hour_ago))
    lost.unlink()
    return stray


@dataclass
class LocalUI:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    startup_output: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        """Everything it printed so far, without colour codes."""
        return _ANSI.sub("", self.log_path.read_text(errors="replace"))

    def graphql(self, query: str) -> dict:
        """The answer's data to a query of the UI's own GraphQL endpoint (what its pages ask)."""
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.load(answer)["data"]

    def code_locations(self) -> list[dict]:
        return self.graphql(LOCATIONS_QUERY)["workspaceOrError"]["locationEntries"]

    def runs(self) -> dict[str, str]:
        """Status (SUCCESS, STARTED, QUEUED...) by run id, of the instance's latest runs."""
        return {run["runId"]: run["status"] for run in self.graphql(RUNS_QUERY)["runsOrError"]["results"]}

    def serving(self) -> bool:
        """Whether anything accepts connections on its port."""
        with socket.socket() as sock:
            sock.settimeout(2)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0


def start_ui(
    home: Path, log_path: Path, *, cwd: Path = ROOT, sigint_ignored: bool = False, until_sensors_ticked: bool = True
) -> LocalUI:
    """`photo-pipeline ui` on a free port, in a session of its own, from `cwd` (by default the
    project folder, where the production dagster.yaml sits, as in the README). Returns once its
    start-up is over: the code location loaded, the webserver serving and (unless told not to
    wait for them) each sensor's first tick logged; `startup_output` holds what it printed until then.

    `sigint_ignored` starts it the way a shell starts a background command (`... &`), which
    leaves SIGINT ignored."""
    port = free_port()
    command = [str(BIN / "photo-pipeline"), "ui", "--port", str(port)]
    if sigint_ignored:
        command = ["/bin/sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=cwd, env=ui_environment(home), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    ui = LocalUI(process, port, log_path)
    try:
        wait_until_started(ui, SENSORS if until_sensors_ticked else ())
    except BaseException:
        stop_process_tree(ui.process)
        raise
    return ui


def wait_until_started(ui: LocalUI, sensors: tuple[str, ...]) -> None:
    markers = [f"Serving dagster-webserver on {ui.url}", *(f"Checking for new runs for sensor: {name}" for name in sensors)]
    deadline, entries = time.monotonic() + STARTUP_SECONDS, []
    while time.monotonic() < deadline and ui.process.poll() is None:
        output = ui.output()
        if all(marker in output for marker in markers):
            try:
                entries = ui.code_locations()
            except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, TypeError):
                entries = []
            if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
                ui.startup_output = output
                return
        time.sleep(0.5)
    raise AssertionError(
        f"photo-pipeline ui did not finish starting within {STARTUP_SECONDS}s "
        f"(exit code {ui.process.poll()}, locations {entries}):\n{ui.output()[-4000:]}"
    )


def stop_by_pid(ui: LocalUI) -> None:
    """SIGTERM to the PID `photo-pipeline ui` printed under (it became dg dev), as `kill PID`
    does; waits for it and for every process it started to end."""
    ui.process.send_signal(signal.SIGTERM)
    ui.process.wait(timeout=STOP_SECONDS)
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline and processes_in_session(ui.process.pid):
        time.sleep(0.5)


def processes_in_session(session_id: int) -> list[str]:
    """Command lines of the live (not zombie) processes of session `session_id`: all that
    `photo-pipeline ui` started (webserver, daemon, code servers, runs) stay in its session."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue  # ended while we looked
        state, session = fields[0], int(fields[3])
        if session == session_id and state != "Z":
            found.append(f"{stat.parent.name}: {cmdline[:200]}")
    return found

