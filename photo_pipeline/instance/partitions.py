"""The `albums` dynamic partitions of erased albums: deleted, so the partition list does not grow
with deleted albums (Dagster keeps a dynamic partition until it is deleted, and the UI lists them
all). The API and the CLI delete an album's partition when they erase it; empty_trash deletes the
partitions of every erased album it finds, which also catches those whose instance was
unreachable at the time. Idempotent: a partition already gone is no error.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterable

from dagster import DagsterInstance

from photo_pipeline.instance.run_requests import ALBUMS_PARTITIONS


def remove_album_partitions(instance: DagsterInstance, album_ids: Iterable[uuid.UUID]) -> list[str]:
    """Delete these albums' partitions; returns those that existed (and are gone now)."""
    known = set(instance.get_dynamic_partitions(ALBUMS_PARTITIONS))
    removed = [str(album_id) for album_id in album_ids if str(album_id) in known]
    for partition in removed:
        instance.delete_dynamic_partition(ALBUMS_PARTITIONS, partition)
    return removed


def erased_album_partitions(
    instance: DagsterInstance, erased_among: Callable[[Collection[uuid.UUID]], Collection[uuid.UUID]]
) -> list[uuid.UUID]:
    """The albums whose partition is still there though the erase record has them
    (`erased_among`: which of these album ids were erased). Partitions that are not album ids are
    not ours to judge."""
    albums = [album for album in map(_album_id, instance.get_dynamic_partitions(ALBUMS_PARTITIONS)) if album is not None]
    erased = set(erased_among(albums)) if albums else set()
    return [album for album in albums if album in erased]


def _album_id(partition: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(partition)
    except ValueError:
        return None
