"""Which object store a deployment uses: S3 when a bucket is configured, else the folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from photo_pipeline.storage.local import LocalObjectStore
from photo_pipeline.storage.s3 import S3Client, S3ObjectStore, S3Timeouts, make_s3_client
from photo_pipeline.storage.store import ObjectStore

if TYPE_CHECKING:
    from photo_pipeline.settings import Settings



def build_object_store(
    settings: Settings,
    *,
    client: S3Client | None = None,
    presign_client: S3Client | None = None,
    timeouts: S3Timeouts | None = None,
) -> ObjectStore:
    """The S3 store when a bucket is configured, else the embedded folder store. `timeouts`
    bounds each call to the bucket (for callers someone waits on: the API, its health probe);
    without it, the pipeline's patient retries."""
    if settings.bucket is None:
        return LocalObjectStore(settings.objects_dir)
    client = client if client is not None else make_s3_client(timeouts=timeouts)
    if presign_client is None:
        presign_client = make_s3_client(endpoint_url=settings.public_endpoint_url) if settings.public_endpoint_url else client
    return S3ObjectStore(client, settings.bucket, presign_client=presign_client)
