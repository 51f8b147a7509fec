"""Presigned GETs (the renditions' short-lived URLs): S3's over HTTP against moto and s3rver, the
folder store's checked by the store itself (the API relays them).

moto serves any GET URL, tampered or expired; s3rver (and S3) check the signature and the expiry,
so the refusals are tested there (see test_stores.py for the table of who enforces what)."""

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


def bucket_on(server: S3Server) -> S3ObjectStore:
    return S3ObjectStore(make_s3_client(endpoint_url=server.endpoint_url), server.new_bucket())


@pytest.mark.parametrize("server_name", ["moto", "s3rver"])
def test_an_s3_presigned_get_fetches_the_object(s3_env: S3Server, server_name: str, request: pytest.FixtureRequest) -> None:
    store = bucket_on(s3_env if server_name == "moto" else request.getfixturevalue("s3rver_server"))
    store.put("processed/thumbs/a/b.jpg", b"thumbnail bytes", "image/jpeg")
    download = store.presign_get("processed/thumbs/a/b.jpg", 60)
    assert "X-Amz-Expires=60" in download.url and download.expires_at.timestamp() == pytest.approx(time.time() + 60, abs=5)
    assert requests.get(download.url, timeout=10).content == b"thumbnail bytes"
    with pytest.raises(ValueError, match="expires_in"):
        store.presign_get("processed/thumbs/a/b.jpg", 0)


def test_a_tampered_or_expired_s3_get_is_refused(s3_env: S3Server, s3rver_server: S3Server) -> None:
    # Enforced by s3rver (and S3), not by moto.
    store = bucket_on(s3rver_server)
    store.put("processed/thumbs/a/b.jpg", b"thumbnail bytes", "image/jpeg")
    store.put("processed/previews/a/b.jpg", b"preview bytes", "image/jpeg")
    download = store.presign_get("processed/thumbs/a/b.jpg", 1)

    other_key = download.url.replace("processed/thumbs/", "processed/previews/")
    assert requests.get(other_key, timeout=10).status_code == 403
    time.sleep(2.1)  # the expiry is in whole seconds; wait past it
    late = requests.get(download.url, timeout=10)
    assert late.status_code == 403 and "expired" in late.text


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
