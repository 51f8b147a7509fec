"""The uploader page in a real browser (headless Chromium via Playwright) against the API and S3
over HTTP on 127.0.0.1: moto and s3rver (`bucket_server`), each enforcing the bucket's CORS rule,
s3rver the signatures too (see conftest.py).

The old system's worst incident happened here: the page said 100 % and the album stayed empty.
Every way an upload can fail below must end with the file shown as failed, with the true cause in
plain words (the operator's detail behind "details"), what became of its row said as it is, and
its progress never at 100 %.
"""

from __future__ import annotations

import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
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
from photo_pipeline_tests.conftest import BIN, ROOT, S3Server
from photo_pipeline_tests.processes import stop_process_tree

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
  cause: r.dataset.cause || null, retryable: r.dataset.retryable || null,
  photoId: r.dataset.photoId, verifiedAt: r.dataset.verifiedAt ? Number(r.dataset.verifiedAt) : null,
  reason: r.querySelector('.reason').textContent, detail: r.querySelector('.detail').textContent,
  detailsHidden: r.querySelector('details.details').hidden, text: r.innerText,
  thumbnailWidth: r.querySelector('img.thumb') ? r.querySelector('img.thumb').naturalWidth : null,
}))"""

SETTLED = """count => {
  const rows = [...document.querySelectorAll('#uploads tbody tr')];
  return rows.length === count && rows.every(r =>
    ['done', 'failed', 'stalled'].includes(r.dataset.state) && r.dataset.cleanup !== 'running');
}"""

IN_STATE = """([state, count]) =>
  [...document.querySelectorAll('#uploads tbody tr')].filter(r => r.dataset.state === state).length === count"""

IMAGES_LOADED = "() => [...document.querySelectorAll('img.thumb')].every(image => image.complete)"

# Words only an operator needs: never in a row's plain reason, only behind its "details".
OPERATOR_WORDS = ("PHOTO_", "HTTP", "PUT", "POST", "DELETE", "CORS", "healthz", "raw/", "photo-pipeline")


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


def start_upload(page: Any, page_url: str, album: uuid.UUID, files: list[Path], title: str = "") -> None:
    """Open the page, enter the token, album (and title), choose the files and press Upload."""
    page.add_init_script(RECORD_PERCENTAGES)
    page.goto(page_url)
    page.fill("#token", TOKEN)
    page.fill("#album", str(album))
    page.fill("#title", title)
    page.set_input_files("#files", [str(path) for path in files])
    page.click("#start")


def settled_rows(page: Any, count: int, seconds: float) -> list[dict[str, Any]]:
    page.wait_for_function(SETTLED, arg=count, timeout=seconds * 1000)
    # Thumbnails load after their row says done: wait until each has loaded or failed.
    page.wait_for_function(IMAGES_LOADED, timeout=FINISHED_SECONDS * 1000)
    return page.eval_on_selector_all("#uploads tbody tr", ROWS)


def upload_in_browser(browser: Any, page_url: str, album: uuid.UUID, files: list[Path], seconds: float) -> tuple[list[dict[str, Any]], list[list[str]], str]:
    """Upload the files and wait (bounded) until every row has settled. Returns the rows, every
    percentage shown, and the page's text."""
    context = browser.new_context()
    try:
        page = context.new_page()
        start_upload(page, page_url, album, files)
        rows = settled_rows(page, len(files), seconds)
        return rows, page.evaluate("window.__percentages"), page.inner_text("body")
    finally:
        context.close()


def assert_plain(row: dict[str, Any]) -> None:
    """A person reads the reason; the operator's words are behind the details toggle."""
    assert not any(word in row["reason"] for word in OPERATOR_WORDS), row["reason"]
    assert not row["detailsHidden"] and row["detail"], row


def assert_failed_and_cleaned_up(rows: list[dict[str, Any]], percentages: list[list[str]], text: str, repository: PhotoRepository, album: uuid.UUID) -> dict[str, Any]:
    [row] = rows
    assert (row["state"], row["cleanup"], row["retryable"]) == ("failed", "done", "true"), row
    assert "Nothing of it was kept." in row["reason"] and "cleaned up" in row["detail"], row
    assert_plain(row)
    assert "100 %" not in text and all(percent != "100" for _file, percent in percentages), percentages
    assert sum(repository.status_counts(album).values()) == 0, "the row was cleaned up"
    # Cleaned up through the API's cleanup: tombstoned, so a late PUT is removed, not adopted.
    key = keys.raw_key(album, uuid.UUID(row["photoId"]), "jpg")
    assert repository.tombstoned([key]) == {key}
    print(f"\n{row['file']}: {row['state']}: {row['reason']} [details: {row['detail']}]")
    return row


# -- failures, each against an API of its own (in a thread of this process) ----------------------

StartApi = Callable[..., AbstractContextManager[ApiServer]]


@pytest.fixture
def api_for(photo_database: str, bucket_server: S3Server, queued_instance: DagsterInstance, tmp_path: Path) -> StartApi:
    """An API on a port chosen first (the bucket's CORS rule names the page's origin, or another
    one), on a bucket of its own on moto or s3rver, with the public endpoint given or not."""

    def start(*, page_allowed: bool = True, public_endpoint_url: str | None = None, port: int | None = None) -> AbstractContextManager[ApiServer]:
        bucket = bucket_server.new_bucket()
        port = port or free_port()
        allow_browser_puts(bucket_server, bucket, [f"http://127.0.0.1:{port}" if page_allowed else "https://elsewhere.example"])
        settings = api_settings(tmp_path, photo_database, bucket, public_endpoint_url=public_endpoint_url)
        store = s3_store(bucket_server, bucket, public_endpoint_url)
        return serve_in_thread(settings, requester_on(queued_instance), store=store, port=port)

    return start


def test_an_unreachable_storage_endpoint_is_named_as_such(api_for: StartApi, browser: Any, tmp_path: Path) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    album = uuid.uuid4()
    with api_for(public_endpoint_url=unreachable) as api:
        rows, percentages, text = upload_in_browser(browser, api.url("/upload"), album, photo_files(tmp_path, 1), FINISHED_SECONDS)
        row = assert_failed_and_cleaned_up(rows, percentages, text, api.repository, album)
    assert row["cause"] == "storage-unreachable"
    assert row["reason"].startswith("The photo storage cannot be reached from this browser.")
    assert f"The storage endpoint {unreachable} does not answer at all" in row["detail"]
    assert "PHOTO_PUBLIC_ENDPOINT_URL" in row["detail"] and "tried 3 times" in row["detail"]


def test_a_cors_rule_without_the_page_s_origin_is_named_as_such(api_for: StartApi, browser: Any, tmp_path: Path) -> None:
    album = uuid.uuid4()
    with api_for(page_allowed=False) as api:
        rows, percentages, text = upload_in_browser(browser, api.url("/upload"), album, photo_files(tmp_path, 1), FINISHED_SECONDS)
        row = assert_failed_and_cleaned_up(rows, percentages, text, api.repository, album)
        assert not api.store.exists(keys.raw_key(album, uuid.UUID(row["photoId"]), "jpg"))
    assert row["cause"] == "cors-refused"
    assert row["reason"].startswith("The photo storage refused uploads from this page.")
    assert "answers, but it did not let this browser upload" in row["detail"]
    assert f"CORS rule must allow PUT with the Content-Type and If-None-Match headers from {api.base_url}" in row["detail"]
    assert "photo-pipeline doctor" in row["detail"]


def test_a_presign_request_cut_off_midway_fails_the_file_and_its_row_is_cleaned_up(api_for: StartApi, browser: Any, tmp_path: Path) -> None:
    album = uuid.uuid4()
    # No PUT is ever attempted here: the bucket's rule (for the API's own origin) does not matter.
    with api_for() as api:
        upstream_port = int(api.base_url.rsplit(":", 1)[1])
        # The page is served through the proxy too (one origin); only the upload requests are cut,
        # after the API has answered them (its rows are written).
        with CuttingProxy(upstream_port, cut=lambda method, path: method == "POST" and path.endswith("/uploads")) as proxy:
            rows, percentages, text = upload_in_browser(browser, proxy.base_url + "/upload", album, photo_files(tmp_path, 1), FINISHED_SECONDS)
            row = assert_failed_and_cleaned_up(rows, percentages, text, api.repository, album)
            assert len(proxy.cut_requests) == 3, "the page retried the cut request with backoff, then gave up"
            assert any(label.startswith("DELETE /api/photos/") for label in proxy.forwarded), "and cleaned up by the id it chose"
    assert row["cause"] == "api-cut-off", "the API answers /healthz: it is not gone, the connection was cut"
    assert row["reason"].startswith("The connection to the upload service broke off")
    assert f"POST /api/albums/{album}/uploads: network error (no answer); tried 3 times" in row["detail"]


def test_the_api_stopped_mid_upload_is_named_and_retry_uploads_the_files_when_it_is_back(
    api_for: StartApi, bucket_server: S3Server, queued_instance: DagsterInstance, browser: Any, tmp_path: Path
) -> None:
    """Three files are in flight (their PUTs held by a proxy in front of the bucket), three wait;
    the API is stopped, then the PUTs go through. The page must say the API went away (not the
    storage), report the three rows it could not clean up as such and the three files it never
    sent as not sent, and, once the API is back on its address, "retry" must upload all six:
    the three rows reused by their ids, three new ones."""
    album = uuid.uuid4()
    files = photo_files(tmp_path, 6)
    port = free_port()
    bucket_port = int(bucket_server.endpoint_url.rsplit(":", 1)[1])
    hold_puts = CuttingProxy(bucket_port, cut=lambda _method, _path: False, hold=lambda method, _path: method == "PUT")
    with hold_puts, api_for(public_endpoint_url=hold_puts.base_url, port=port) as api:
        context = browser.new_context()
        try:
            page = context.new_page()
            start_upload(page, api.url("/upload"), album, files, title="Coast, day one")
            page.wait_for_function(IN_STATE, arg=["uploading", 3], timeout=FINISHED_SECONDS * 1000)
            wait_until(lambda: len(hold_puts.held) == 3, "three PUTs held at the bucket's proxy")
            api.stop()  # the API goes away while three files are in flight
            hold_puts.release()
            stopped = settled_rows(page, 6, FINISHED_SECONDS)
            notice, retry_label = page.inner_text("#notice"), page.inner_text("#retry")
            pending_while_down = nonzero(api.repository.status_counts(album))

            with serve_in_thread(api.settings, requester_on(queued_instance), store=api.store, port=port) as back:
                page.click("#retry")
                page.wait_for_function(IN_STATE, arg=["processing", 6], timeout=FINISHED_SECONDS * 1000)
                retried = page.eval_on_selector_all("#uploads tbody tr", ROWS)
                counts, titles = nonzero(back.repository.status_counts(album)), back.repository.album_titles([album])
        finally:
            context.close()

    in_flight = [row for row in stopped if row["cause"] == "api-gone"]
    not_sent = [row for row in stopped if row["cause"] == "not-sent"]
    assert (len(in_flight), len(not_sent)) == (3, 3), [(row["file"], row["cause"]) for row in stopped]
    for row in stopped:
        assert row["state"] == "failed" and row["percent"] != "100" and row["retryable"] == "true", row
        assert "storage" not in row["reason"] and "PHOTO_PUBLIC_ENDPOINT_URL" not in row["detail"], row
        assert_plain(row)
    for row in in_flight:
        assert row["reason"].startswith("The upload service stopped answering."), row
        assert row["cleanup"] == "failed" and "could not be removed yet" in row["reason"], row
        assert f"/api/photos/{row['photoId']}/complete: network error" in row["detail"], row
        assert "/healthz does not answer either" in row["detail"], row
    for row in not_sent:
        assert row["cleanup"] == "none" and "Nothing was sent" in row["reason"], row
        assert "could not" not in row["reason"] and "failed" not in row["reason"], "no cleanup is claimed to have failed"
    assert "stopped answering, so 6 file(s) were not uploaded" in notice
    assert retry_label == "Retry failed uploads (6)"
    assert pending_while_down == {PhotoStatus.PENDING: 3}, "the three rows the page could not clean up, as it said"

    ids_after = {row["file"]: row["photoId"] for row in retried}
    assert all((row["percent"], row["cleanup"], row["cause"]) == ("100", None, None) for row in retried), retried
    assert all(ids_after[row["file"]] == row["photoId"] for row in in_flight), "the rows left pending were reused"
    assert all(ids_after[row["file"]] != row["photoId"] for row in not_sent), "files never sent got fresh ids"
    assert counts == {PhotoStatus.PENDING: 6}, "six verified uploads waiting for their run, no row twice"
    assert titles == {album: "Coast, day one"}


def nonzero(counts: dict[PhotoStatus, int]) -> dict[PhotoStatus, int]:
    return {status: count for status, count in counts.items() if count}


def wait_until(condition: Callable[[], bool], what: str, seconds: float = FINISHED_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.05)


def test_photos_uploaded_through_the_page_land_as_signed_and_are_processed(api_for: StartApi, browser: Any, tmp_path: Path) -> None:
    """On s3rver this is the test of the page's headers: a PUT whose Content-Type, Content-Length
    or If-None-Match differed from the signed ones would be refused there (403) as on S3."""
    album = uuid.uuid4()
    with api_for() as api:
        context = browser.new_context()
        try:
            page = context.new_page()
            start_upload(page, api.url("/upload"), album, photo_files(tmp_path, 2), title="Signed and sealed")
            page.wait_for_function(IN_STATE, arg=["processing", 2], timeout=FINISHED_SECONDS * 1000)
            # The run the page's `complete` requested, carried out here (no daemon in this test).
            processor = PhotoProcessor(api.repository, api.store, RenderOptions(preview_long_side=320, thumb_long_side=80), ProcessingLimits())
            assert processor.process_album(album, worker="test").rendered == 2
            rows = settled_rows(page, 2, FINISHED_SECONDS)
        finally:
            context.close()
        assert api.repository.album_titles([album]) == {album: "Signed and sealed"}
    assert [(row["state"], row["percent"]) for row in rows] == [("done", "100"), ("done", "100")], rows
    assert all(row["thumbnailWidth"] == 80 for row in rows), "thumbnails fetched from their presigned GET URLs"


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
        stop_process_tree(serve)
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
