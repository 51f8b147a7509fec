"""Issue 18 item 7 in the photo table: a failure's kind is recorded beside its error by whoever
fails the photo, cleared by every other outcome, handed back by an operator's requeue (which
clears the row), and filled in by migration 0010 for rows failed before it existed. PostgreSQL
and SQLite."""

from __future__ import annotations

import uuid

from sqlalchemy import Uuid, bindparam, text

from photo_pipeline.failures import FailureKind, advice
from photo_pipeline.photos.database import create_engine_for
from photo_pipeline.photos.reconcile_queries import ReconciliationQueries
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline_tests.photos.test_repository import (  # noqa: F401 - fixtures
    Clock,
    alembic,
    clock,
    complete,
    insert_photo_with_sql,
    register,
    repository,
    row,
)


def test_a_failure_keeps_its_kind_until_the_photo_leaves_failed(repository: PhotoRepository, clock: Clock) -> None:
    album = uuid.uuid4()
    damaged, by_hand, released = register(repository, album, 3)
    claims = {c.id: c for c in repository.claim_photos([damaged, by_hand, released], "run")}

    assert repository.fail(claims[damaged], "cannot render raw/x.png: file is truncated or corrupt", FailureKind.DAMAGED)
    assert repository.fail(claims[by_hand], "bad")
    assert repository.release(claims[released], "storage error")

    assert row(repository, damaged).failure_kind is FailureKind.DAMAGED
    assert row(repository, by_hand).failure_kind is None, "not recorded: the advice says so"
    assert advice(row(repository, by_hand).failure_kind).retryable is None

    [requeued] = repository.requeue_failed(photo_ids=[damaged])
    assert (requeued.failed_with, requeued.failure_kind) == ("cannot render raw/x.png: file is truncated or corrupt", FailureKind.DAMAGED)
    assert (requeued.record.error, requeued.record.failure_kind) == (None, None), "the row forgets it"
    [claim] = repository.claim_photos([damaged], "rerun")
    assert complete(repository, claim)
    assert row(repository, damaged).failure_kind is None


def test_runs_that_stop_until_the_attempts_are_used_up_fail_the_photo_as_interrupted(
    repository: PhotoRepository, clock: Clock
) -> None:
    album, other_album = uuid.uuid4(), uuid.uuid4()
    [by_run] = register(repository, album, 1)
    [by_reconcile] = register(repository, other_album, 1)
    repository.claim_photos([by_run], "crashed")
    [claim] = repository.claim_photos([by_reconcile], "crashed")
    clock.advance(3600)

    # The next run's way, and reconciliation's, for claims expired with their attempts used up.
    assert repository.fail_exhausted_claims(album, lease_seconds=60, max_attempts=1) == [by_run]
    assert ReconciliationQueries(repository).end_expired_claims([(by_reconcile, claim.claim)], fail_reason="gave up after 1 attempts") == 1

    for photo_id in (by_run, by_reconcile):
        failed = row(repository, photo_id)
        assert failed.failure_kind is FailureKind.INTERRUPTED and (failed.error or "").startswith("gave up after")
        assert advice(failed.failure_kind).retryable is True


EARLIER_ERRORS = {
    "cannot render raw/a/1.jpg: file is truncated or corrupt: image file is truncated": "damaged",
    "cannot render raw/a/2.pdf: not an image Pillow can read (cannot identify image file); supported formats: JPEG": "unsupported",
    "cannot render raw/a/3.png: image is 12000x12000 = 144 megapixels, above the limit of 120 megapixels": "too_large",
    "cannot render raw/a/4.png: too large to render within the run's memory budget: 10900x10900 I;16": "too_large",
    "original raw/a/5.jpg is 300.0 MiB (314,572,800 bytes), over the maximum original size of 200 MiB": "too_large",
    "unexpected error while rendering: MemoryError: ": "unexpected",
    "gave up after 3 attempts: the last claim expired (its run stopped renewing it)": "interrupted",
    "simulated crash": None,
}


def test_migration_0010_gives_earlier_failures_their_kind_from_their_wording(database_url: str) -> None:
    alembic(database_url, "upgrade", "0008")
    engine = create_engine_for(database_url)
    album = uuid.uuid4()
    photos = {}
    for error in EARLIER_ERRORS:
        photo = uuid.uuid4()
        insert_photo_with_sql(engine, album, photo, "failed", 1)
        photos[photo] = error
    pending = uuid.uuid4()
    insert_photo_with_sql(engine, album, pending, "pending", 0)
    with engine.begin() as conn:
        for photo, error in [*photos.items(), (pending, "cannot render raw/a/9.jpg: file is truncated or corrupt")]:
            conn.execute(text("UPDATE photos SET error = :error WHERE id = :id").bindparams(bindparam("id", type_=Uuid())), {"error": error, "id": photo})

    alembic(database_url, "upgrade", "0010")
    records = PhotoRepository(engine).get_many([*photos, pending])

    assert {photos[p]: (r.failure_kind.value if r.failure_kind else None) for p, r in records.items() if p != pending} == EARLIER_ERRORS
    assert records[pending].failure_kind is None, "only failed rows are classified"

    alembic(database_url, "downgrade", "0008")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM photos WHERE status = 'failed'")).scalar_one() == len(EARLIER_ERRORS)
    engine.dispose()
