"""The trash through the daemon (issue 17): `dagster-daemon` running with both sensors and the
`reconcile_storage` and `empty_trash` schedules on (every minute here), the CLI deleting and
erasing. Out of process and real: the daemon, its code server and run workers speak to PostgreSQL
and to the S3 server over HTTP.

An object landing under an erased photo's key is never given a row by the sensors and is removed
by the scheduled reconciliation; a photo trashed past the retention is erased by the scheduled
empty_trash, files and all."""

from __future__ import annotations

import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from photo_pipeline.cli import samples
from photo_pipeline.photos.models import Photo, PhotoStatus
from photo_pipeline.photos.repository import PhotoRepository, utc_now
from photo_pipeline.storage import S3ObjectStore, keys, make_s3_client
from photo_pipeline_tests.conftest import BIN, S3Server
from photo_pipeline_tests.defs.test_daemon import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def trash_env(pipeline_env: dict[str, str]) -> dict[str, str]:
    """The daemon's environment (before the `daemon` fixture starts it): both schedules every
    minute, no grace for orphans."""
    pipeline_env.update({"PHOTO_EMPTY_TRASH_CRON": "* * * * *", "PHOTO_ORPHAN_GRACE_SECONDS": "0"})
    return pipeline_env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(BIN / "photo-pipeline"), *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_the_daemon_removes_a_late_object_of_an_erased_photo_and_empties_the_trash(
    trash_env: dict[str, str], daemon: subprocess.Popen[bytes], tmp_path: Path, s3_env: S3Server
) -> None:
    album = uuid.uuid4()
    files = []
    for i in range(3):
        path = tmp_path / f"photo-{i}.jpg"
        path.write_bytes(samples.photo_jpeg(640, 480, seed=i))
        files.append(path)
    cli(trash_env, "upload", str(album), *map(str, files))
    repository = PhotoRepository.from_url(trash_env["PHOTO_DATABASE_URL"])
    store = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), trash_env["PHOTO_BUCKET"])
    log = tmp_path / "daemon.log"
    wait_for(lambda: repository.status_counts(album)[PhotoStatus.COMPLETED] == 3, "uploads to reach completed", log, daemon)
    erased, expired, kept = (r.id for r in repository.photos_in_album(album))

    cli(trash_env, "delete", "--erase", str(erased))
    cli(trash_env, "delete", str(expired))
    with repository.engine.begin() as conn:  # past the retention, in the row's own trash time
        conn.execute(update(Photo).where(Photo.id == expired).values(trashed_at=utc_now() - timedelta(days=31)))
    late = keys.raw_key(album, erased, "jpg")
    store.put(late, files[0].read_bytes(), "image/jpeg")  # the erased photo's original lands again
    expired_files = [o.key for o in store.iter_objects("") if str(expired) in o.key]
    assert len(expired_files) >= 3

    def settled() -> bool:
        return not store.exists(late) and repository.get(expired) is None

    seconds = wait_for(settled, "the late object removed and the expired trash emptied", log, daemon)
    print(f"\nerase + late object -> removed, trash emptied, through the daemon: {seconds:.1f}s")

    assert repository.find_by_original_keys([late]) == {} and repository.get(erased) is None, "never given a row"
    assert repository.erased_at(photo_id=expired) is not None
    assert [o.key for o in store.iter_objects("") if str(expired) in o.key or str(erased) in o.key] == []
    assert repository.get(kept).status is PhotoStatus.COMPLETED  # type: ignore[union-attr]
