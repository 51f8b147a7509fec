"""The HTTP API over real HTTP: uvicorn on loopback, the photo table on PostgreSQL, the bucket on
moto's S3 server, runs requested on a Dagster instance with the queued run coordinator."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from PIL import Image

from photo_pipeline.api.app import ApiNotConfigured, public_base_url
from photo_pipeline.cli import samples
from photo_pipeline.failures import FailureKind
from photo_pipeline.photos.database import migrate
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.ordering import AlbumOrder
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository, utc_now
from photo_pipeline.rendering.render import RenderOptions
from photo_pipeline.services.processing import PhotoProcessor, ProcessingLimits
from photo_pipeline.storage import LocalObjectStore, keys
from photo_pipeline_tests.api.conftest import (
    AUTH,
    TOKEN,
    ApiServer,
    api_settings,
    free_port,
    requester_on,
    s3_store,
    serve_in_thread,
)
from photo_pipeline_tests.conftest import BIN, S3Server
from photo_pipeline_tests.photos.test_album_order import EXPECTED, seed_album
from photo_pipeline_tests.rendering.truncated_files import png_of_rows, scene

JPEG = samples.photo_jpeg(640, 480)
SITE = "https://www.example.com"


@pytest.fixture(scope="module")
def api(
    photo_database: str, s3_server: S3Server, queued_instance: DagsterInstance, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    bucket = s3_server.new_bucket()
    settings = api_settings(
        tmp_path_factory.mktemp("home"),
        photo_database,
        bucket,
        api_max_files=3,
        api_max_request_kb=4,
        max_original_mb=1,
        api_allowed_origins=(SITE,),
    )
    with serve_in_thread(settings, requester_on(queued_instance), store=s3_store(s3_server, bucket)) as server:
        server.instance = queued_instance
        yield server


def declare(name: str = "beach.jpg", size: int = len(JPEG), **extra: Any) -> dict[str, Any]:
    return {"name": name, "size": size, "content_type": "image/jpeg", **extra}


def create(api: ApiServer, album: uuid.UUID | str, *files: dict[str, Any]) -> requests.Response:
    return api.post(f"/api/albums/{album}/uploads", json={"files": list(files)})


def put(upload: dict[str, Any], data: bytes) -> requests.Response:
    return requests.put(upload["url"], data=data, headers=upload["headers"], timeout=30)


def album_runs(instance: DagsterInstance, album: uuid.UUID) -> list[Any]:
    return instance.get_run_records(RunsFilter(job_name="process_album", tags={"dagster/partition": str(album)}))


# -- auth, description, errors ------------------------------------------------------------------


def test_the_api_needs_the_bearer_token_and_never_logs_it(api: ApiServer, caplog: pytest.LogCaptureFixture) -> None:
    album = uuid.uuid4()
    path = f"/api/albums/{album}"
    with caplog.at_level(logging.INFO, logger="photo_pipeline.api"):
        missing = requests.get(api.url(path), timeout=10)
        wrong = requests.get(api.url(path), headers={"Authorization": "Bearer " + "y" * len(TOKEN)}, timeout=10)
        prefix = requests.get(api.url(path), headers={"Authorization": f"Bearer {TOKEN[:-1]}"}, timeout=10)
        basic = requests.get(api.url(path), headers={"Authorization": f"Basic {TOKEN}"}, timeout=10)
        right = api.get(path)
    for refused in (missing, wrong, prefix, basic):
        assert refused.status_code == 401, refused.text
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert set(refused.json()) == {"error"} and "bearer token" in refused.json()["error"]
    assert right.status_code == 200, right.text
    assert f"GET {path} -> 401" in caplog.text and f"GET {path} -> 200" in caplog.text
    assert TOKEN not in caplog.text and TOKEN[:-1] not in caplog.text

    # Open: health, the page and the description.
    assert requests.get(api.url("/healthz"), timeout=10).json() == {"status": "ok", "database": "ok", "bucket": "ok", "error": None}
    assert "<title>Upload photos" in requests.get(api.url("/upload"), timeout=10).text
    description = requests.get(api.url("/openapi.json"), timeout=10).json()
    assert set(description["paths"]) == {
        "/api/albums/{album_id}/uploads",
        "/api/photos/{photo_id}/complete",
        "/api/photos/{photo_id}",
        "/api/photos/{photo_id}/restore",
        "/api/albums/{album_id}",
        "/api/albums/{album_id}/restore",
        "/api/albums/{album_id}/check",
        "/healthz",
    }
    assert set(description["paths"]["/api/albums/{album_id}"]) == {"get", "delete"}
    assert description["paths"]["/api/albums/{album_id}/uploads"]["post"]["security"] == [{"bearer": []}]
    assert "UploadsIn" in description["components"]["schemas"]
    album_parameters = {p["name"]: p["in"] for p in description["paths"]["/api/albums/{album_id}"]["get"]["parameters"]}
    assert album_parameters == {"album_id": "path", "limit": "query", "after": "query", "order": "query", "ids": "query"}
    [order] = [p for p in description["paths"]["/api/albums/{album_id}"]["get"]["parameters"] if p["name"] == "order"]
    assert order["schema"] == {"type": "string", "enum": ["upload", "taken"], "default": "upload"}


def test_unknown_routes_and_methods_answer_json(api: ApiServer) -> None:
    assert api.get("/api/nothing-here").json() == {"error": "Not Found"}
    wrong_method = requests.put(api.url("/healthz"), timeout=10)
    assert wrong_method.status_code == 405 and set(wrong_method.json()) == {"error"}


def test_cors_allows_the_configured_origins_only(api: ApiServer) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    allowed = requests.options(api.url(f"/api/albums/{uuid.uuid4()}/uploads"), headers={"Origin": SITE, **preflight}, timeout=10)
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == SITE
    assert "authorization" in allowed.headers["Access-Control-Allow-Headers"].lower()
    other = requests.options(api.url("/api/albums/x/uploads"), headers={"Origin": "https://evil.example", **preflight}, timeout=10)
    assert other.status_code == 400 and "Access-Control-Allow-Origin" not in other.headers
    # A refusal is readable by the site's page too.
    refused = requests.get(api.url(f"/api/albums/{uuid.uuid4()}"), headers={"Origin": SITE}, timeout=10)
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == SITE


# -- uploads ------------------------------------------------------------------------------------


def test_an_upload_goes_row_first_then_url_then_verified_completion_requests_the_run(api: ApiServer) -> None:
    album = uuid.uuid4()
    chosen = uuid.uuid4()
    answer = create(api, album, declare("C:\\fakepath\\beach.jpg", photo_id=str(chosen)), declare("dunes.JPEG"))
    assert answer.status_code == 201, answer.text
    first, second = answer.json()["uploads"]
    assert first["photo_id"] == str(chosen) and first["filename"] == "beach.jpg"
    assert first["key"] == keys.raw_key(album, chosen, "jpg") and second["key"].endswith(".jpg")
    assert first["method"] == "PUT" and first["url"].startswith(api.store.client.meta.endpoint_url)
    assert first["headers"] == {"Content-Type": "image/jpeg", "If-None-Match": "*", "Content-Length": str(len(JPEG))}
    # Rows first: both pending before anything is uploaded.
    assert api.repository.status_counts(album)[PhotoStatus.PENDING] == 2

    # The same request again (an answer lost on the way): the same row, a fresh URL, no new row.
    again = create(api, album, declare("C:\\fakepath\\beach.jpg", photo_id=str(chosen)))
    assert again.status_code == 201 and again.json()["uploads"][0]["photo_id"] == str(chosen)
    assert api.repository.status_counts(album)[PhotoStatus.PENDING] == 2

    assert put(first, JPEG).status_code == 200
    assert put(first, JPEG).status_code == 412, "a presigned PUT never replaces an uploaded photo"
    done = api.post(f"/api/photos/{chosen}/complete")
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["status"], body["album_id"], body["processing"]) == ("pending", str(album), "submitted")
    [run] = album_runs(api.instance, album)
    assert run.dagster_run.run_id == body["run_id"] and run.dagster_run.status is DagsterRunStatus.QUEUED
    assert run.dagster_run.tags["photo_pipeline/trigger"] == "arrived"

    # The second photo joins the queued run instead of queueing another.
    assert put(second, JPEG).status_code == 200
    joined = api.post(f"/api/photos/{second['photo_id']}/complete").json()
    assert joined["processing"].startswith("skipped") and joined["run_id"] is None
    assert len(album_runs(api.instance, album)) == 1


def test_an_upload_request_may_title_the_album(api: ApiServer) -> None:
    album = uuid.uuid4()
    assert create_titled(api, album, "  Summer at the coast ").status_code == 201
    assert api.repository.album_titles([album]) == {album: "Summer at the coast"}
    assert create_titled(api, album, "Summer, renamed").status_code == 201
    assert api.repository.album_titles([album]) == {album: "Summer, renamed"}

    # A title that cannot be kept refuses the request before any row is written.
    other = uuid.uuid4()
    for title, reason in (("   ", "the album title is empty"), ("x" * 201, "at most 200"), ("a\u202eb", "album title")):
        refused = create_titled(api, other, title)
        assert refused.status_code == 400 and reason in refused.json()["error"], (title, refused.text)
    assert sum(api.repository.status_counts(other).values()) == 0 and api.repository.album_titles([other]) == {}


def create_titled(api: ApiServer, album: uuid.UUID, title: str) -> requests.Response:
    return api.post(f"/api/albums/{album}/uploads", json={"files": [declare(f"{uuid.uuid4().hex[:8]}.jpg")], "title": title})


def test_refused_requests_create_no_row(api: ApiServer) -> None:
    album = uuid.uuid4()
    cases = {
        "x": ({"files": [declare()]}, 400, "album id must be a UUID"),
        str(album): ({"files": []}, 400, "no files declared"),
        f"{album}/too-many": ({"files": [declare(f"p{i}.jpg") for i in range(4)]}, 400, "at most 3 (PHOTO_API_MAX_FILES)"),
        f"{album}/empty": ({"files": [declare(size=0)]}, 400, "the file is empty"),
        f"{album}/big": ({"files": [declare(size=2 * 1024 * 1024)]}, 413, "PHOTO_MAX_ORIGINAL_MB"),
        f"{album}/text": ({"files": [declare("notes.txt")]}, 415, "not an image type we accept"),
        f"{album}/type": ({"files": [declare(content_type="text/html")]}, 415, "text/html is not an image type"),
        f"{album}/typo": ({"files": [{"name": "a.jpg", "size": 3, "sise": 3}]}, 400, "files.0.sise: Extra inputs are not permitted"),
        f"{album}/mixed": ({"files": [declare("ok.jpg"), declare("bad.exe")]}, 415, "bad.exe"),
    }
    for label, (payload, status, reason) in cases.items():
        answer = create(api, label.split("/")[0], *payload["files"]) if payload["files"] else api.post(
            f"/api/albums/{label}/uploads", json=payload
        )
        assert answer.status_code == status, (label, answer.text)
        assert reason in answer.json()["error"], (label, answer.text)
    not_json = api.post(f"/api/albums/{album}/uploads", data=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"].startswith("invalid request")
    oversized = api.post(f"/api/albums/{album}/uploads", data=b" " * 5000, headers={**AUTH, "Content-Type": "application/json"})
    assert oversized.status_code == 413 and "PHOTO_API_MAX_REQUEST_KB" in oversized.json()["error"]
    assert sum(api.repository.status_counts(album).values()) == 0


def test_complete_believes_the_bucket_not_the_client(api: ApiServer) -> None:
    album = uuid.uuid4()
    [upload] = create(api, album, declare()).json()["uploads"]
    photo = upload["photo_id"]
    never_sent = api.post(f"/api/photos/{photo}/complete")
    assert never_sent.status_code == 409 and "the upload did not arrive" in never_sent.json()["error"]
    # Something else wrote the key, with another size (the signed length stops a browser doing it).
    api.store.put(upload["key"], JPEG[:100], "image/jpeg")
    different = api.post(f"/api/photos/{photo}/complete")
    assert different.status_code == 409 and f"holds 100 bytes, {len(JPEG)} were declared" in different.json()["error"]
    assert api.repository.get(uuid.UUID(photo)).status is PhotoStatus.PENDING
    assert album_runs(api.instance, album) == [], "no run for an upload that did not arrive"
    unknown = api.post(f"/api/photos/{uuid.uuid4()}/complete")
    assert unknown.status_code == 404 and "no photo" in unknown.json()["error"]
    assert api.post("/api/photos/not-an-id/complete").status_code == 400


def test_cleanup_removes_row_and_object_and_a_late_put_is_removed_not_adopted(api: ApiServer) -> None:
    album = uuid.uuid4()
    [upload] = create(api, album, declare()).json()["uploads"]
    assert put(upload, JPEG).status_code == 200
    deleted = api.delete(f"/api/photos/{upload['photo_id']}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["removed_keys"] == [upload["key"]] and deleted.json()["status"] == "pending"
    assert deleted.json()["outcome"] == "cleaned_up"
    assert not api.store.exists(upload["key"]) and sum(api.repository.status_counts(album).values()) == 0
    assert api.delete(f"/api/photos/{upload['photo_id']}").status_code == 404

    # The client's PUT lands after its cleanup (a slow retry): the tombstone says "cancelled".
    assert put(upload, JPEG).status_code == 200
    plan = api.post(f"/api/albums/{album}/check").json()
    assert [a["kind"] for a in plan["planned"]] == ["delete_cancelled"] and plan["dry_run"] is True
    assert api.store.exists(upload["key"]), "a dry run changes nothing"
    applied = api.post(f"/api/albums/{album}/check", json={"apply": True})
    assert applied.status_code == 200 and applied.json()["applied"]["delete_cancelled"] == 1
    assert not api.store.exists(upload["key"]) and sum(api.repository.status_counts(album).values()) == 0


def test_a_photo_being_processed_goes_to_the_trash_and_its_run_is_fenced(api: ApiServer) -> None:
    album = uuid.uuid4()
    [upload] = create(api, album, declare()).json()["uploads"]
    put(upload, JPEG)
    [claim] = api.repository.claim_batch(album, "test-run", 1)
    trashed = api.delete(f"/api/photos/{upload['photo_id']}")
    assert trashed.status_code == 200, trashed.text
    assert (trashed.json()["outcome"], trashed.json()["status"], trashed.json()["removed_keys"]) == ("trashed", "processing", [])
    assert not api.repository.fail(claim, "late"), "its run cannot bring it back"
    assert api.repository.get(claim.id).status is PhotoStatus.TRASHED and api.store.exists(upload["key"])


# -- albums -------------------------------------------------------------------------------------


def test_an_album_lists_counts_pages_and_short_lived_rendition_urls(api: ApiServer) -> None:
    album = uuid.uuid4()
    # Two different photos: a copy of the same bytes would be completed as a duplicate, unrendered.
    other = samples.photo_jpeg(640, 480, seed=1)
    uploads = create(api, album, declare("a.jpg"), declare("b.jpg", size=len(other)), declare("c.jpg")).json()["uploads"]
    put(uploads[0], JPEG)
    put(uploads[1], other)
    processor = PhotoProcessor(api.repository, api.store, RenderOptions(preview_long_side=320, thumb_long_side=80), ProcessingLimits())
    assert processor.process_album(album, worker="test").rendered == 2

    view = api.get(f"/api/albums/{album}").json()
    assert view["counts"]["completed"] == 2 and view["counts"]["pending"] == 1 and view["total"] == 3
    assert [p["filename"] for p in view["photos"]] == ["a.jpg", "b.jpg", "c.jpg"] and view["next_after"] is None
    completed = view["photos"][0]
    assert completed["status"] == "completed" and completed["width"] == 640
    # The placeholder a page paints while the thumbnail loads (ThumbHash, base64).
    assert completed["thumbhash"] and view["photos"][2]["thumbhash"] is None
    thumbnail = requests.get(completed["thumbnail_url"], timeout=10)
    assert thumbnail.status_code == 200 and thumbnail.content[:2] == b"\xff\xd8"
    assert "X-Amz-Expires=300" in completed["preview_url"]
    assert view["photos"][2]["thumbnail_url"] is None, "no URL before the photo is completed"

    page = api.get(f"/api/albums/{album}", params={"limit": 2}).json()
    assert [p["filename"] for p in page["photos"]] == ["a.jpg", "b.jpg"] and page["next_after"] == uploads[1]["photo_id"]
    rest = api.get(f"/api/albums/{album}", params={"limit": 2, "after": page["next_after"]}).json()
    assert [p["filename"] for p in rest["photos"]] == ["c.jpg"] and rest["next_after"] is None
    mine = api.get(f"/api/albums/{album}", params={"ids": f"{uploads[2]['photo_id']},{uuid.uuid4()}"}).json()
    assert [p["filename"] for p in mine["photos"]] == ["c.jpg"]
    assert api.get(f"/api/albums/{album}", params={"limit": 0}).status_code == 400
    assert api.get(f"/api/albums/{album}", params={"after": "zzz"}).status_code == 400


def test_a_failed_photo_says_whether_a_rerun_can_help_and_what_to_do(api: ApiServer) -> None:
    """Issue 18 item 7: the hint "an operator can re-run it" only where a re-run can help (the
    server's failures), decided by the API (failures.py) and shown by the page."""
    album = uuid.uuid4()
    truncated = png_of_rows(scene(), 100)
    cut, stopped = create(api, album, declare("cut.png", size=len(truncated), content_type="image/png"), declare("fine.jpg")).json()["uploads"]
    put(cut, truncated)
    put(stopped, JPEG)
    processor = PhotoProcessor(api.repository, api.store, RenderOptions(preview_long_side=320, thumb_long_side=80), ProcessingLimits())
    # The truncated PNG fails as damaged; the other photo's runs "crash" until its attempts are used up.
    [claim] = api.repository.claim_photos([uuid.UUID(stopped["photo_id"])], "crashed-run")
    assert processor.process_album(album, worker="test").failed == 1
    assert api.repository.fail(claim, "gave up after 3 attempts: the last claim expired", FailureKind.INTERRUPTED)

    photos = {p["filename"]: p for p in api.get(f"/api/albums/{album}").json()["photos"]}
    damaged, interrupted = photos["cut.png"], photos["fine.jpg"]
    assert damaged["status"] == "failed" and "the PNG's image data ends after 100 of its 480 rows" in damaged["error"]
    assert (damaged["failure_kind"], damaged["retryable"]) == ("damaged", False)
    assert "Upload it again from the original" in damaged["hint"] and "re-run" not in damaged["hint"]
    assert (interrupted["failure_kind"], interrupted["retryable"]) == ("interrupted", True)
    assert interrupted["hint"].endswith("An operator can re-run it.")
    # What the uploader page reads after its `complete`: the same fields.
    completed = api.post(f"/api/photos/{cut['photo_id']}/complete").json()
    assert (completed["status"], completed["retryable"], completed["hint"]) == ("failed", False, damaged["hint"])
    # Not failed: no verdict at all.
    fine = create(api, album, declare("other.jpg")).json()["uploads"][0]
    put(fine, JPEG)
    pending = api.post(f"/api/photos/{fine['photo_id']}/complete").json()
    assert (pending["failure_kind"], pending["retryable"], pending["hint"]) == (None, None, None)


def album_pages(api: ApiServer, album: uuid.UUID, **params: Any) -> list[list[str]]:
    """The album's pages over HTTP, following next_after to the end: file names, page by page."""
    pages: list[list[str]] = []
    after = None
    for _ in range(20):  # bounded: a cursor that never advanced would loop forever
        answer = api.get(f"/api/albums/{album}", params={**params, **({"after": after} if after else {})})
        assert answer.status_code == 200, answer.text
        view = answer.json()
        pages.append([p["filename"] for p in view["photos"]])
        after = view["next_after"]
        if after is None:
            return pages
    raise AssertionError(f"no last page after {pages}")


def test_an_album_lists_in_capture_order_on_request(api: ApiServer) -> None:
    album = uuid.uuid4()
    ids = seed_album(api.repository, album)
    taken = [f"{name}.jpg" for name in EXPECTED[AlbumOrder.TAKEN]]
    upload = [f"{name}.jpg" for name in EXPECTED[AlbumOrder.UPLOAD]]

    pages = album_pages(api, album, order="taken", limit=3)
    assert [len(page) for page in pages] == [3, 3, 3, 3, 2]
    assert [name for page in pages for name in page] == taken
    # Upload order stays the default.
    assert [name for page in album_pages(api, album, limit=5) for name in page] == upload
    assert album_pages(api, album, order="upload") == [upload]
    mine = api.get(f"/api/albums/{album}", params={"ids": f"{ids['b']},{ids['g']},{ids['e']}", "order": "taken"}).json()
    assert [p["filename"] for p in mine["photos"]] == ["e.jpg", "g.jpg", "b.jpg"]

    for wrong in ("capture", "TAKEN", "taken,upload"):
        refused = api.get(f"/api/albums/{album}", params={"order": wrong})
        assert refused.status_code == 400, refused.text
        assert refused.json() == {"error": f'order must be one of "upload", "taken", got "{wrong}"'}


def sized_processor(api: ApiServer, sizes: tuple[int, ...], extra_formats: tuple[str, ...] = ()) -> PhotoProcessor:
    """Renders with responsive sizes: a 320-px preview, so the 640x480 sample's decode is 320x240."""
    options = RenderOptions(preview_long_side=320, thumb_long_side=80, sizes=sizes, extra_formats=extra_formats)
    return PhotoProcessor(api.repository, api.store, options, ProcessingLimits())


def test_an_album_lists_each_photos_responsive_sizes_with_urls_that_serve_them(
    api: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    album = uuid.uuid4()
    uploads = create(api, album, declare("sized.jpg"), declare("waiting.jpg")).json()["uploads"]
    put(uploads[0], JPEG)
    assert sized_processor(api, (120, 240, 4000), ("WEBP", "AVIF")).process_album(album, worker="test").rendered == 1
    [copy] = create(api, album, declare("copy.jpg")).json()["uploads"]
    put(copy, JPEG)
    assert sized_processor(api, (120, 240, 4000)).process_album(album, worker="test").duplicates

    with caplog.at_level(logging.DEBUG, logger="photo_pipeline"):
        view = api.get(f"/api/albums/{album}").json()
    photos = {p["filename"]: p for p in view["photos"]}
    sized, waiting, duplicate = photos["sized.jpg"], photos["waiting.jpg"], photos["copy.jpg"]
    assert (sized["status"], waiting["status"], duplicate["duplicate_of"]) == ("completed", "pending", sized["photo_id"])
    assert waiting["renditions"] == []
    # A duplicate lists its first copy's files (issue 18 item 10), with URLs of its own that serve them.
    facts = ("size", "format", "width", "height", "bytes", "content_type")
    assert [{k: r[k] for k in facts} for r in duplicate["renditions"]] == [{k: r[k] for k in facts} for r in sized["renditions"]]
    for entry, first in zip(duplicate["renditions"], sized["renditions"], strict=True):
        assert requests.get(entry["url"], timeout=10).content == requests.get(first["url"], timeout=10).content
    assert duplicate["thumbnail_url"] and duplicate["preview_url"]

    table = api.repository.rendition_files(uuid.UUID(sized["photo_id"]))
    # Every file the table lists, largest first; 4000 is filled by the decode's own 320x240.
    sizes = ((4000, 320, 240), (240, 240, 180), (120, 120, 90))
    assert [(f.size, f.format, f.width, f.height) for f in table] == [
        (size, fmt, width, height) for size, width, height in sizes for fmt in ("AVIF", "JPEG", "WEBP")
    ]
    listed = sized["renditions"]
    assert [{k: r[k] for k in ("size", "format", "width", "height", "bytes")} for r in listed] == [
        {"size": f.size, "format": f.format, "width": f.width, "height": f.height, "bytes": f.bytes} for f in table
    ]
    content_types = {"JPEG": "image/jpeg", "WEBP": "image/webp", "AVIF": "image/avif"}
    for entry, file in zip(listed, table, strict=True):
        # Signed as the thumbnail's are, with the same lifetime.
        assert parse_qs(urlsplit(entry["url"]).query)["X-Amz-Expires"] == [str(api.settings.api_view_url_seconds)]
        served = requests.get(entry["url"], timeout=10)
        assert served.status_code == 200, served.text
        assert served.content == api.store.get(file.key) and len(served.content) == entry["bytes"]
        assert served.headers["content-type"] == entry["content_type"] == content_types[entry["format"]]
        with Image.open(io.BytesIO(served.content)) as image:
            assert (image.format, image.size) == (entry["format"], (entry["width"], entry["height"]))
    expires = datetime.fromisoformat(sized["urls_expire_at"])
    assert timedelta(0) < expires - datetime.now(expires.tzinfo) <= timedelta(seconds=api.settings.api_view_url_seconds)

    # Our log lines (the request's among them) name the path and nothing signed.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("photo_pipeline"))
    assert f"GET /api/albums/{album} -> 200" in ours and "X-Amz-Signature" not in ours
    for url in [r["url"] for r in listed] + [sized["thumbnail_url"], sized["preview_url"]]:
        assert urlsplit(url).query not in ours

    description = requests.get(api.url("/openapi.json"), timeout=10).json()["components"]["schemas"]
    assert description["PhotoOut"]["properties"]["renditions"]["items"] == {"$ref": "#/components/schemas/RenditionOut"}
    fields = description["RenditionOut"]["properties"]
    assert set(fields) == {"size", "format", "content_type", "width", "height", "bytes", "url"}
    assert "urls_expire_at" in fields["url"]["description"] and "do not log" in fields["url"]["description"]
    assert "srcset" in fields["width"]["description"]


def test_the_album_check_plans_by_default_and_applies_behind_the_safety_limit(api: ApiServer) -> None:
    # Four uploads that never arrived, registered long ago: flagging them all is "destructive"
    # beyond the limit (PHOTO_RECONCILE_MIN_CHANGES 2 here, 20 % of the album).
    album = uuid.uuid4()
    old = PhotoRepository(api.repository.engine, clock=lambda: utc_now() - timedelta(days=1))
    for _ in range(4):
        photo = uuid.uuid4()
        old.register_pending(NewPhoto(id=photo, album_id=album, original_key=keys.raw_key(album, photo, "jpg")))
    plan = api.post(f"/api/albums/{album}/check").json()
    assert plan["actions"]["flag_missing"] == 4 and plan["violations"], plan
    refused = api.post(f"/api/albums/{album}/check", json={"apply": True})
    assert refused.status_code == 409
    assert refused.json()["error"].startswith("the safety limit refuses this plan") and refused.json()["plan"]["actions"]["flag_missing"] == 4
    assert api.repository.status_counts(album)[PhotoStatus.PENDING] == 4, "a refused plan changes nothing"

    # An object that arrived without its row is adopted, and its album's run requested at once.
    other = uuid.uuid4()
    orphan = keys.raw_key(other, uuid.uuid4(), "jpg")
    api.store.put(orphan, JPEG, "image/jpeg")
    applied = api.post(f"/api/albums/{other}/check", json={"apply": True})
    assert applied.status_code == 200, applied.text
    body = applied.json()
    assert body["applied"]["adopt"] == 1 and body["dry_run"] is False and body["processing"] == "submitted"
    assert api.repository.status_counts(other)[PhotoStatus.PENDING] == 1
    assert len(album_runs(api.instance, other)) == 1
    # The other album's plan never looked at this one.
    assert api.post(f"/api/albums/{album}/check").json()["rows_seen"] == 4


# -- failures of the parts behind the API --------------------------------------------------------


def test_an_unreachable_database_or_bucket_answers_503_without_secrets(
    s3_server: S3Server, queued_instance: DagsterInstance, tmp_path: Path
) -> None:
    port = free_port()
    secret = "s3cret-password"
    settings = api_settings(tmp_path, f"postgresql+psycopg://photos:{secret}@127.0.0.1:{port}/photos", "no-such-bucket")
    with serve_in_thread(settings, requester_on(queued_instance), store=s3_store(S3Server(f"http://127.0.0.1:{port}"), "b")) as down:
        health = requests.get(down.url("/healthz"), timeout=60)
        assert health.status_code == 503
        refused = "cannot connect to the database: connection refused"
        assert health.json()["status"] == "unavailable" and health.json()["database"].startswith(f"unreachable ({refused}")
        assert health.json()["bucket"].startswith("unreachable")
        album = down.get(f"/api/albums/{uuid.uuid4()}")
        assert album.status_code == 503 and album.json()["error"].startswith(refused)
        assert "127.0.0.1" not in album.text and "photos" not in album.text, "no host or user in an answer"
        for answer in (health, album):
            assert secret not in answer.text and "Traceback" not in answer.text


# -- the embedded folder store, relayed by the API ------------------------------------------------


def test_with_the_folder_store_the_api_relays_presigned_puts_and_gets(queued_instance: DagsterInstance, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'photos.db'}"
    migrate(database)
    store = LocalObjectStore(tmp_path / "objects")
    with serve_in_thread(api_settings(tmp_path, database, None), requester_on(queued_instance), store=store) as api:
        album = uuid.uuid4()
        [upload] = create(api, album, declare()).json()["uploads"]
        assert upload["url"].startswith(api.url("/api/local-objects/raw/")), "a URL a browser can reach"
        tampered = upload["url"].replace("X-Signature=", "X-Signature=0")
        refused = requests.put(tampered, data=JPEG, headers=upload["headers"], timeout=10)
        assert refused.status_code == 403 and "bad signature" in refused.json()["error"]
        short = requests.put(upload["url"], data=JPEG[:-1], headers={**upload["headers"], "Content-Length": str(len(JPEG) - 1)}, timeout=10)
        assert short.status_code >= 400 and not store.exists(upload["key"]), "the signed length is enforced"
        assert put(upload, JPEG).status_code == 200 and store.get(upload["key"]) == JPEG
        assert put(upload, JPEG).status_code == 412
        assert api.post(f"/api/photos/{upload['photo_id']}/complete").json()["processing"] == "submitted"

        processor = PhotoProcessor(api.repository, store, RenderOptions(preview_long_side=320, thumb_long_side=80), ProcessingLimits())
        assert processor.process_album(album, worker="test").rendered == 1
        [photo] = api.get(f"/api/albums/{album}").json()["photos"]
        thumbnail = requests.get(photo["thumbnail_url"], timeout=10)
        assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
        assert thumbnail.content == store.get(api.repository.get(uuid.UUID(photo["photo_id"])).thumb_key or "")
        forged = requests.get(photo["thumbnail_url"].replace("X-Expires=", "X-Expires=9"), timeout=10)
        assert forged.status_code == 403

        # The responsive sizes' URLs are relayed the same way.
        other = samples.photo_jpeg(640, 480, seed=2)
        [second] = create(api, album, declare("sized.jpg", size=len(other))).json()["uploads"]
        assert put(second, other).status_code == 200
        assert sized_processor(api, (120,)).process_album(album, worker="test").rendered == 1
        [sized] = api.get(f"/api/albums/{album}", params={"ids": second["photo_id"]}).json()["photos"]
        [file] = api.repository.rendition_files(uuid.UUID(second["photo_id"]))
        [entry] = sized["renditions"]
        assert entry["url"].startswith(api.url("/api/local-objects/processed/120/"))
        served = requests.get(entry["url"], timeout=10)
        assert served.status_code == 200 and served.headers["content-type"] == entry["content_type"] == "image/jpeg"
        assert served.content == store.get(file.key) and (entry["width"], entry["height"]) == (120, 90)


def test_relay_urls_are_built_on_the_configured_public_url_never_on_the_host_header(
    queued_instance: DagsterInstance, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'photos.db'}"
    migrate(database)
    store = LocalObjectStore(tmp_path / "objects")
    forged = {**AUTH, "Host": "evil.example.com"}
    public = "https://photos.example.org/api-prefix"
    configured = api_settings(tmp_path, database, None, api_public_url=public)
    with serve_in_thread(configured, requester_on(queued_instance), store=store) as api:
        album = uuid.uuid4()
        answer = api.post(f"/api/albums/{album}/uploads", json={"files": [declare()]}, headers=forged)
        assert answer.status_code == 201, answer.text
        [upload] = answer.json()["uploads"]
        assert upload["url"].startswith(f"{public}/api/local-objects/raw/{album}/"), upload["url"]
        # The URL still works through the API itself (a proxy would strip the prefix).
        relayed = upload["url"].replace(public, api.base_url)
        assert requests.put(relayed, data=JPEG, headers=upload["headers"], timeout=10).status_code == 200
        assert sized_processor(api, (120,)).process_album(album, worker="test").rendered == 1
        [photo] = api.get(f"/api/albums/{album}", headers=forged).json()["photos"]
        handed_out = [photo["thumbnail_url"], photo["preview_url"], *(entry["url"] for entry in photo["renditions"])]
        assert len(handed_out) == 3 and all(url.startswith(f"{public}/api/local-objects/processed/") for url in handed_out), handed_out
        assert "evil.example.com" not in answer.text + str(photo)

    # Unset, it is the address serve listens on, whatever the request says.
    with serve_in_thread(api_settings(tmp_path, database, None), requester_on(queued_instance), store=store) as api:
        [upload] = api.post(f"/api/albums/{uuid.uuid4()}/uploads", json={"files": [declare()]}, headers=forged).json()["uploads"]
        assert upload["url"].startswith(api.url("/api/local-objects/raw/")), upload["url"]


def test_the_public_url_defaults_to_the_bind_address_and_a_wildcard_needs_the_setting(tmp_path: Path) -> None:
    embedded = api_settings(tmp_path, "sqlite://", None)
    assert public_base_url(embedded, "127.0.0.1", 8080) == "http://127.0.0.1:8080"
    assert public_base_url(embedded, "::1", 8080) == "http://[::1]:8080"
    assert public_base_url(replace(embedded, api_public_url="https://photos.example.org"), "0.0.0.0", 8080) == "https://photos.example.org"
    for wildcard in ("0.0.0.0", "::"):
        with pytest.raises(ApiNotConfigured, match="PHOTO_API_PUBLIC_URL is not set and serve listens on"):
            public_base_url(embedded, wildcard, 8080)
    # With a bucket the API hands out the bucket's own URLs: nothing to build.
    assert public_base_url(replace(embedded, bucket="photos"), "0.0.0.0", 8080) == "http://0.0.0.0:8080"


# -- the command ---------------------------------------------------------------------------------


def test_serve_refuses_to_start_without_a_usable_token(photo_database: str, tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTO_", "DAGSTER_", "AWS_"))}
    base.update({"PHOTO_DATABASE_URL": photo_database, "PHOTO_PIPELINE_HOME": str(tmp_path)})
    port = str(free_port())
    for token, host, expected in (
        (None, "127.0.0.1", "PHOTO_API_TOKEN is not set: the API refuses to start without a bearer token"),
        ("short-secret-value", "127.0.0.1", "PHOTO_API_TOKEN must be at least 24 characters long"),
        # The folder store's upload URLs point at the API: a wildcard address names no host.
        (TOKEN, "0.0.0.0", "PHOTO_API_PUBLIC_URL is not set and serve listens on 0.0.0.0"),
    ):
        env = {**base, **({"PHOTO_API_TOKEN": token} if token else {})}
        command = [str(BIN / "photo-pipeline"), "serve", "--host", host, "--port", port]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
        output = " ".join((result.stdout + result.stderr).split())
        assert result.returncode != 0 and expected in output, output
        assert token is None or token not in output, "the token is never echoed"
        assert "Traceback" not in output


def test_a_run_request_that_fails_is_reported_and_leaves_the_photo_to_the_sensors(
    photo_database: str, s3_server: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = s3_server.new_bucket()
    settings = api_settings(tmp_path / "home", photo_database, bucket)
    (tmp_path / "dagster").mkdir()
    with (
        DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance,
        serve_in_thread(settings, requester_on(instance), store=s3_store(s3_server, bucket)) as api,
    ):
        album = uuid.uuid4()
        [upload] = create(api, album, declare()).json()["uploads"]
        put(upload, JPEG)
        # The instance's run storage is gone (a full disk, a deleted volume).
        shutil.rmtree(tmp_path / "dagster" / "history")
        with caplog.at_level(logging.WARNING, logger="photo_pipeline.api"):
            done = api.post(f"/api/photos/{upload['photo_id']}/complete")
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["status"] == "pending" and body["run_id"] is None
    assert body["processing"].startswith("not requested now (") and "the sensors pick the photo up" in body["processing"]
    assert f"album {album}: the run could not be requested now" in caplog.text
