"""Completed rows written in batches (issue 21), on real parts: the photo table on PostgreSQL,
S3 over HTTP (moto's server). The transactions that complete photos are counted by SQLAlchemy's
own events on the repository's engine; fencing still holds inside a batch (a lost lease leaves
its row alone and is reported, the rest of the batch is written), an error of the connection
fails every completion of its batch, an error of one row (a constraint) fails that photo alone and
the rest of its batch is written, and an album run needs fewer transactions than photos."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from photo_pipeline.cli import samples
from photo_pipeline.photos.claims import Completion, StoredRendition
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.rendering.render import RenderOptions
from photo_pipeline.services.processing import PhotoProcessor, ProcessingLimits
from photo_pipeline.services.recording import CompletionRecorder
from photo_pipeline.storage import ObjectStore, S3ObjectStore
from photo_pipeline_tests.services.test_removal import repository, store, upload  # noqa: F401 - fixtures

SMALL = RenderOptions(preview_long_side=160, thumb_long_side=64, sizes=(64, 120))


class CompletingTransactions:
    """Counts the committed transactions that set a photo `completed` (engine events)."""

    def __init__(self, repository: PhotoRepository) -> None:
        self.engine = repository.engine
        self.committed: list[int] = []  # photos completed per transaction
        self._current = threading.local()
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "commit", self._commit)

    def _statement(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("UPDATE PHOTOS") and "completed" in str(parameters):
            self._current.count = getattr(self._current, "count", 0) + 1

    def _commit(self, conn: Any) -> None:
        count = getattr(self._current, "count", 0)
        if count:
            self.committed.append(count)
        self._current.count = 0

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._commit)


@pytest.fixture
def transactions(repository: PhotoRepository) -> Iterator[CompletingTransactions]:  # noqa: F811
    counted = CompletingTransactions(repository)
    yield counted
    counted.close()


class SlowUploads:
    """The real store; each upload takes 30 ms more, as a distant bucket's would, so several
    photos are uploading at once and their completions can share a transaction."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        time.sleep(0.03)
        self.inner.put(key, data, content_type)


def completion(claim: Any, files: tuple[StoredRendition, ...] = ()) -> Completion:
    return Completion(
        claim, thumb_key=f"processed/thumbs/{claim.id}.jpg", preview_key=f"processed/previews/{claim.id}.jpg",
        width=4, height=3, original_bytes=10, thumb_bytes=1, preview_bytes=2, files=files,
    )


def test_an_album_completes_in_fewer_transactions_than_photos_and_every_row_once(
    repository: PhotoRepository, store: S3ObjectStore, transactions: CompletingTransactions  # noqa: F811
) -> None:
    album = uuid.uuid4()
    photos = [upload(repository, store, album, samples.photo_jpeg(320, 240, seed=i)) for i in range(12)]
    processor = PhotoProcessor(repository, SlowUploads(store), SMALL, ProcessingLimits(workers=2, io_threads=4))  # type: ignore[arg-type]

    report = processor.process_album(album, "batch-run")

    assert report.rendered == 12 and not report.unfinished
    rows = repository.get_many(photos)
    assert all(rows[p].status is PhotoStatus.COMPLETED and rows[p].claimed_by is None for p in photos)
    assert all(len(repository.rendition_files(p)) == 2 for p in photos), "each photo's sizes, once"
    assert sum(transactions.committed) == 12, "every photo completed exactly once"
    assert len(transactions.committed) < 12 and max(transactions.committed) > 1, transactions.committed


def test_fencing_holds_inside_a_batch(repository: PhotoRepository, store: S3ObjectStore) -> None:  # noqa: F811
    album = uuid.uuid4()
    lost, kept = upload(repository, store, album), upload(repository, store, album)
    stale = {c.id: c for c in repository.claim_photos([lost, kept], "run-a")}
    # `lost`'s lease expired and another run claimed it: run-a's token no longer holds it.
    repository.release(stale[lost], "lease expired")
    [taken] = repository.claim_photos([lost], "run-b")
    sized = StoredRendition(key=f"processed/64/{album}/{kept}.jpg", size=64, format="JPEG", width=64, height=48, bytes=5)
    other = StoredRendition(key=f"processed/64/{album}/{lost}.jpg", size=64, format="JPEG", width=64, height=48, bytes=5)

    written = repository.complete_many([completion(stale[lost], (other,)), completion(stale[kept], (sized,))])

    assert written == [False, True]
    row = repository.get(lost)
    assert row is not None and row.status is PhotoStatus.PROCESSING and row.claimed_by == taken.claim, "untouched"
    assert repository.rendition_files(lost) == [], "no sizes recorded for a row not written"
    assert repository.get(kept).status is PhotoStatus.COMPLETED  # type: ignore[union-attr]
    assert repository.rendition_files(kept) == [sized]


def test_a_database_error_fails_every_completion_of_its_batch() -> None:
    release = threading.Event()
    calls: list[int] = []

    def failing_write(batch: Any) -> list[bool]:
        calls.append(len(batch))
        release.wait(5)
        raise SQLAlchemyError("the database went away")

    recorder = CompletionRecorder(failing_write, linger_seconds=1.0, max_batch=3)
    errors: list[BaseException] = []

    def finish() -> None:
        try:
            recorder.complete(object())  # type: ignore[arg-type]  # the writer only passes it on
        except SQLAlchemyError as exc:
            errors.append(exc)

    for _ in range(3):
        recorder.uploading()
    threads = [threading.Thread(target=finish) for _ in range(3)]
    for thread in threads:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(10)
    assert calls == [3], "one transaction for the three (the writer waited for the uploads)"
    assert len(errors) == 3, "each photo's completion raises the batch's error"


def test_a_batch_refused_for_one_rows_sake_is_written_row_by_row_and_only_that_photo_fails() -> None:
    written: list[list[str]] = []

    def write_refusing_bad(batch: Any) -> list[bool]:
        if "bad" in batch:
            raise IntegrityError("UPDATE photos ...", {}, Exception("violates check constraint"))
        written.append(list(batch))
        return [True] * len(batch)

    recorder = CompletionRecorder(write_refusing_bad, linger_seconds=1.0, max_batch=3)
    answers: dict[str, object] = {}

    def finish(name: str) -> None:
        try:
            answers[name] = recorder.complete(name)  # type: ignore[arg-type]  # the writer only passes it on
        except IntegrityError as exc:
            answers[name] = exc

    for _ in range(3):
        recorder.uploading()
    threads = [threading.Thread(target=finish, args=(name,)) for name in ("good-1", "bad", "good-2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert recorder.batches == [3], "one batch was attempted for the three"
    assert sorted(sum(written, [])) == ["good-1", "good-2"], "the others were written, each alone"
    assert all(len(rows) == 1 for rows in written)
    assert answers["good-1"] is True and answers["good-2"] is True
    assert isinstance(answers["bad"], IntegrityError), "the refused row's photo gets its own error"


def test_a_lone_photo_is_written_at_once() -> None:
    recorder = CompletionRecorder(lambda batch: [True] * len(batch), linger_seconds=5.0)
    recorder.uploading()
    started = time.monotonic()
    assert recorder.complete(object()) is True  # type: ignore[arg-type]
    assert time.monotonic() - started < 1.0, "nothing else uploading: no lingering"


def test_a_photo_whose_upload_failed_is_not_waited_for() -> None:
    recorder = CompletionRecorder(lambda batch: [True] * len(batch), linger_seconds=5.0)
    recorder.uploading()
    recorder.uploading()
    recorder.abandoned()  # its upload failed: it will never complete
    started = time.monotonic()
    assert recorder.complete(object()) is True  # type: ignore[arg-type]
    assert time.monotonic() - started < 1.0
    assert recorder.batches == [1]
