"""The uploader page in a real browser (headless Chromium via Playwright) against the API and S3
over HTTP on 127.0.0.1, the bucket enforcing its CORS rule (moto's server, see conftest.py).

The old system's worst incident happened here: the page said 100 % and the album stayed empty.
Every way an upload can fail below must end with the file shown as failed, with a reason an
admin can act on, its row cleaned up, and its progress never at 100 %.
"""

from __future__ import annotations

import statistics
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance

from photo_pipeline.cli import samples
from photo_pipeline.photos.database import migrate
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.rendering.render import RenderOptions
from photo_pipeline.services.processing import PhotoProcessor, ProcessingLimits
from photo_pipeline.storage import LocalObjectStore, keys
from photo_pipeline_tests.api.conftest import (
    TOKEN,
    ApiServer,
    allow_browser_puts,
    api_settings,
    free_port,
    requester_on,
    s3_store,
    serve_in_thread,
    wait_until_listening,
)
from photo_pipeline_tests.api.proxy import CuttingProxy
from photo_pipeline_tests.conftest import BIN, ROOT, S3Server, stop_process_group

FINISHED_SECONDS = 60
PROCESSED_SECONDS = 240

# Records every percentage a row ever showed, from the first moment of the page's life.
RECORD_PERCENTAGES = """
window.__percentages = [];
new MutationObserver((mutations) => {
  for (const m of mutations) window.__percentages.push([m.target.dataset.file, m.target.dataset.percent]);
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-percent"] });
"""

ROWS = """rows => rows.map(r => ({
  file: r.dataset.file, state: r.dataset.state, percent: r.dataset.percent, cleanup: r.dataset.cleanup || null,
  photoId: r.dataset.photoId, verifiedAt: r.dataset.verifiedAt ? Number(r.dataset.verifiedAt) : null,
  reason: r.querySelector('.reason').textContent, text: r.innerText,
  thumbnailWidth: r.querySelector('img.thumb') ? r.querySelector('img.thumb').naturalWidth : null,
}))"""

SETTLED = """count => {
  const rows = [...document.querySelectorAll('#uploads tbody tr')];
  return rows.length === count && rows.every(r =>
    ['done', 'failed', 'stalled'].includes(r.dataset.state) && r.dataset.cleanup !== 'running');
}"""

IMAGES_LOADED = "() => [...document.querySelectorAll('img.thumb')].every(image => image.complete)"


def photo_files(tmp_path: Path, count: int, *, corrupt: bool = False) -> list[Path]:
    files = []
    for i in range(count):
        path = tmp_path / f"photo-{i}.jpg"
        path.write_bytes(samples.photo_jpeg(1600, 1200, seed=i))
        files.append(path)
    if corrupt:
        path = tmp_path / "broken.jpg"
        path.write_bytes(samples.corrupt_jpeg())
        files.append(path)
    return files


def upload_in_browser(browser: Any, page_url: str, album: uuid.UUID, files: list[Path], seconds: float) -> tuple[list[dict[str, Any]], list[list[str]], str]:
    """Open the page, enter the token and album, choose the files, upload, and wait (bounded) until
    every row has settled. Returns the rows, every percentage shown, and the page's text."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.add_init_script(RECORD_PERCENTAGES)
        page.goto(page_url)
        page.fill("#token", TOKEN)
        page.fill("#album", str(album))
        page.set_input_files("#files", [str(path) for path in files])
        page.click("#start")
        page.wait_for_function(SETTLED, arg=len(files), timeout=seconds * 1000)
        # Thumbnails load after their row says done: wait until each has loaded or failed.
        page.wait_for_function(IMAGES_LOADED, timeout=FINISHED_SECONDS * 1000)
        rows = page.eval_on_selector_all("#uploads tbody tr", ROWS)
        return rows, page.evaluate("window.__percentages"), page.inner_text("body")
    finally:
        context.close()


def assert_failed_and_cleaned_up(rows: list[dict[str, Any]], percentages: list[list[str]], text: str, repository: PhotoRepository, album: uuid.UUID) -> dict[str, Any]:
    [row] = rows
    assert row["state"] == "failed", row
    assert row["cleanup"] == "done", row
    assert "cleaned up" in row["reason"], row
    assert "100 %" not in text and all(percent != "100" for _file, percent in percentages), percentages
    assert sum(repository.status_counts(album).values()) == 0, "the row was cleaned up"
    # Cleaned up through the API's cleanup: tombstoned, so a late PUT is removed, not adopted.
    key = keys.raw_key(album, uuid.UUID(row["photoId"]), "jpg")
    assert repository.tombstoned([key]) == {key}
    print(f"\n{row['file']}: {row['state']}: {row['reason']}")
    return row


# -- failures, each against an API of its own (in a thread of this process) ----------------------


@pytest.fixture
def api_for(photo_database: str, s3_server: S3Server, queued_instance: DagsterInstance, tmp_path: Path):  # type: ignore[no-untyped-def]
    """An API on a port chosen first (the bucket's CORS rule names the page's origin), on a bucket
    of its own, with or without a CORS rule and with the public endpoint given."""

    def start(*, cors: bool, public_endpoint_url: str | None = None) -> Iterator[ApiServer]:
        bucket = s3_server.new_bucket()
        port = free_port()
        if cors:
            allow_browser_puts(s3_server, bucket, [f"http://127.0.0.1:{port}"])
        settings = api_settings(tmp_path, photo_database, bucket, public_endpoint_url=public_endpoint_url)
        store = s3_store(s3_server, bucket, public_endpoint_url)
        return serve_in_thread(settings, requester_on(queued_instance), store=store, port=port)

    return start


def test_an_unreachable_public_endpoint_fails_the_file_with_its_reason(api_for, browser: Any, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    unreachable = f"http://127.0.0.1:{free_port()}"
    album = uuid.uuid4()
    with api_for(cors=True, public_endpoint_url=unreachable) as api:
        rows, percentages, text = upload_in_browser(browser, api.url("/upload"), album, photo_files(tmp_path, 1), FINISHED_SECONDS)
        row = assert_failed_and_cleaned_up(rows, percentages, text, api.repository, album)
    assert f"the storage endpoint {unreachable} cannot be reached from this browser" in row["reason"]
    assert "PHOTO_PUBLIC_ENDPOINT_URL" in row["reason"]


def test_a_bucket_without_a_cors_rule_fails_the_file_with_its_reason(api_for, browser: Any, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    album = uuid.uuid4()
    with api_for(cors=False) as api:
        rows, percentages, text = upload_in_browser(browser, api.url("/upload"), album, photo_files(tmp_path, 1), FINISHED_SECONDS)
        row = assert_failed_and_cleaned_up(rows, percentages, text, api.repository, album)
        assert not api.store.exists(keys.raw_key(album, uuid.UUID(row["photoId"]), "jpg"))
    assert "answers, but it did not let this browser upload" in row["reason"]
    assert "CORS rule must allow PUT" in row["reason"] and "photo-pipeline doctor" in row["reason"]


def test_a_presign_request_cut_off_midway_fails_the_file_and_its_row_is_cleaned_up(api_for, browser: Any, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    album = uuid.uuid4()
    # No PUT is ever attempted here: the bucket's rule (for the API's own origin) does not matter.
    with api_for(cors=True) as api:
        upstream_port = int(api.base_url.rsplit(":", 1)[1])
        # The page is served through the proxy too (one origin); only the upload requests are cut,
        # after the API has answered them (its rows are written).
        with CuttingProxy(upstream_port, cut=lambda method, path: method == "POST" and path.endswith("/uploads")) as proxy:
            rows, percentages, text = upload_in_browser(browser, proxy.base_url + "/upload", album, photo_files(tmp_path, 1), FINISHED_SECONDS)
            row = assert_failed_and_cleaned_up(rows, percentages, text, api.repository, album)
            assert len(proxy.cut_requests) == 3, "the page retried the cut request with backoff, then gave up"
            assert any(label.startswith("DELETE /api/photos/") for label in proxy.forwarded), "and cleaned up by the id it chose"
    assert "no upload URL: the connection to the API was cut off or refused" in row["reason"]
    assert "tried 3 times" in row["reason"]


# -- success: the API as `photo-pipeline serve`, the daemon running -------------------------------


@pytest.mark.slow
def test_uploads_reach_completed_with_the_daemon_running(
    pipeline_env: dict[str, str], daemon: subprocess.Popen[bytes], s3_server: S3Server, browser: Any, tmp_path: Path
) -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    allow_browser_puts(s3_server, pipeline_env["PHOTO_BUCKET"], [origin])
    env = {**pipeline_env, "PHOTO_API_TOKEN": TOKEN, "PHOTO_API_ALLOWED_ORIGINS": origin}
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        serve = subprocess.Popen(
            [str(BIN / "photo-pipeline"), "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_listening(port, serve, "photo-pipeline serve", seconds=60)
        album = uuid.uuid4()
        files = photo_files(tmp_path, 3, corrupt=True)
        started = time.monotonic()
        rows, _percentages, _text = upload_in_browser(browser, f"{origin}/upload", album, files, PROCESSED_SECONDS)
        seconds = time.monotonic() - started
    finally:
        stop_process_group(serve)
    served = log_path.read_text(errors="replace")
    by_file = {row["file"]: row for row in rows}
    repository = PhotoRepository.from_url(pipeline_env["PHOTO_DATABASE_URL"])
    for path in files[:3]:
        row = by_file[path.name]
        assert (row["state"], row["percent"]) == ("done", "100"), (row, served[-3000:])
        assert row["thumbnailWidth"], "the thumbnail, fetched by the browser from its short-lived URL, decoded"
    broken = by_file["broken.jpg"]
    assert broken["state"] == "failed" and broken["reason"].startswith("processing failed:"), broken
    # A damaged file: the API's hint says to upload it again, not that a re-run could help.
    assert "Upload it again from the original" in broken["reason"] and "can re-run it" not in broken["reason"], broken
    assert broken["cleanup"] == "none", "a processing failure keeps its original for a re-run"
    counts = repository.status_counts(album)
    assert (counts[PhotoStatus.COMPLETED], counts[PhotoStatus.FAILED]) == (3, 1)

    # The fast path: from the page's `complete` to the row's completion.
    completed = repository.get_many([uuid.UUID(by_file[p.name]["photoId"]) for p in files[:3]])
    latencies = [
        (row.completed_at - datetime.fromtimestamp(by_file[p.name]["verifiedAt"] / 1000, UTC)).total_seconds()
        for p in files[:3]
        for row in [completed[uuid.UUID(by_file[p.name]["photoId"])]]
        if row.completed_at is not None
    ]
    assert len(latencies) == 3
    print(
        f"\nbrowser upload of 4 files, to every file settled: {seconds:.1f}s; complete -> completed: "
        f"min {min(latencies):.1f}s, median {statistics.median(latencies):.1f}s, max {max(latencies):.1f}s"
    )
    # Every request was logged with its outcome, and neither the token nor a signature was.
    assert f"POST /api/albums/{album}/uploads -> 201" in served and "/complete -> 200" in served
    assert TOKEN not in served and "X-Amz-Signature" not in served and "Traceback" not in served


# -- the embedded folder store: the page uploads through the API's relay -------------------------


def test_with_the_folder_store_the_page_uploads_through_the_api(queued_instance: DagsterInstance, browser: Any, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'photos.db'}"
    migrate(database)
    store = LocalObjectStore(tmp_path / "objects")
    album = uuid.uuid4()
    with serve_in_thread(api_settings(tmp_path, database, None), requester_on(queued_instance), store=store) as api:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(api.url("/upload"))
            page.fill("#token", TOKEN)
            page.fill("#album", str(album))
            page.set_input_files("#files", [str(path) for path in photo_files(tmp_path, 2)])
            page.click("#start")
            page.wait_for_function(
                "() => [...document.querySelectorAll('#uploads tbody tr')].filter(r => r.dataset.state === 'processing').length === 2",
                timeout=FINISHED_SECONDS * 1000,
            )
            # The run the page's `complete` requested, carried out here (no daemon in this test).
            processor = PhotoProcessor(api.repository, store, RenderOptions(preview_long_side=320, thumb_long_side=80), ProcessingLimits())
            assert processor.process_album(album, worker="test").rendered == 2
            page.wait_for_function(SETTLED, arg=2, timeout=FINISHED_SECONDS * 1000)
            page.wait_for_function(IMAGES_LOADED, timeout=FINISHED_SECONDS * 1000)
            rows = page.eval_on_selector_all("#uploads tbody tr", ROWS)
        finally:
            context.close()
    assert [(row["state"], row["percent"]) for row in rows] == [("done", "100"), ("done", "100")], rows
    assert all(row["thumbnailWidth"] == 80 for row in rows), "thumbnails served by the API's relay"
