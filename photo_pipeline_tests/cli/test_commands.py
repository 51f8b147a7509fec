"""The command line on the embedded defaults (SQLite + local folder) and the demo in an empty folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from photo_pipeline.cli import samples
from photo_pipeline.cli.commands import main
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.rendering.render import RenderOptions
from photo_pipeline.services.processing import PhotoProcessor, ProcessingLimits
from photo_pipeline.settings import Settings
from photo_pipeline.storage import LocalObjectStore

BIN = Path(sys.executable).parent


@pytest.fixture
def embedded_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in list(os.environ):
        if name.startswith("PHOTO_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("PHOTO_PIPELINE_HOME", str(home))
    return {"PHOTO_PIPELINE_HOME": str(home)}


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_upload_status_and_cleanup(embedded_env: dict[str, str], tmp_path: Path) -> None:
    album = uuid.uuid4()
    good = [write(tmp_path / f"p{i}.jpg", samples.photo_jpeg(400, 300, seed=i)) for i in range(2)]
    png = write(tmp_path / "alpha.png", samples.photo_png(300, 200, mode="RGBA"))
    empty = write(tmp_path / "empty.jpg", b"")
    text = write(tmp_path / "notes.jpg", samples.not_an_image())

    before_init = invoke("upload", str(album), str(good[0]))
    assert before_init.exit_code == 1 and "init-db" in before_init.output
    assert invoke("init-db").exit_code == 0
    result = invoke("upload", str(album), *map(str, [*good, png, empty, text]))
    assert result.exit_code == 1, result.output
    # rich folds long lines, inside a word too when the tmp path is long (an xdist worker's is
    # longer: `.../popen-gw0/...`, which folded "empty.jp" / "g"): compared without whitespace.
    flat = "".join(result.output.split())
    assert "empty.jpg:thefileisempty" in flat
    assert "notes.jpg:notanimage" in flat
    assert result.output.count("uploaded") == 3

    settings = Settings.from_env()
    repository = PhotoRepository.from_url(settings.database_url)
    assert repository.status_counts(album)[PhotoStatus.PENDING] == 3

    status = invoke("status", "--json")
    payload = json.loads(status.output)
    assert payload["albums"][str(album)]["pending"] == 3
    assert payload["totals"]["pending"] == 3

    # Render one photo so there is a completed row that cleanup must refuse.
    store = LocalObjectStore(settings.objects_dir)
    PhotoProcessor(repository, store, RenderOptions(preview_long_side=200, thumb_long_side=50), ProcessingLimits(max_photos=1, workers=1)).process_album(album, "test")
    counts = repository.status_counts(album)
    assert counts[PhotoStatus.COMPLETED] == 1 and counts[PhotoStatus.PENDING] == 2
    [completed] = [r for r in repository.photos_in_album(album) if r.status is PhotoStatus.COMPLETED]
    refused = invoke("cleanup", str(completed.id))
    assert refused.exit_code == 1 and "refused" in refused.output

    pending = repository.pending_in_album(album, 10)[0]
    assert store.exists(pending.original_key)
    done = invoke("cleanup", str(pending.id))
    assert done.exit_code == 0, done.output
    assert repository.get(pending.id) is None
    assert not store.exists(pending.original_key)

    human = invoke("status", "--album", str(album))
    assert human.exit_code == 0 and "completed" in human.output

    assert invoke("cleanup", str(uuid.uuid4())).exit_code == 1
    bad_album = invoke("upload", "not-a-uuid", str(good[0]))
    assert bad_album.exit_code == 2 and "must be a UUID" in bad_album.output


def render_pending(album: uuid.UUID) -> None:
    """What the album's run does, without Dagster (the CLI reads the table only)."""
    settings = Settings.from_env()
    repository = PhotoRepository.from_url(settings.database_url)
    processor = PhotoProcessor(
        repository,
        LocalObjectStore(settings.objects_dir),
        RenderOptions(preview_long_side=200, thumb_long_side=50),
        ProcessingLimits(workers=1),
    )
    processor.process_album(album, "test")


def test_status_shows_full_ids_titles_and_failed_photos_by_file_name(embedded_env: dict[str, str], tmp_path: Path) -> None:
    studio, holiday = uuid.uuid4(), uuid.uuid4()
    portrait = write(tmp_path / "portrait.jpg", samples.photo_jpeg(400, 300))
    # A file name with rich markup in it is shown as named, not as markup.
    broken = write(tmp_path / "scan [red]2[/red].jpg".replace("/", "-"), samples.corrupt_jpeg())
    beach = write(tmp_path / "beach.jpg", samples.photo_jpeg(400, 300, seed=3))
    assert invoke("init-db").exit_code == 0

    refused = invoke("upload", str(studio), str(portrait), "--title", "  ")
    assert refused.exit_code == 2 and "the album title is empty" in refused.output
    titled = invoke("upload", str(studio), str(portrait), str(broken), "--title", "Studio shoot")
    assert titled.exit_code == 0, titled.output
    assert f'album {studio}: titled "Studio shoot"' in titled.output
    assert f"uploaded {broken.name} -> photo" in titled.output
    assert invoke("upload", str(holiday), str(beach)).exit_code == 0
    render_pending(studio)
    render_pending(holiday)

    human = invoke("status")
    assert human.exit_code == 0, human.output
    lines = human.output.splitlines()
    # Full ids (80 columns in the runner), each album's title under its id, its failures marked.
    [studio_row] = [line for line in lines if line.startswith(str(studio))]
    assert studio_row.split()[1:] == ["0", "0", "1", "1", "✗", "0"]
    assert lines[lines.index(studio_row) + 1].strip() == "Studio shoot"
    assert any(line.startswith(str(holiday)) and "✗" not in line for line in lines)
    assert "✗ 1 album(s) with failed photos" in human.output
    assert f"Studio shoot (album {studio}): 1 failed" in human.output
    repository = PhotoRepository.from_url(Settings.from_env().database_url)
    [failed] = [r for r in repository.photos_in_album(studio) if r.status is PhotoStatus.FAILED]
    assert f"  {failed.id}  {broken.name}" in lines
    # Whether a re-run can help, under the error: this file is damaged, so it cannot.
    assert "→ the file itself is damaged: a re-run cannot help; replace the original, then re-run" in human.output

    payload = json.loads(invoke("status", "--json").output)
    assert payload["albums_with_failed_photos"] == [str(studio)]
    assert payload["albums"][str(holiday)]["title"] is None and payload["albums"][str(holiday)]["completed"] == 1
    album = payload["albums"][str(studio)]
    assert album["title"] == "Studio shoot" and (album["completed"], album["failed"]) == (1, 1)
    [listed] = album["failed_photos"]
    assert listed["id"] == str(failed.id) and listed["file"] == broken.name and "cannot render" in listed["error"]
    assert (listed["failure_kind"], listed["retryable"]) == ("damaged", False)
    only = json.loads(invoke("status", "--album", str(studio), "--json").output)
    assert list(only["albums"]) == [str(studio)] and only["totals"]["failed"] == 1


def test_doctor_on_embedded_defaults(embedded_env: dict[str, str]) -> None:
    assert invoke("init-db").exit_code == 0
    result = invoke("doctor")
    assert result.exit_code == 0, result.output
    assert "presigned PUT" in result.output and "fail" not in result.output


@pytest.mark.slow
def test_demo_in_an_empty_folder(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTO_", "DAGSTER_", "AWS_"))}
    folder = tmp_path / "empty"
    folder.mkdir()
    result = subprocess.run(
        [str(BIN / "photo-pipeline"), "demo"], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "completed" in result.stdout and "failed" in result.stdout
    home = folder / ".photo_pipeline"
    settings = Settings.from_env({"PHOTO_PIPELINE_HOME": str(home)})
    repository = PhotoRepository.from_url(settings.database_url)
    totals = repository.status_counts()
    assert totals[PhotoStatus.FAILED] == 1  # the corrupt sample
    assert totals[PhotoStatus.COMPLETED] == 10
    assert totals[PhotoStatus.PENDING] == 0 and totals[PhotoStatus.PROCESSING] == 0
    assert any((home / "objects" / "processed" / "previews").rglob("*.jpg"))
    # The runs were recorded on the persistent local instance, so the UI shows them afterwards.
    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        runs = instance.get_run_records(RunsFilter(job_name="process_album"))
        assert len(runs) == 2
        assert all(r.dagster_run.status is DagsterRunStatus.SUCCESS for r in runs)


def test_a_database_user_that_cannot_write_reads_as_one_line_with_the_traceback_in_the_log(
    select_only_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTO_", "DAGSTER_", "AWS_"))}
    env.update({"PHOTO_DATABASE_URL": select_only_url, "PHOTO_PIPELINE_HOME": str(tmp_path / "home")})
    photo = write(tmp_path / "a.jpg", samples.photo_jpeg(200, 150))
    album = str(uuid.uuid4())

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "photo-pipeline"), *args], env=env, capture_output=True, text=True, timeout=120, check=False)

    # Each file's failure (the upload goes on with the next), then a command's own (the title).
    for result, expected in (
        (run("upload", album, str(photo)), "the database user cannot write to photos: permission denied"),
        (run("upload", "--title", "Beach", album, str(photo)), "Error: the database user cannot write to albums: permission denied"),
    ):
        output = " ".join((result.stdout + result.stderr).split())
        assert result.returncode == 1, output
        assert expected in output, output
        for raw in ("[SQL:", "INSERT INTO", "sqlalche.me", "Traceback", "psycopg.errors"):
            assert raw not in output, output

    verbose = run("-v", "upload", "--title", "Beach", album, str(photo))
    assert verbose.returncode == 1
    assert "Error: the database user cannot write to albums: permission denied" in verbose.stderr
    assert "Traceback" in verbose.stderr and "InsufficientPrivilege" in verbose.stderr, "the details are in the log"
