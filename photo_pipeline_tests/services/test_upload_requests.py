"""The server's side of a browser's upload (services/upload_requests.py) on both databases and
the folder store: declared files checked before any row, rows before URLs, a repeated request
answered from the same row, and arrivals believed only when the bucket agrees."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from photo_pipeline.cli import samples
from photo_pipeline.photos.database import migrate
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import PhotoNotFound, PhotoRepository
from photo_pipeline.services.upload_requests import (
    ArrivalRefused,
    DeclaredFile,
    UploadConflict,
    check_declared_file,
    display_filename,
    issue_uploads,
    verify_arrival,
)
from photo_pipeline.services.uploads import (
    UnsupportedUpload,
    UploadPolicy,
    UploadRejected,
    UploadTooLarge,
)
from photo_pipeline.storage import LocalObjectStore, keys

JPEG = samples.photo_jpeg(320, 240)
POLICY = UploadPolicy(max_original_bytes=1024 * 1024)


@pytest.fixture
def repository(database_url: str) -> PhotoRepository:
    migrate(database_url)
    return PhotoRepository.from_url(database_url)


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects")


def test_declared_files_are_checked_like_the_clis() -> None:
    assert display_filename("C:\\fakepath\\Beach\x00 Day.JPG") == "Beach Day.JPG"
    accepted = check_declared_file(DeclaredFile("Beach Day.JPEG", 10, "image/jpeg; charset=binary"), POLICY)
    assert (accepted.filename, accepted.extension, accepted.content_type) == ("Beach Day.JPEG", "jpg", "image/jpeg")
    # Browsers leave the type empty for HEIC: the extension decides what is signed.
    assert check_declared_file(DeclaredFile("IMG_1.heic", 10, ""), POLICY).content_type == "image/heic"
    with pytest.raises(UploadTooLarge, match="PHOTO_MAX_ORIGINAL_MB"):
        check_declared_file(DeclaredFile("big.jpg", 2 * 1024 * 1024), POLICY)
    with pytest.raises(UploadRejected, match="the file is empty"):
        check_declared_file(DeclaredFile("empty.jpg", 0), POLICY)
    for name, content_type in (("notes.txt", None), ("jpg", None), ("a.jpg", "application/pdf"), ("evil.svg", "image/svg+xml")):
        with pytest.raises(UnsupportedUpload):
            check_declared_file(DeclaredFile(name, 10, content_type), POLICY)
    with pytest.raises(UploadRejected, match="no file name"):
        check_declared_file(DeclaredFile("dir/\x01", 10), POLICY)


def test_rows_come_first_and_one_bad_file_refuses_the_request(repository: PhotoRepository, store: LocalObjectStore) -> None:
    album = uuid.uuid4()
    with pytest.raises(UnsupportedUpload):
        issue_uploads(repository, store, album, [DeclaredFile("a.jpg", 10), DeclaredFile("b.exe", 10)], POLICY, max_files=5)
    with pytest.raises(UploadRejected, match="at most 1"):
        issue_uploads(repository, store, album, [DeclaredFile("a.jpg", 10), DeclaredFile("b.jpg", 10)], POLICY, max_files=1)
    assert sum(repository.status_counts(album).values()) == 0
    [issued] = issue_uploads(repository, store, album, [DeclaredFile("a.jpg", len(JPEG))], POLICY, max_files=5)
    row = repository.get(issued.photo_id)
    assert row is not None and row.status is PhotoStatus.PENDING and row.original_bytes == len(JPEG)
    assert issued.presigned.headers["Content-Length"] == str(len(JPEG)) and issued.key == row.original_key


def test_a_repeated_request_reuses_its_row_and_a_taken_id_is_refused(repository: PhotoRepository, store: LocalObjectStore) -> None:
    album, chosen = uuid.uuid4(), uuid.uuid4()
    declared = DeclaredFile("a.jpg", 10, "image/jpeg", chosen)
    first = issue_uploads(repository, store, album, [declared], POLICY, max_files=5)
    again = issue_uploads(repository, store, album, [declared], POLICY, max_files=5)
    assert first[0].photo_id == again[0].photo_id == chosen and repository.status_counts(album)[PhotoStatus.PENDING] == 1
    with pytest.raises(UploadConflict, match="already exists for another upload"):
        issue_uploads(repository, store, album, [replace(declared, size=11)], POLICY, max_files=5)
    with pytest.raises(UploadConflict):
        issue_uploads(repository, store, uuid.uuid4(), [declared], POLICY, max_files=5)
    repository.claim_batch(album, "run", 1)
    with pytest.raises(UploadConflict, match="is processing: its upload is over"):
        issue_uploads(repository, store, album, [declared], POLICY, max_files=5)


def test_a_request_that_fails_half_way_leaves_no_row(repository: PhotoRepository, store: LocalObjectStore) -> None:
    album = uuid.uuid4()
    unsignable = replace(POLICY, expires_in=0)  # the store refuses to sign: after the rows exist
    with pytest.raises(ValueError, match="expires_in"):
        issue_uploads(repository, store, album, [DeclaredFile("a.jpg", 10), DeclaredFile("b.jpg", 10)], unsignable, max_files=5)
    assert sum(repository.status_counts(album).values()) == 0


def test_an_arrival_is_believed_only_when_the_bucket_agrees(repository: PhotoRepository, store: LocalObjectStore) -> None:
    album = uuid.uuid4()
    [issued] = issue_uploads(repository, store, album, [DeclaredFile("a.jpg", len(JPEG))], POLICY, max_files=5)
    with pytest.raises(PhotoNotFound):
        verify_arrival(repository, store, uuid.uuid4())
    with pytest.raises(ArrivalRefused, match="the upload did not arrive"):
        verify_arrival(repository, store, issued.photo_id)
    store.put(issued.key, JPEG[:10], "image/jpeg")
    with pytest.raises(ArrivalRefused, match=f"holds 10 bytes, {len(JPEG)} were declared"):
        verify_arrival(repository, store, issued.photo_id)
    store.delete(issued.key)
    store.accept_presigned_put(issued.presigned.url, JPEG, issued.presigned.headers)
    assert verify_arrival(repository, store, issued.photo_id).status is PhotoStatus.PENDING
    # Past pending, "complete" again is harmless: the row as it is, nothing asked of the bucket.
    store.delete(issued.key)
    repository.claim_batch(album, "run", 1)
    assert verify_arrival(repository, store, issued.photo_id).status is PhotoStatus.PROCESSING
    assert keys.identify_raw_key(issued.key) is not None
