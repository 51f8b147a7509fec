"""What the sensors decide, without Dagster: which raw objects need rows, which albums need a
run, and how the sensors' cursors move. Pure functions over listings and rows.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from photo_pipeline.photos.repository import AlbumPending, NewPhoto, PhotoRecord
from photo_pipeline.storage import ObjectInfo, keys


@dataclass(frozen=True)
class RawSweepCursor:
    """Position in a sweep of raw/ that spans several ticks.

    Keys under raw/ are not time-ordered, so a StartAfter position alone would miss uploads that
    sort before it; instead each tick lists the next slice, and at the end of the listing the
    sweep starts over. Every object is therefore seen once per sweep, and a tick's work is bounded.
    """

    after: str | None = None
    sweeps_completed: int = 0

    def to_json(self) -> str:
        return json.dumps({"after": self.after, "sweeps_completed": self.sweeps_completed})

    @classmethod
    def from_json(cls, raw: str | None) -> RawSweepCursor:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            return cls(after=data.get("after"), sweeps_completed=int(data.get("sweeps_completed", 0)))
        except (ValueError, TypeError, AttributeError):
            # A cursor from an older version or hand-edited in the UI: start a fresh sweep.
            return cls()

    def advanced(self, last_key: str | None, reached_end: bool) -> RawSweepCursor:
        if reached_end:
            return RawSweepCursor(after=None, sweeps_completed=self.sweeps_completed + 1)
        return RawSweepCursor(after=last_key, sweeps_completed=self.sweeps_completed)


def photos_to_adopt(objects: Iterable[ObjectInfo], rows_by_key: Mapping[str, PhotoRecord]) -> list[NewPhoto]:
    """Rows to create for raw objects that have none, with ids read from or minted for the key."""
    adopted: list[NewPhoto] = []
    for obj in objects:
        if obj.key in rows_by_key:
            continue
        identity = keys.identify_raw_key(obj.key)
        if identity is None or keys.unholdable_reason(obj.key) is not None:
            continue
        adopted.append(
            NewPhoto(
                id=identity.photo_id,
                album_id=identity.album_id,
                original_key=obj.key,
                filename=keys.bounded_filename(obj.key),
                content_type=keys.content_type_for_extension(identity.extension),
                original_bytes=obj.size,
            )
        )
    return adopted


def split_listing(objects: Iterable[ObjectInfo]) -> tuple[list[ObjectInfo], list[keys.SkippedKey]]:
    """The listed objects whose keys the table can hold, and the others (skipped, reported)."""
    holdable: list[ObjectInfo] = []
    skipped: list[keys.SkippedKey] = []
    for obj in objects:
        reason = keys.unholdable_reason(obj.key)
        if reason is None:
            holdable.append(obj)
        else:
            skipped.append(keys.SkippedKey(obj.key, reason))
    return holdable, skipped


def describe_skipped(skipped: Sequence[keys.SkippedKey], limit: int = 5) -> str:
    """One line for logs and skip reasons: how many, and the first few, escaped and shortened."""
    shown = "; ".join(f"{s.shown} ({s.reason})" for s in skipped[:limit])
    more = f"; and {len(skipped) - limit} more" if len(skipped) > limit else ""
    return f"{len(skipped)} key(s) the photo table cannot hold, skipped: {shown}{more}"


def group_by_album(photos: Iterable[NewPhoto], created: Collection[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Album -> ids of the photos actually created (another tick may have created the rest)."""
    albums: dict[uuid.UUID, list[uuid.UUID]] = {}
    for photo in photos:
        if photo.id in created:
            albums.setdefault(photo.album_id, []).append(photo.id)
    return albums


def run_key(prefix: str, album_id: uuid.UUID, parts: Iterable[str]) -> str:
    """Stable key for a run request: the same album and the same work give the same key, so a
    repeated or overlapping tick cannot launch a second run for it."""
    digest = hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()[:16]
    return f"{prefix}:{album_id}:{digest}"


@dataclass(frozen=True)
class PendingCursor:
    """For each album with pending photos, the newest change already turned into a run request.
    An album is looked at again only when its pending set changed (new rows, released rows)."""

    requested: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.requested, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | None) -> PendingCursor:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except ValueError:
            return cls()
        if not isinstance(data, dict):
            return cls()
        return cls(requested={str(k): str(v) for k, v in data.items()})


def pending_marker(album: AlbumPending) -> str:
    return f"{album.newest_updated_at.isoformat()}#{album.pending}"


def albums_with_news(pending: Sequence[AlbumPending], cursor: PendingCursor) -> list[AlbumPending]:
    return [album for album in pending if cursor.requested.get(str(album.album_id)) != pending_marker(album)]


def next_pending_cursor(
    pending: Sequence[AlbumPending], cursor: PendingCursor, handled: Collection[uuid.UUID]
) -> PendingCursor:
    """Remember the albums handled this tick; forget albums that have nothing pending any more,
    so the cursor stays as small as the set of albums with work."""
    still_pending = {str(album.album_id): album for album in pending}
    requested = {k: v for k, v in cursor.requested.items() if k in still_pending}
    for album_id in handled:
        album = still_pending.get(str(album_id))
        if album is not None:
            requested[str(album_id)] = pending_marker(album)
    return PendingCursor(requested=requested)



# -- expired claims: albums to hand to a new run, and runs that stopped renewing ------------------


def worker_of(token: str) -> str:
    """The worker (a run id, for Dagster runs) of a claim token `worker/suffix`."""
    return token.rsplit("/", 1)[0]


def expired_claims_run_key(album_id: uuid.UUID, tokens: Iterable[str]) -> str:
    """One run per album and set of expired claims: repeated ticks ask for the same run; a new
    expiry (a new token) asks for a new one."""
    return run_key("expired", album_id, tokens)


def stalled_runs(
    expired_tokens: Mapping[uuid.UUID, Sequence[str]],
    last_event_age_seconds: Mapping[str, float],
    lease_seconds: float,
) -> set[str]:
    """Runs recorded as in progress that are dead or stuck: they hold claims they stopped
    renewing (expired) and have written nothing to their event log for a lease either. A live run
    renews its claims every heartbeat; a run killed with -9 stays STARTED forever and keeps its
    album's concurrency slot, so someone has to say it is gone. `last_event_age_seconds`: the
    in-progress runs worth asking about, by run id."""
    holders = {worker_of(token) for tokens in expired_tokens.values() for token in tokens}
    return {
        run_id
        for run_id in holders
        if run_id in last_event_age_seconds and last_event_age_seconds[run_id] > lease_seconds
    }


# -- what a tick says: albums by title and short id -----------------------------------------------

# How many albums one tick message names; the others are counted.
NAMED_ALBUMS = 5
# Titles are uploaders' text: shown escaped (keys.display_key) and at most this long.
TITLE_CHARS = 40


def album_label(album_id: uuid.UUID, title: str | None) -> str:
    """An album as a tick names it: "Holidays (3f2a9c1e…)", or the short id alone. The full id
    is on the run (its partition) and in the album's pages."""
    short = f"{str(album_id)[:8]}…"
    return f"{keys.display_key(title, TITLE_CHARS)} ({short})" if title else short


def named_albums(album_ids: Sequence[uuid.UUID], titles: Mapping[uuid.UUID, str], limit: int = NAMED_ALBUMS) -> str:
    """The first `limit` albums by label, and how many more."""
    shown = ", ".join(album_label(album_id, titles.get(album_id)) for album_id in album_ids[:limit])
    return shown + (f" and {len(album_ids) - limit} more" if len(album_ids) > limit else "")


def pending_skip_reason(
    pending: Sequence[uuid.UUID],
    changed: Sequence[uuid.UUID],
    running: Collection[uuid.UUID],
    titles: Mapping[uuid.UUID, str],
) -> str:
    """Why a pending_photo_sensor tick requested no run, naming the albums. `changed`: albums
    whose pending photos changed since their last run request (the only ones it says "changed"
    of); `running`: those of them with a process_album run queued or running."""
    if not pending:
        return "no album has pending photos"
    said = f"{len(pending)} album(s) with pending photos"
    if not changed:
        return f"{said}, each with its run already requested: {named_albums(pending, titles)}"
    parts = [f"{len(changed)} new or changed since their last run request: {named_albums(changed, titles)}"]
    busy = [album for album in changed if album in running]
    waiting = [album for album in changed if album not in running]
    if busy:
        parts.append(f"a run is already queued or running for {named_albums(busy, titles)}")
    if waiting:
        parts.append(f"no original has arrived yet for {named_albums(waiting, titles)}")
    return f"{said}; " + "; ".join(parts)


def raw_skip_reason(
    looked_at: int, created: Mapping[uuid.UUID, Sequence[uuid.UUID]], titles: Mapping[uuid.UUID, str], skipped: Sequence[keys.SkippedKey]
) -> str:
    """Why a raw_object_sensor tick requested no run: no object without a row, or rows created
    in albums that each have a run queued or running already (named)."""
    said = f"looked at {looked_at} raw object(s); "
    if created:
        photos = sum(len(ids) for ids in created.values())
        said += (
            f"created pending rows for {photos} without one, in {named_albums(list(created), titles)}, "
            "whose runs are already queued or running"
        )
    else:
        said += "none without a row"
    return said + (f"; {describe_skipped(skipped)}" if skipped else "")

