"""Do the photo table's database and the bucket answer? `/healthz`'s two questions, each answered
in a few seconds whatever hangs.

The probes get their own connections with short timeouts (`PROBE_TIMEOUT_SECONDS`): a database
engine with a connect and statement timeout, a bucket client with short connect and read timeouts
and a single attempt. They never borrow the connections the requests use, and never wait for
botocore's patient retries (five attempts at 30 s each: three minutes on a hung bucket).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from photo_pipeline.photos.database import create_engine_for
from photo_pipeline.photos.errors import describe_database_error
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.redaction import redact
from photo_pipeline.settings import Settings
from photo_pipeline.storage import ObjectStore, S3Timeouts, StorageError, build_object_store

OK = "ok"
# Each probe's own bound: connecting, each answer, each statement. One attempt.
PROBE_TIMEOUT_SECONDS = 2.0
PROBE_S3_TIMEOUTS = S3Timeouts(connect=PROBE_TIMEOUT_SECONDS, read=PROBE_TIMEOUT_SECONDS, attempts=1)
# Connections the probe engine holds: the probes run one at a time (see api/health.py), plus one spare.
PROBE_CONNECTIONS = 2


@dataclass(frozen=True)
class Probes:
    """The database and the bucket, as the probes reach them."""

    repository: PhotoRepository
    store: ObjectStore

    @classmethod
    def from_settings(cls, settings: Settings, *, store: ObjectStore | None = None) -> Probes:
        """Probes with their own short timeouts; `store`, when given, is probed as it is instead."""
        engine = create_engine_for(settings.database_url, max_connections=PROBE_CONNECTIONS, timeout_seconds=PROBE_TIMEOUT_SECONDS)
        return cls(PhotoRepository(engine), store if store is not None else build_object_store(settings, timeouts=PROBE_S3_TIMEOUTS))

    def close(self) -> None:
        self.repository.engine.dispose()


def database_state(repository: PhotoRepository) -> str:
    """"ok", or "unreachable (why)": a primary-key lookup, so the table is there and answers."""
    try:
        repository.get(uuid.UUID(int=0))
    except SQLAlchemyError as exc:
        # The summary only: the driver's message may name the host and the user.
        return f"unreachable ({describe_database_error(exc).summary})"
    return OK


def bucket_state(store: ObjectStore) -> str:
    """"ok", or "unreachable (why)": what timed out, or which answer came back."""
    try:
        store.check()
    except StorageError as exc:
        return f"unreachable ({redact(str(exc))[:300]})"
    return OK
