"""The bucket: its key layout (`keys`), the `ObjectStore` interface and errors (`store`), and the
two stores, S3 (`s3`) and a local folder (`local`); `factory` picks one from the settings.

Callers import the interface from here; only a store's own tests reach into its module.
"""

from photo_pipeline.storage.factory import build_object_store
from photo_pipeline.storage.local import (
    STALE_TEMP_SECONDS,
    LocalObjectStore,
    validate_local_key,
)
from photo_pipeline.storage.s3 import (
    S3Client,
    S3ObjectStore,
    S3Timeouts,
    make_s3_client,
    s3_client_config,
)
from photo_pipeline.storage.store import (
    SPOOL_MEMORY_BYTES,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectTooLarge,
    PresignedDownload,
    PresignedUpload,
    PresignedUploadRejected,
    StorageAccessDenied,
    StorageError,
    StorageTimeout,
    StorageUnavailable,
    UploadTargetExists,
    spooled_download,
)

__all__ = [
    "SPOOL_MEMORY_BYTES",
    "STALE_TEMP_SECONDS",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectTooLarge",
    "PresignedDownload",
    "PresignedUpload",
    "PresignedUploadRejected",
    "S3Client",
    "S3ObjectStore",
    "S3Timeouts",
    "StorageAccessDenied",
    "StorageError",
    "StorageTimeout",
    "StorageUnavailable",
    "UploadTargetExists",
    "build_object_store",
    "make_s3_client",
    "s3_client_config",
    "spooled_download",
    "validate_local_key",
]
