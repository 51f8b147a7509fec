"""The trash through the daemon (issue 17): `dagster-daemon` running with both sensors on, and
`reconcile_storage` and `empty_trash` launched the way an operator launches them (`dagster job
launch`: queued, then started by the daemon). Out of process and real: the daemon, its code server
and run workers speak to PostgreSQL and to the S3 server over HTTP.

An object landing under an erased photo's key is never given a row by the sensors (while they
adopt an orphan beside it) and is removed by reconciliation; a photo trashed past the retention is
erased by empty_trash, files and all."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from photo_pipeline.cli import samples
from photo_pipeline.defs.reconcile.jobs import reconcile_config
from photo_pipeline.defs.trash.jobs import empty_trash_config
from photo_pipeline.photos.models import Photo
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository, utc_now
from photo_pipeline.services import removal
from photo_pipeline.storage import S3ObjectStore, keys, make_s3_client
from photo_pipeline_tests.conftest import BIN, ROOT, S3Server
from photo_pipeline_tests.defs.test_daemon import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def trash_env(pipeline_env: dict[str, str]) -> dict[str, str]:
    """The daemon's environment (before the `daemon` fixture starts it): no grace for orphans."""
    pipeline_env["PHOTO_ORPHAN_GRACE_SECONDS"] = "0"
    return pipeline_env


def launch(env: dict[str, str], job: str, config: dict[str, object]) -> None:
    """`dagster job launch`: the run is queued on the instance; the daemon starts it."""
    done = subprocess.run(
        [str(BIN / "dagster"), "job", "launch", "-w", str(ROOT / "workspace.yaml"), "-j", job, "--config-json", json.dumps(config)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_daemon_removes_a_late_object_of_an_erased_photo_and_empties_the_trash(
    trash_env: dict[str, str], daemon: subprocess.Popen[bytes], tmp_path: Path, s3_env: S3Server
) -> None:
    repository = PhotoRepository.from_url(trash_env["PHOTO_DATABASE_URL"])
    store = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), trash_env["PHOTO_BUCKET"])
    log = tmp_path / "daemon.log"
    album = uuid.uuid4()
    erased, expired = uuid.uuid4(), uuid.uuid4()
    for i, photo_id in enumerate((erased, expired)):
        key = keys.raw_key(album, photo_id, "jpg")
        repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key))
        store.put(key, samples.photo_jpeg(64, 48, seed=i), "image/jpeg")
    removal.delete_photo(repository, store, erased, erase=True)
    repository.trash_photos([expired])  # whatever the daemon made of it meanwhile
    with repository.engine.begin() as conn:  # past the retention, in the row's own trash time
        conn.execute(update(Photo).where(Photo.id == expired).values(trashed_at=utc_now() - timedelta(days=31)))

    # The erased photo's original lands again; an orphan lands beside it.
    late = keys.raw_key(album, erased, "jpg")
    orphan = keys.raw_key(album, uuid.uuid4(), "jpg")
    for key in (late, orphan):
        store.put(key, samples.photo_jpeg(64, 48), "image/jpeg")
    wait_for(lambda: bool(repository.find_by_original_keys([orphan])), "raw_object_sensor to adopt the orphan", log, daemon)
    assert repository.find_by_original_keys([late]) == {}, "the sensor swept past it and gave it no row"

    launch(trash_env, "reconcile_storage", reconcile_config(dry_run=False))
    launch(trash_env, "empty_trash", empty_trash_config(dry_run=False))

    def settled() -> bool:
        # The erase commits the row's removal first and deletes the objects after: wait for both.
        gone = not any(str(expired) in o.key for o in store.iter_objects(keys.RAW_PREFIX))
        return not store.exists(late) and repository.get(expired) is None and gone

    seconds = wait_for(settled, "the late object removed and the expired trash emptied", log, daemon)
    print(f"\nlaunched through the daemon: the late object removed and the trash emptied in {seconds:.1f}s")

    assert repository.find_by_original_keys([late]) == {} and repository.get(erased) is None, "never given a row"
    assert repository.erased_at(photo_id=expired) is not None
    assert [o.key for o in store.iter_objects("") if str(expired) in o.key or str(erased) in o.key] == []
