"""Issue 6, items 2, 7b and 7c on real parts: a run's memory budget, the maximum original size
(HEAD before GET, bounded streaming reads), size-bound presigned PUTs, the CLI and library
refusing over-limit files before a row exists, stale temp files of the folder store, and JPEGs
whose data ends early. PostgreSQL and SQLite, the folder store and S3 over HTTP (moto's server),
a real Dagster run on the production instance."""

from __future__ import annotations

import io
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
from click.testing import CliRunner
from dagster import DagsterInstance, materialize

from photo_pipeline.cli import samples
from photo_pipeline.cli.commands import main
from photo_pipeline.defs.renditions.assets import album_renditions, albums_partitions
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.failures import FailureKind
from photo_pipeline.photos.database import migrate
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.rendering.render import RenderOptions, estimate_memory
from photo_pipeline.services.processing import Outcome, PhotoProcessor, ProcessingLimits
from photo_pipeline.services.uploads import UploadPolicy, UploadRejected, upload_photo
from photo_pipeline.settings import Settings
from photo_pipeline.storage import (
    SPOOL_MEMORY_BYTES,
    LocalObjectStore,
    ObjectInfo,
    ObjectStore,
    ObjectTooLarge,
    PresignedUploadRejected,
    S3ObjectStore,
    keys,
    make_s3_client,
    spooled_download,
)
from photo_pipeline_tests.conftest import S3Server
from photo_pipeline_tests.rendering.truncated_files import (
    avif_item_cut,
    cut,
    encoded,
    heic_slice_cut,
    png_of_rows,
    scene,
)
from photo_pipeline_tests.storage.test_stores import (
    assert_rejected,
    presigning_store,
    put_presigned,
    stores_enforcing,
)

MIB = 1024 * 1024
SMALL = RenderOptions(preview_long_side=640, thumb_long_side=160)


@pytest.fixture
def repository(database_url: str) -> PhotoRepository:
    migrate(database_url)
    return PhotoRepository.from_url(database_url)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    bucket = request.getfixturevalue("s3_bucket")
    s3: S3Server = request.getfixturevalue("s3_env")
    return S3ObjectStore(make_s3_client(endpoint_url=s3.endpoint_url, max_attempts=2), bucket)


def add_photo(repository: PhotoRepository, store: ObjectStore, album: uuid.UUID, data: bytes, ext: str = "jpg") -> uuid.UUID:
    photo_id = uuid.uuid4()
    key = keys.raw_key(album, photo_id, ext)
    repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key))
    store.put(key, data, keys.content_type_for_extension(ext))
    return photo_id


class RecordingStore:
    """A real store, with every read of an object's bytes recorded (get, and a download that
    passed a byte of the body on)."""

    def __init__(self, inner: ObjectStore, *, head_size: int | None = None) -> None:
        self.inner = inner
        self.reads: list[str] = []
        # When set, the headers the caller is told of lie about the size, as a replaced object's would.
        self._head_size = head_size

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _told(self, info: ObjectInfo) -> ObjectInfo:
        if self._head_size is None:
            return info
        return ObjectInfo(key=info.key, size=self._head_size, last_modified=info.last_modified, etag=info.etag)

    def head(self, key: str) -> ObjectInfo:
        return self._told(self.inner.head(key))

    def get(self, key: str) -> bytes:
        self.reads.append(key)
        return self.inner.get(key)

    def download(
        self, key: str, out: BinaryIO, max_bytes: int, *, on_headers: Callable[[ObjectInfo], None] | None = None
    ) -> int:
        counted = _CountingWriter(out)
        try:
            return self.inner.download(
                key, counted, max_bytes, on_headers=None if on_headers is None else lambda info: on_headers(self._told(info))  # type: ignore[arg-type]
            )
        finally:
            if counted.written:
                self.reads.append(key)


class _CountingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.written = 0

    def write(self, chunk: bytes) -> int:
        self.written += len(chunk)
        return self._out.write(chunk)


# --- the memory budget in a run ---------------------------------------------------------------


def test_threads_wait_for_the_budget_and_every_photo_is_rendered(repository: PhotoRepository, store: ObjectStore) -> None:
    album = uuid.uuid4()
    png = samples.sixteen_bit_png(1500, 1500)
    # Four different originals (bytes after a PNG's IEND are ignored): copies of the same bytes
    # would be completed as duplicates, unrendered.
    photos = [add_photo(repository, store, album, png + uuid.uuid4().bytes, "png") for _ in range(4)]
    one_photo = estimate_memory(png, SMALL).working_bytes
    # Room for one photo at a time, four threads competing for it.
    limits = ProcessingLimits(workers=4, memory_budget_bytes=one_photo + one_photo // 2)
    processor = PhotoProcessor(repository, store, SMALL, limits)

    report = processor.process_album(album, worker="budget-test")

    assert report.rendered == 4
    rows = repository.get_many(photos)
    assert all(rows[p].status is PhotoStatus.COMPLETED for p in photos)
    # Never two photos' working sets at once, and the budget was really used.
    assert processor.memory_budget.peak == one_photo
    assert processor.memory_budget.in_use == 0


def test_a_photo_larger_than_the_whole_budget_fails_with_the_figures(repository: PhotoRepository, store: ObjectStore) -> None:
    album = uuid.uuid4()
    hostile = add_photo(repository, store, album, samples.sixteen_bit_png(3000, 3000), "png")
    normal = add_photo(repository, store, album, samples.photo_jpeg(1200, 900))
    processor = PhotoProcessor(repository, store, SMALL, ProcessingLimits(workers=2, memory_budget_bytes=64 * MIB))

    report = processor.process_album(album, worker="budget-test")

    rows = repository.get_many([hostile, normal])
    assert rows[normal].status is PhotoStatus.COMPLETED
    assert rows[hostile].status is PhotoStatus.FAILED  # final: never retried by a later run
    error = rows[hostile].error or ""
    assert "3000x3000 I;16 decodes to 17 MiB" in error
    assert "64 MiB (PHOTO_MEMORY_BUDGET_MB)" in error
    assert report.failed == 1 and report.rendered == 1
    assert processor.memory_budget.in_use == 0


# --- maximum original size --------------------------------------------------------------------


def test_an_original_over_the_maximum_size_fails_without_reading_its_body(repository: PhotoRepository, store: ObjectStore) -> None:
    album = uuid.uuid4()
    big = add_photo(repository, store, album, samples.photo_png(1500, 1000), "png")  # about 1.5 MB
    small = add_photo(repository, store, album, samples.photo_jpeg(640, 480))
    recording = RecordingStore(store)
    processor = PhotoProcessor(repository, recording, SMALL, ProcessingLimits(max_original_bytes=MIB))  # type: ignore[arg-type]

    processor.process_album(album, worker="size-test")

    rows = repository.get_many([big, small])
    assert rows[big].status is PhotoStatus.FAILED
    assert "over the maximum original size of 1 MiB (PHOTO_MAX_ORIGINAL_MB)" in (rows[big].error or "")
    assert rows[small].status is PhotoStatus.COMPLETED
    assert "not downloaded" in (rows[big].error or "")  # refused on its GET's headers
    assert recording.reads == [rows[small].original_key]  # not a byte of the big one's body was read


def test_headers_that_understate_the_size_do_not_let_a_large_original_through(repository: PhotoRepository, store: ObjectStore) -> None:
    album = uuid.uuid4()
    big = add_photo(repository, store, album, samples.photo_png(1500, 1000), "png")
    lying = RecordingStore(store, head_size=1000)
    processor = PhotoProcessor(repository, lying, SMALL, ProcessingLimits(max_original_bytes=MIB))  # type: ignore[arg-type]

    report = processor.process_album(album, worker="size-test")

    row = repository.get(big)
    assert row is not None and row.status is PhotoStatus.FAILED
    assert "PHOTO_MAX_ORIGINAL_MB" in (row.error or "")
    assert report.outcomes[0].outcome is Outcome.FAILED


def test_download_refuses_more_than_max_bytes(store: ObjectStore) -> None:
    store.put("raw/a/big.bin", b"x" * 100_000, "application/octet-stream")
    out = io.BytesIO()
    with pytest.raises(ObjectTooLarge, match="over the limit of 10,000 bytes"):
        store.download("raw/a/big.bin", out, max_bytes=10_000)
    assert len(out.getvalue()) <= 10_000
    assert store.download("raw/a/big.bin", out := io.BytesIO(), max_bytes=100_000) == 100_000
    assert out.getvalue() == b"x" * 100_000


def test_originals_are_spooled_to_disk_beyond_a_few_megabytes(store: ObjectStore) -> None:
    store.put("raw/a/small.bin", b"s" * 1000, "application/octet-stream")
    store.put("raw/a/large.bin", b"l" * (SPOOL_MEMORY_BYTES + 1), "application/octet-stream")
    with spooled_download(store, "raw/a/small.bin", 100 * MIB) as small:
        assert not small._rolled  # in memory  # noqa: SLF001 - SpooledTemporaryFile has no public flag
        assert small.read() == b"s" * 1000
    with spooled_download(store, "raw/a/large.bin", 100 * MIB) as large:
        assert large._rolled  # on disk, not in this process's memory  # noqa: SLF001
        assert large.read(10) == b"l" * 10


# --- presigned PUTs bound the size ------------------------------------------------------------


def test_s3_presigned_put_signs_the_content_length(s3_bucket: str) -> None:
    store = S3ObjectStore(make_s3_client(), s3_bucket)
    upload = store.presign_put("raw/a/b.jpg", "image/jpeg", 120, content_length=12345)
    query = parse_qs(urlsplit(upload.url).query)
    assert query["X-Amz-SignedHeaders"][0].split(";") == ["content-length", "content-type", "host", "if-none-match"]
    assert upload.headers == {"Content-Type": "image/jpeg", "Content-Length": "12345", "If-None-Match": "*"}


def test_a_presigned_put_with_the_signed_length_lands(store: ObjectStore) -> None:
    upload = store.presign_put("raw/a/exact.jpg", "image/jpeg", 300, content_length=5)
    put_presigned(store, upload, b"12345")
    assert store.get("raw/a/exact.jpg") == b"12345"


@stores_enforcing("content length")  # the folder store and s3rver (S3 and MinIO too); moto does not check it
@pytest.mark.parametrize("body", [b"123456", b"1234"], ids=["longer", "shorter"])
def test_a_presigned_put_of_another_length_is_rejected(presigning_store: ObjectStore, body: bytes) -> None:
    upload = presigning_store.presign_put("raw/a/sized.jpg", "image/jpeg", 300, content_length=5)
    assert_rejected(presigning_store, upload, body, {"Content-Type": "image/jpeg"})
    assert not presigning_store.exists("raw/a/sized.jpg")


def test_local_presigned_length_cannot_be_edited(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    upload = store.presign_put("raw/a/b.jpg", "image/jpeg", 60, content_length=5)
    parts = urlsplit(upload.url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    query["X-Content-Length"] = "500000000"
    forged = urlunsplit(parts._replace(query=urlencode(query)))
    with pytest.raises(PresignedUploadRejected, match="bad signature"):
        store.accept_presigned_put(forged, b"x" * 10, {"Content-Type": "image/jpeg"})
    assert list((tmp_path / "objects" / ".tmp").iterdir()) == []  # the refused body left nothing


# --- the library and the CLI refuse before a row exists ----------------------------------------


@pytest.mark.parametrize(
    ("data", "policy", "expected"),
    [
        (samples.photo_png(1500, 1000), UploadPolicy(max_original_bytes=MIB), "(PHOTO_MAX_ORIGINAL_MB)"),
        (samples.photo_jpeg(2000, 1000), UploadPolicy(max_pixels=1_000_000), "2000x1000 = 2.0 megapixels, above the limit of 1.0 megapixels (PHOTO_MAX_PIXELS)"),
        (samples.sixteen_bit_png(3000, 3000), UploadPolicy(memory_budget_bytes=64 * MIB), "64 MiB (PHOTO_MEMORY_BUDGET_MB)"),
    ],
    ids=["bytes", "pixels", "memory"],
)
def test_upload_refuses_an_over_limit_file_before_creating_a_row(
    photo_db: str, s3_bucket: str, tmp_path: Path, data: bytes, policy: UploadPolicy, expected: str
) -> None:
    migrate(photo_db)
    repository = PhotoRepository.from_url(photo_db)
    store = S3ObjectStore(make_s3_client(), s3_bucket)
    path = tmp_path / "photo.img"
    path.write_bytes(data)
    album, photo_id = uuid.uuid4(), uuid.uuid4()
    with pytest.raises(UploadRejected) as rejected:
        upload_photo(repository, store, album, path, policy=policy, photo_id=photo_id)
    assert expected in str(rejected.value)
    assert repository.get(photo_id) is None
    assert store.list_page("raw/") == []


def test_upload_signs_the_file_size_into_the_put(tmp_path: Path, sqlite_url: str) -> None:
    migrate(sqlite_url)
    repository = PhotoRepository.from_url(sqlite_url)
    store = LocalObjectStore(tmp_path / "objects")
    path = tmp_path / "p.jpg"
    path.write_bytes(samples.photo_jpeg(400, 300))
    result = upload_photo(repository, store, uuid.uuid4(), path)
    assert store.get(result.key) == path.read_bytes()
    # What upload_photo signed: a URL for exactly this size, refusing one byte more.
    upload = store.presign_put(result.key, "image/jpeg", 60, content_length=result.size)
    with pytest.raises(PresignedUploadRejected, match="body is longer"):
        store.accept_presigned_put(upload.url, path.read_bytes() + b"!", {"Content-Type": "image/jpeg"})


def test_cli_upload_refuses_an_over_limit_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PHOTO_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PHOTO_PIPELINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PHOTO_MAX_ORIGINAL_MB", "1")
    big = tmp_path / "big.png"
    big.write_bytes(samples.photo_png(1500, 1000))
    small = tmp_path / "small.jpg"
    small.write_bytes(samples.photo_jpeg(400, 300))
    album = uuid.uuid4()
    runner = CliRunner()
    assert runner.invoke(main, ["init-db"], catch_exceptions=False).exit_code == 0

    result = runner.invoke(main, ["upload", str(album), str(big), str(small)], catch_exceptions=False)

    assert result.exit_code == 1, result.output
    assert "big.png" in result.output and "PHOTO_MAX_ORIGINAL_MB" in result.output
    assert "uploaded small.jpg" in result.output
    settings = Settings.from_env()
    counts = PhotoRepository.from_url(settings.database_url).status_counts(album)
    assert sum(counts.values()) == 1  # only the small one has a row


# --- stale temp files of the folder store ----------------------------------------------------


def test_stale_temp_files_are_removed_at_start_up_but_not_fresh_ones_or_the_key(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    first = LocalObjectStore(root)
    upload = first.presign_put("raw/a/later.jpg", "image/jpeg", 3600)
    temp = root / ".tmp"
    # What a killed upload leaves: a partial file, written through the store's own temp naming.
    stale = temp / "put-killed"
    stale.write_bytes(b"half an upload")
    day_and_a_bit = time.time() - 25 * 3600
    os.utime(stale, (day_and_a_bit, day_and_a_bit))
    fresh = temp / "put-in-progress"
    fresh.write_bytes(b"being written right now")

    LocalObjectStore(root)  # a restart

    assert not stale.exists()
    assert fresh.exists()
    assert (root / ".presign-key").exists()
    # The signing key survived: a URL issued before the restart still works.
    LocalObjectStore(root).accept_presigned_put(upload.url, b"jpeg", {"Content-Type": "image/jpeg"})
    assert first.remove_stale_temp_files(older_than_seconds=0) == ["put-in-progress"]


# --- JPEGs whose data ends early ---------------------------------------------------------------


def test_truncated_jpegs_fail_or_are_flagged_as_far_as_the_decoder_can_tell(
    repository: PhotoRepository, store: ObjectStore
) -> None:
    album = uuid.uuid4()
    no_eoi = add_photo(repository, store, album, samples.corrupt_jpeg())
    padded = add_photo(repository, store, album, samples.truncated_jpeg_with_eoi())
    progressive = add_photo(repository, store, album, samples.truncated_progressive_jpeg_with_eoi())
    letterbox = add_photo(repository, store, album, samples.grey_letterboxed_jpeg())
    intact = add_photo(repository, store, album, samples.photo_jpeg(1200, 900, seed=3))

    report = PhotoProcessor(repository, store, SMALL).process_album(album, worker="truncation-test")

    rows = repository.get_many([no_eoi, padded, progressive, letterbox, intact])
    # Cut with no EOI: Pillow itself says "image file is truncated".
    assert rows[no_eoi].status is PhotoStatus.FAILED
    assert "truncated" in (rows[no_eoi].error or "")
    # Cut but ending in EOI: libjpeg pads with grey silently; the grey band is flagged.
    assert rows[padded].status is PhotoStatus.COMPLETED
    assert "probably truncated" in (rows[padded].error or "")
    # Known limits of the heuristic, pinned so a change in behaviour is noticed:
    # a cut progressive JPEG looks complete (blurred, no padding) and is not flagged ...
    assert rows[progressive].status is PhotoStatus.COMPLETED and rows[progressive].error is None
    # ... and a genuine exactly-mid-grey bottom band is flagged although nothing is wrong.
    assert rows[letterbox].status is PhotoStatus.COMPLETED and "probably truncated" in (rows[letterbox].error or "")
    assert rows[intact].status is PhotoStatus.COMPLETED and rows[intact].error is None
    assert report.flagged == 2


# --- originals of every format whose data ends early (issue 18 item 4) -------------------------


def test_truncated_originals_of_every_format_fail_as_damaged_or_are_flagged(
    repository: PhotoRepository, store: ObjectStore
) -> None:
    """Cut files of every accepted format, and cut files whose container was closed again,
    through the processing service: each fails with the reason and as the file's own fault (no
    re-run can help), or completes flagged; nothing completes in silence."""
    album = uuid.uuid4()
    failing = {
        "png": (cut(encoded("PNG"), 0.5), "file is truncated or corrupt: image file is truncated"),
        "webp": (cut(encoded("WEBP", quality=80), 0.5), "file is truncated or corrupt: "),
        "tif": (cut(encoded("TIFF-deflate"), 0.5), "file is truncated or corrupt: "),
        "gif": (cut(encoded("GIF"), 0.5), "file is truncated or corrupt: image file is truncated"),
        "bmp": (cut(encoded("BMP"), 0.5), "file is truncated or corrupt: image file is truncated"),
        "heic": (cut(encoded("HEIF"), 0.5), "file is truncated or corrupt: Invalid input: Unexpected end of file"),
        "avif": (cut(encoded("AVIF"), 0.5), "file is truncated or corrupt: Pillow cannot read the header of this file (AVIF"),
    }
    ids = {ext: add_photo(repository, store, album, data, ext) for ext, (data, _) in failing.items()}
    closed_png = add_photo(repository, store, album, png_of_rows(scene(), 100), "png")
    closed_avif = add_photo(repository, store, album, avif_item_cut(encoded("AVIF"), 0.5), "avif")
    padded_heic = add_photo(repository, store, album, heic_slice_cut(encoded("HEIF"), 0.3), "heic")
    intact = add_photo(repository, store, album, encoded("PNG"), "png")

    report = PhotoProcessor(repository, store, SMALL).process_album(album, worker="truncation-test")

    rows = repository.get_many([*ids.values(), closed_png, closed_avif, padded_heic, intact])
    expected = {
        **{ids[ext]: reason for ext, (_, reason) in failing.items()},
        closed_png: "the PNG's image data ends after 100 of its 480 rows",
        closed_avif: "file is truncated or corrupt: Failed to decode frame 0",
    }
    for photo_id, reason in expected.items():
        failed = rows[photo_id]
        assert failed.status is PhotoStatus.FAILED, failed
        assert (failed.error or "").startswith(f"cannot render {failed.original_key}: {reason}"), failed.error
        assert failed.failure_kind is FailureKind.DAMAGED
    assert rows[padded_heic].status is PhotoStatus.COMPLETED and "probably truncated" in (rows[padded_heic].error or "")
    assert rows[intact].status is PhotoStatus.COMPLETED and rows[intact].error is None
    assert (report.failed, report.flagged, report.rendered) == (len(expected), 1, 2)


# --- a real Dagster run ----------------------------------------------------------------------


@pytest.fixture
def limited_resource(photo_db: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[PhotoPipelineResource]:
    monkeypatch.setenv("PHOTO_PREVIEW_SIZE", "800")
    monkeypatch.setenv("PHOTO_THUMB_SIZE", "200")
    monkeypatch.setenv("PHOTO_MEMORY_BUDGET_MB", "64")
    monkeypatch.setenv("PHOTO_MAX_ORIGINAL_MB", "1")
    yield PhotoPipelineResource(database_url=photo_db, bucket=s3_bucket)


def test_a_process_album_run_applies_the_configured_limits(
    instance: DagsterInstance, limited_resource: PhotoPipelineResource, photo_db: str, s3_env: S3Server, s3_bucket: str
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    store = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)
    album = uuid.uuid4()
    normal = add_photo(repository, store, album, samples.photo_jpeg(1600, 1200))
    hostile = add_photo(repository, store, album, samples.sixteen_bit_png(3000, 3000), "png")
    oversized = add_photo(repository, store, album, samples.photo_png(1500, 1000), "png")
    padded = add_photo(repository, store, album, samples.truncated_jpeg_with_eoi())
    instance.add_dynamic_partitions(albums_partitions.name, [str(album)])

    result = materialize(
        [album_renditions], partition_key=str(album), instance=instance, resources={"photo_pipeline": limited_resource}
    )

    assert result.success
    rows = repository.get_many([normal, hostile, oversized, padded])
    assert rows[normal].status is PhotoStatus.COMPLETED
    assert rows[hostile].status is PhotoStatus.FAILED and "PHOTO_MEMORY_BUDGET_MB" in (rows[hostile].error or "")
    assert rows[oversized].status is PhotoStatus.FAILED and "PHOTO_MAX_ORIGINAL_MB" in (rows[oversized].error or "")
    assert rows[padded].status is PhotoStatus.COMPLETED and "probably truncated" in (rows[padded].error or "")
    metadata = result.asset_materializations_for_node(album_renditions.node_def.name)[0].metadata
    assert metadata["photos_failed"].value == 2
    assert metadata["photos_flagged"].value == 1
