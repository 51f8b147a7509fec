"""Presigned GETs (the renditions' short-lived URLs): S3's over HTTP against moto's server, the
folder store's checked by the store itself (the API relays them)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from photo_pipeline.storage import (
    LocalObjectStore,
    PresignedUploadRejected,
    S3ObjectStore,
    make_s3_client,
)
from photo_pipeline_tests.conftest import S3Server


def test_an_s3_presigned_get_fetches_the_object(s3_env: S3Server, s3_bucket: str) -> None:
    store = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)
    store.put("processed/thumbs/a/b.jpg", b"thumbnail bytes", "image/jpeg")
    download = store.presign_get("processed/thumbs/a/b.jpg", 60)
    assert "X-Amz-Expires=60" in download.url and download.expires_at.timestamp() == pytest.approx(time.time() + 60, abs=5)
    assert requests.get(download.url, timeout=10).content == b"thumbnail bytes"
    with pytest.raises(ValueError, match="expires_in"):
        store.presign_get("processed/thumbs/a/b.jpg", 0)


def test_the_folder_store_signs_gets_apart_from_puts(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.put("processed/thumbs/a/b.jpg", b"x", "image/jpeg")
    download = store.presign_get("processed/thumbs/a/b.jpg", 60)
    assert store.verify_presigned_get(download.url) == "processed/thumbs/a/b.jpg"
    for forged in (
        download.url.replace("X-Signature=", "X-Signature=0"),
        download.url.replace("thumbs/a/b.jpg", "thumbs/a/c.jpg"),
        store.presign_put("processed/thumbs/a/b.jpg", "image/jpeg", 60).url,  # a PUT's signature is no GET's
    ):
        with pytest.raises(PresignedUploadRejected):
            store.verify_presigned_get(forged)
    expired = store.presign_get("processed/thumbs/a/b.jpg", 1)
    time.sleep(1.1)  # the expiry is in whole seconds; wait past it
    with pytest.raises(PresignedUploadRejected, match="expired"):
        store.verify_presigned_get(expired.url)
