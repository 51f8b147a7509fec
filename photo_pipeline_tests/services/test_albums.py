"""An album as a page shows it (services/albums.py), on both databases: whole-album counts,
pages in upload or capture order with a keyset cursor, or just the named photos; the completed
photos' responsive sizes, read for the whole page at once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event

from photo_pipeline.photos.claims import StoredRendition
from photo_pipeline.photos.database import CHUNK, migrate
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.ordering import AlbumOrder
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.services.albums import album_view
from photo_pipeline.storage import LocalObjectStore, keys
from photo_pipeline_tests.photos.test_album_order import EXPECTED, seed_album


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        # Two photos share each instant: the id breaks the tie, as the cursor must.
        self.now += timedelta(seconds=0.5)
        return self.now.replace(microsecond=0)


def test_pages_follow_upload_order_and_cover_every_photo_once(database_url: str, tmp_path: Path) -> None:
    migrate(database_url)
    repository = PhotoRepository(PhotoRepository.from_url(database_url).engine, clock=Clock())
    store = LocalObjectStore(tmp_path / "objects")
    album, other = uuid.uuid4(), uuid.uuid4()
    for _ in range(7):
        photo = uuid.uuid4()
        repository.register_pending(NewPhoto(id=photo, album_id=album, original_key=keys.raw_key(album, photo, "jpg")))
    stranger = uuid.uuid4()
    repository.register_pending(NewPhoto(id=stranger, album_id=other, original_key=keys.raw_key(other, stranger, "jpg")))

    seen: list[uuid.UUID] = []
    after = None
    for _page in range(10):  # bounded: 7 photos, 3 a page
        view = album_view(repository, store, album, limit=3, after=after, url_seconds=60)
        assert view.counts[PhotoStatus.PENDING] == 7 and view.total == 7
        assert all(item.thumbnail is None for item in view.photos), "no URLs before completion"
        seen.extend(item.photo.id for item in view.photos)
        after = view.next_after
        if after is None:
            break
    expected = [row.id for row in repository.photos_in_album(album)]
    assert seen == expected and len(set(seen)) == 7

    mine = album_view(repository, store, album, limit=10, after=None, url_seconds=60, only=[expected[4], expected[1], stranger])
    assert [item.photo.id for item in mine.photos] == [expected[1], expected[4]] and mine.next_after is None
    assert album_view(repository, store, album, limit=3, after=stranger, url_seconds=60).photos == [], (
        "a cursor from another album yields nothing"
    )


def test_pages_and_named_photos_follow_capture_order_when_asked(database_url: str, tmp_path: Path) -> None:
    migrate(database_url)
    repository = PhotoRepository.from_url(database_url)
    store = LocalObjectStore(tmp_path / "objects")
    album = uuid.uuid4()
    ids = seed_album(repository, album)
    names = {photo: name for name, photo in ids.items()}
    # 7 divides the album: the last full page must still say it is the last.
    for limit in (4, 7):
        seen: list[str] = []
        after = None
        for _page in range(10):  # bounded: 14 photos
            view = album_view(repository, store, album, limit=limit, after=after, url_seconds=60, order=AlbumOrder.TAKEN)
            seen.extend(names[item.photo.id] for item in view.photos)
            after = view.next_after
            if after is None:
                break
        assert seen == EXPECTED[AlbumOrder.TAKEN], f"limit {limit}"

    named = [ids["b"], ids["g"], ids["e"]]
    for order, expected in ((AlbumOrder.TAKEN, ["e", "g", "b"]), (AlbumOrder.UPLOAD, ["b", "e", "g"])):
        mine = album_view(repository, store, album, limit=10, after=None, url_seconds=60, only=named, order=order)
        assert [names[item.photo.id] for item in mine.photos] == expected and mine.next_after is None
    repository.engine.dispose()


def register(repository: PhotoRepository, album: uuid.UUID) -> uuid.UUID:
    photo = uuid.uuid4()
    repository.register_pending(NewPhoto(id=photo, album_id=album, original_key=keys.raw_key(album, photo, "jpg")))
    return photo


def sized_file(album: uuid.UUID, photo: uuid.UUID, size: int, fmt: str, width: int, height: int) -> StoredRendition:
    return StoredRendition(keys.sized_key(album, photo, size, fmt), size, fmt, width, height, bytes=width * height // 10)


def rendition_queries(repository: PhotoRepository) -> list[str]:
    """The statements that read `renditions` from now on (a list the listener appends to)."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM renditions" in statement:
            seen.append(statement)

    event.listen(repository.engine, "before_cursor_execute", note)
    return seen


def test_a_page_lists_its_completed_photos_sizes_from_one_query(database_url: str, tmp_path: Path) -> None:
    migrate(database_url)
    repository = PhotoRepository(PhotoRepository.from_url(database_url).engine, clock=Clock())
    store = LocalObjectStore(tmp_path / "objects")
    album = uuid.uuid4()
    sized, unsized, duplicate, pending = (register(repository, album) for _ in range(4))
    claims = {claim.id: claim for claim in repository.claim_batch(album, "test", 3)}
    assert set(claims) == {sized, unsized, duplicate}
    # Written smallest first: the view must order them itself.
    files = [sized_file(album, sized, 400, "JPEG", 400, 300), sized_file(album, sized, 800, "WEBP", 800, 600),
             sized_file(album, sized, 2400, "JPEG", 1000, 750), sized_file(album, sized, 800, "JPEG", 800, 600)]
    done = {"thumb_key": "t", "preview_key": "p", "width": 1000, "height": 750, "original_bytes": 1, "thumb_bytes": 1, "preview_bytes": 1}
    assert repository.complete(claims[sized], **done, files=files)
    # Completed before sizes were configured: no files.
    assert repository.complete(claims[unsized], **done)
    assert repository.complete_duplicate(claims[duplicate], duplicate_of=sized, original_sha256="0" * 64, original_bytes=1)

    queries = rendition_queries(repository)
    view = album_view(repository, store, album, limit=10, after=None, url_seconds=60)
    assert len(queries) == 1, queries
    by_id = {item.photo.id: item for item in view.photos}
    listed = [(s.file.size, s.file.format, s.file.width, s.file.height, s.content_type) for s in by_id[sized].sizes]
    assert listed == [
        (2400, "JPEG", 1000, 750, "image/jpeg"),
        (800, "JPEG", 800, 600, "image/jpeg"),
        (800, "WEBP", 800, 600, "image/webp"),
        (400, "JPEG", 400, 300, "image/jpeg"),
    ]
    for item in by_id[sized].sizes:
        assert item.download.url.split("?")[0].endswith(item.file.key), "each URL is its own file's"
    assert by_id[unsized].sizes == by_id[pending].sizes == ()
    # A duplicate's sizes are its first copy's files (issue 18 item 10): same keys, same order.
    assert [s.file for s in by_id[duplicate].sizes] == [s.file for s in by_id[sized].sizes]
    assert by_id[duplicate].thumbnail is not None and by_id[duplicate].preview is not None
    assert by_id[sized].urls_expire_at is not None and by_id[pending].urls_expire_at is None

    # A page of only pending photos asks nothing; a long id list is read a chunk at a time.
    queries.clear()
    assert album_view(repository, store, album, limit=10, after=None, url_seconds=60, only=[pending]).photos[0].sizes == ()
    assert queries == []
    strangers = [uuid.uuid4() for _ in range(CHUNK)]
    assert repository.rendition_files_of([*strangers, sized]) == {sized: [s.file for s in by_id[sized].sizes]}
    assert len(queries) == 2
