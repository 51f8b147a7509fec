"""Issue 18 item 9: what a sensor tick says names the albums (title and short id) and says
"changed" only of albums whose pending photos changed; every run it requests carries the album's
name as a tag; the titles come in one query per tick. Real ticks of both sensors on a Dagster
instance (PostgreSQL), the photo table on PostgreSQL, the bucket on S3 over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from dagster import DagsterInstance, SensorResult
from sqlalchemy import event

from photo_pipeline.cli import samples
from photo_pipeline.defs.renditions.assets import albums_partitions
from photo_pipeline.defs.renditions.jobs import process_album
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.defs.sensors.album_runs import ALBUM_TAG
from photo_pipeline.defs.sensors.pending_photo_sensor import pending_photo_sensor
from photo_pipeline.defs.sensors.raw_object_sensor import raw_object_sensor
from photo_pipeline.definitions import defs
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.services import discovery
from photo_pipeline.storage import S3ObjectStore, keys
from photo_pipeline_tests.defs.test_renditions import resource, store, tick, upload  # noqa: F401 - fixtures

JPEG = samples.photo_jpeg(64, 48)


def short(album: uuid.UUID) -> str:
    return f"{str(album)[:8]}…"


@contextmanager
def title_queries(resource: PhotoPipelineResource) -> Iterator[list[str]]:
    """The statements reading album titles that the resource's engine runs meanwhile."""
    engine = resource.repository().engine
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if "FROM albums" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_pending_photo_sensor_names_albums_and_says_changed_only_when_something_changed(
    instance: DagsterInstance, resource: PhotoPipelineResource, photo_db: str, store: S3ObjectStore
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    holidays, untitled = uuid.uuid4(), uuid.uuid4()
    repository.set_album_title(holidays, "Holidays")
    upload(repository, store, holidays, JPEG)
    waiting = upload(repository, store, untitled, None)  # its file has not arrived

    with title_queries(resource) as queries:
        first = tick(pending_photo_sensor, instance, None, resource)

    assert [(r.partition_key, r.tags[ALBUM_TAG]) for r in first.run_requests or []] == [(str(holidays), f"Holidays ({short(holidays)})")]
    assert len(queries) == 1, "one query for the titles of every album the tick names"

    second = tick(pending_photo_sensor, instance, first.cursor, resource)

    assert not second.run_requests
    message = second.skip_reason.skip_message if second.skip_reason else ""
    # Holidays is unchanged since its request; the untitled album changed (it was never requested)
    # and its file is missing: "changed" is said of that one only.
    assert message == (
        f"2 album(s) with pending photos; 1 new or changed since their last run request: {short(untitled)}; "
        f"no original has arrived yet for {short(untitled)}"
    )

    row = repository.get(waiting)
    assert row is not None
    store.put(row.original_key, JPEG, "image/jpeg")
    third = tick(pending_photo_sensor, instance, second.cursor, resource)
    assert [r.tags[ALBUM_TAG] for r in third.run_requests or []] == [short(untitled)]

    fourth = tick(pending_photo_sensor, instance, third.cursor, resource)
    assert fourth.skip_reason is not None and fourth.skip_reason.skip_message == (
        f"2 album(s) with pending photos, each with its run already requested: Holidays ({short(holidays)}), {short(untitled)}"
    )
    assert "changed" not in (fourth.skip_reason.skip_message or "")


def test_pending_photo_sensor_names_the_albums_whose_runs_are_in_flight(
    instance: DagsterInstance, resource: PhotoPipelineResource, photo_db: str, store: S3ObjectStore
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    album = uuid.uuid4()
    repository.set_album_title(album, "Studio | *shoot*\u202e")
    upload(repository, store, album, JPEG)
    instance.add_dynamic_partitions(albums_partitions.name, [str(album)])
    instance.create_run_for_job(job_def=defs().resolve_job_def(process_album.name), tags={"dagster/partition": str(album)})

    result = tick(pending_photo_sensor, instance, None, resource)

    assert not result.run_requests
    label = f"Studio | *shoot*\\u202e ({short(album)})"  # the title escaped, as in any output
    assert result.skip_reason is not None and result.skip_reason.skip_message == (
        f"1 album(s) with pending photos; 1 new or changed since their last run request: {label}; "
        f"a run is already queued or running for {label}"
    )


def test_raw_object_sensor_names_the_albums_it_created_rows_in(
    instance: DagsterInstance, resource: PhotoPipelineResource, photo_db: str, store: S3ObjectStore
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    album = uuid.uuid4()
    repository.set_album_title(album, "Scans")
    store.put(keys.raw_key(album, uuid.uuid4(), "jpg"), JPEG, "image/jpeg")

    result: SensorResult = tick(raw_object_sensor, instance, None, resource)

    assert [r.tags[ALBUM_TAG] for r in result.run_requests or []] == [f"Scans ({short(album)})"]
    again = tick(raw_object_sensor, instance, result.cursor, resource)
    assert again.skip_reason is not None and again.skip_reason.skip_message == "looked at 1 raw object(s); none without a row"


def test_tick_messages_without_dagster() -> None:
    a, b, c = (uuid.UUID(int=i) for i in (1, 2, 3))
    titles = {a: "A"}
    assert discovery.album_label(a, "A") == "A (00000000…)" and discovery.album_label(b, None) == "00000000…"
    assert discovery.named_albums([a, b, c], titles, limit=2) == "A (00000000…), 00000000… and 1 more"
    assert discovery.pending_skip_reason([], [], set(), titles) == "no album has pending photos"
    assert discovery.raw_skip_reason(4, {a: [b, c]}, titles, []) == (
        "looked at 4 raw object(s); created pending rows for 2 without one, in A (00000000…), whose runs are already queued or running"
    )
