"""Issue 6, item 1: object keys the photo table cannot hold (NUL, control characters, undecodable
bytes, over-long) never stop discovery or reconciliation; long but valid names are stored.
And the reconcile apply steps are independent: one failing kind of repair (or one bad row) does
not cancel the others, and the run says so instead of reporting success.

Real parts throughout: PostgreSQL, S3 over HTTP (moto's server), real Dagster runs and sensor
ticks on an instance built from the repository's dagster.yaml, the CLI through click.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from dagster import (
    AssetKey,
    DagsterInstance,
    Definitions,
    SensorResult,
    TableMetadataValue,
    build_sensor_context,
    materialize,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError

from photo_pipeline.cli import samples
from photo_pipeline.cli.commands import main
from photo_pipeline.defs.health.assets import pipeline_health
from photo_pipeline.defs.reconcile.assets import storage_reconciliation
from photo_pipeline.defs.reconcile.jobs import reconcile_config, reconcile_storage
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.defs.sensors.album_runs import UNHOLDABLE_TAG
from photo_pipeline.defs.sensors.raw_object_sensor import raw_object_sensor
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository, utc_now
from photo_pipeline.reconcile.apply import Reconciler
from photo_pipeline.reconcile.plan import ReconcilePolicy
from photo_pipeline.services import discovery
from photo_pipeline.storage import (
    LocalObjectStore,
    ObjectInfo,
    S3ObjectStore,
    keys,
    make_s3_client,
)
from photo_pipeline_tests.conftest import S3Server

JPEG = samples.photo_jpeg(48, 32)
# Characters that must never reach a log line, a markdown table or a terminal unescaped.
RAW_HOSTILE = ("\x00", "\x07", "\x1b", "\x85", "\u202e")


def hostile_keys(album: uuid.UUID) -> dict[str, str]:
    """name -> key; all legal S3 keys (moto stores them, as S3 does)."""
    return {
        "good": keys.raw_key(album, uuid.uuid4(), "jpg"),
        # 600-character file name: over photos.filename's 512, well under S3's 1024-byte keys.
        "long": f"raw/{album}/" + "long-name-" * 60 + ".jpg",
        "nul": f"raw/{album}/bad\x00name.jpg",
        "control": f"raw/{album}/bell\x07\x1b[31mred\x85.jpg",
        "bidi": f"raw/{album}/photo\u202egpj.exe.jpg",
    }


UNHOLDABLE = ("nul", "control", "bidi")


def assert_no_raw_hostile(text: str) -> None:
    for char in RAW_HOSTILE:
        assert char not in text, f"unescaped {char!r} in output"


# -- the rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("raw/a/b\x00c.jpg", "NUL"),
        ("raw/a/b\nc.jpg", "U+000A"),
        ("raw/a/b\x1b[2Jc.jpg", "U+001B"),
        ("raw/a/b\x7fc.jpg", "U+007F"),
        ("raw/a/b\x85c.jpg", "U+0085"),
        ("raw/a/b\u2028c.jpg", "U+2028"),
        ("raw/a/photo\u202egpj.exe", "U+202E"),
        ("raw/a/\udcff.jpg", "UTF-8"),
        ("raw/" + "y" * 1021, "1025 characters"),
    ],
)
def test_keys_the_table_cannot_hold_say_why(key: str, reason: str) -> None:
    found = keys.unholdable_reason(key)
    assert found is not None and reason in found
    shown = keys.display_key(key)
    assert_no_raw_hostile(shown)
    assert "\udcff" not in shown and len(shown) <= 160


@pytest.mark.parametrize(
    "key",
    [
        "raw/a/" + "x" * 600 + ".jpg",  # long but valid: stored, filename bounded
        "raw/" + "y" * 1020,  # exactly the column's 1024
        "raw/a/été à Zürich 東京 🏔️‍.jpg",  # non-ASCII and an emoji ZWJ sequence
        "raw/a/\u05e9\u05dc\u05d5\u05dd\u200f.jpg",  # Hebrew with a right-to-left mark
    ],
)
def test_valid_keys_are_holdable(key: str) -> None:
    assert keys.unholdable_reason(key) is None


def test_long_file_names_are_bounded_keeping_the_extension() -> None:
    name = keys.bounded_filename("raw/a/" + "x" * 600 + ".jpeg")
    assert len(name) == keys.MAX_FILENAME_CHARS and name.endswith(".jpeg")
    assert keys.bounded_filename("raw/a/short.jpg") == "short.jpg"
    assert len(keys.bounded_filename("raw/a/" + "z" * 600)) == keys.MAX_FILENAME_CHARS


def test_listing_split_keeps_order_and_reasons() -> None:
    now = utc_now()
    objs = [ObjectInfo(key=k, size=1, last_modified=now) for k in ("raw/a", "raw/b\x00", "raw/c")]
    holdable, skipped = discovery.split_listing(objs)
    assert [o.key for o in holdable] == ["raw/a", "raw/c"]
    assert [s.key for s in skipped] == ["raw/b\x00"]
    assert_no_raw_hostile(discovery.describe_skipped(skipped))


# -- reproduction on PostgreSQL: what the table refuses -----------------------------------------


def test_postgresql_refuses_these_keys_which_is_why_they_are_skipped(photo_db: str) -> None:
    """The bad case on main: one such key fails the whole batch (the lookup already fails for
    NUL). Kept as a test so the rule's reasons stay true of the real database."""
    repository = PhotoRepository.from_url(photo_db)
    album = uuid.uuid4()
    with pytest.raises(DataError, match="NUL"):
        repository.find_by_original_keys([f"raw/{album}/bad\x00name.jpg"])
    with pytest.raises(DataError, match="too long"):
        repository.adopt([NewPhoto(id=uuid.uuid4(), album_id=album, original_key=f"raw/{album}/x.jpg", filename="n" * 600)])


# -- the sensor ------------------------------------------------------------------------------------


@pytest.fixture
def store(s3_env: S3Server, s3_bucket: str) -> S3ObjectStore:
    return S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)


def tick(instance: DagsterInstance, cursor: str | None, resource: PhotoPipelineResource) -> SensorResult:
    with build_sensor_context(instance=instance, cursor=cursor, resources={"photo_pipeline": resource}) as context:
        result = raw_object_sensor(context)
    assert isinstance(result, SensorResult)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def test_raw_object_sensor_skips_unholdable_keys_and_moves_on(
    instance: DagsterInstance,
    photo_db: str,
    s3_bucket: str,
    store: S3ObjectStore,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PHOTO_SENSOR_MAX_KEYS_PER_TICK", "2")
    resource = PhotoPipelineResource(database_url=photo_db, bucket=s3_bucket)
    repository = PhotoRepository.from_url(photo_db)
    album = uuid.uuid4()
    bad_album = uuid.uuid4()  # an album with nothing but unholdable keys: a slice of only those
    named = hostile_keys(album)
    for key in named.values():
        store.put(key, JPEG, "image/jpeg")
    for name in UNHOLDABLE:
        store.put(named[name].replace(str(album), str(bad_album)), JPEG, "image/jpeg")

    cursor: str | None = None
    reasons: list[str] = []
    tagged: list[str] = []
    # 8 objects, 2 per tick: four full slices, the fifth finds the end. Every resumed listing
    # starts after a key the tick before ended on, bad keys included (moto answered 500 to a
    # StartAfter with a control character, which stalled the sweep until the store resumed from
    # its safe prefix).
    for _ in range(5):
        result = tick(instance, cursor, resource)
        assert result.cursor != cursor, "the cursor must move past every slice, bad keys or not"
        cursor = result.cursor
        if result.skip_reason:
            reasons.append(result.skip_reason.skip_message or "")
        tagged += [r.tags[UNHOLDABLE_TAG] for r in result.run_requests or [] if UNHOLDABLE_TAG in r.tags]
    assert discovery.RawSweepCursor.from_json(cursor).sweeps_completed == 1

    rows = repository.find_by_original_keys([named["good"], named["long"]])
    assert set(rows) == {named["good"], named["long"]}, "every holdable object is adopted"
    long_row = rows[named["long"]]
    assert long_row.original_key == named["long"], "the full key is kept"
    assert long_row.filename is not None and len(long_row.filename) == 255 and long_row.filename.endswith(".jpg")
    assert repository.status_counts()[PhotoStatus.PENDING] == 2, "nothing else got a row"
    # Reported: in a skip reason or a run request's tag, and in the log, escaped.
    # bad_album's three keys are adjacent, so at least one 2-key slice holds nothing else.
    assert any("cannot hold" in reason for reason in reasons)
    assert all(int(count) >= 1 for count in tagged)
    # The sensor's log as written to the process's stderr (where the daemon's log goes).
    logged = [line for line in capfd.readouterr().err.splitlines() if "cannot hold" in line]
    assert logged
    for text in reasons + logged:
        assert_no_raw_hostile(text)
    assert any("\\x00" in text for text in reasons + logged), "the NUL key is named, escaped"


# -- reconcile_storage, a real run ---------------------------------------------------------------


def run_reconcile(instance: DagsterInstance, resource: PhotoPipelineResource):  # type: ignore[no-untyped-def]
    """An applying run of the project's reconcile_storage job on this test's table and bucket
    (Definitions bind the resource into the asset; the job's own config is a dry run)."""
    definitions = Definitions(assets=[storage_reconciliation], jobs=[reconcile_storage], resources={"photo_pipeline": resource})
    return definitions.resolve_job_def("reconcile_storage").execute_in_process(
        instance=instance, run_config=reconcile_config(dry_run=False), raise_on_error=False
    )


def test_reconcile_storage_skips_and_reports_unholdable_keys(
    instance: DagsterInstance, photo_db: str, s3_bucket: str, store: S3ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOTO_ORPHAN_GRACE_SECONDS", "0")
    resource = PhotoPipelineResource(database_url=photo_db, bucket=s3_bucket)
    repository = PhotoRepository.from_url(photo_db)
    album = uuid.uuid4()
    named = hostile_keys(album)
    for key in named.values():
        store.put(key, JPEG, "image/jpeg")
    time.sleep(1.1)  # past the (zero) orphan grace at S3's one-second resolution

    result = run_reconcile(instance, resource)

    assert result.success
    plan = result.output_for_node("storage_reconciliation.plan_changes")
    assert plan.unholdable_keys == len(UNHOLDABLE)
    assert {s.key for s in plan.skipped_keys} == {named[n] for n in UNHOLDABLE}
    assert plan.counts()["adopt"] == 2
    adopted = repository.find_by_original_keys([named["good"], named["long"]])
    assert set(adopted) == {named["good"], named["long"]}
    assert len(adopted[named["long"]].filename or "") == 255

    event = instance.get_latest_materialization_event(AssetKey("storage_reconciliation"))
    assert event is not None and event.asset_materialization is not None
    metadata = event.asset_materialization.metadata
    assert metadata["unholdable_keys"].value == len(UNHOLDABLE)
    assert metadata["apply_errors"].value == 0
    table = metadata["skipped_keys"]
    assert isinstance(table, TableMetadataValue)
    shown = json.dumps([record.data for record in table.records])
    assert_no_raw_hostile(shown)
    assert "bad\\\\x00name.jpg" in shown and "U+202E" in shown  # escaped (and JSON-quoted here)
    assert_no_raw_hostile(json.dumps(plan.summary()))

    # The health asset carries the count.
    health = materialize([pipeline_health], instance=instance, resources={"photo_pipeline": resource})
    assert health.success
    latest = instance.get_latest_materialization_event(AssetKey("pipeline_health"))
    assert latest is not None and latest.asset_materialization is not None
    assert latest.asset_materialization.metadata["unholdable_keys"].value == len(UNHOLDABLE)

    # A second run finds the same keys again and still completes.
    again = run_reconcile(instance, resource)
    assert again.success and again.output_for_node("storage_reconciliation.plan_changes").unholdable_keys == len(UNHOLDABLE)


@pytest.fixture
def cli_env(photo_db: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The CLI's environment: this test's table and bucket, no Dagster instance, no orphan grace."""
    monkeypatch.setenv("PHOTO_DATABASE_URL", photo_db)
    monkeypatch.setenv("PHOTO_BUCKET", s3_bucket)
    monkeypatch.setenv("PHOTO_PIPELINE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("PHOTO_ORPHAN_GRACE_SECONDS", "0")


def test_cli_reconcile_prints_skipped_keys_escaped(cli_env: None, store: S3ObjectStore) -> None:
    album = uuid.uuid4()
    named = hostile_keys(album)
    for key in named.values():
        store.put(key, JPEG, "image/jpeg")
    time.sleep(1.1)
    runner = CliRunner()

    as_json = runner.invoke(main, ["reconcile", "--json"], catch_exceptions=False)
    assert as_json.exit_code == 0, as_json.output
    assert_no_raw_hostile(as_json.output)
    payload = json.loads(as_json.output)
    assert payload["unholdable_keys"] == len(UNHOLDABLE)
    assert {item["key"] for item in payload["skipped_keys"]} == {keys.display_key(named[n]) for n in UNHOLDABLE}
    assert payload["applied"]["adopt"] == 2 and payload["errors"] == {}

    text = runner.invoke(main, ["reconcile"], catch_exceptions=False)
    assert text.exit_code == 0, text.output
    assert_no_raw_hostile(text.output)
    assert f"skipped {len(UNHOLDABLE)} object(s)" in text.output and "bad\\x00name.jpg" in text.output


# -- the local folder store --------------------------------------------------------------------------


def test_local_folder_store_with_hostile_file_names(tmp_path: Path, photo_db: str) -> None:
    """The folder store refuses NUL (the OS does too) and backslashes; control characters and
    bytes that are not UTF-8 can still be in a file name someone copied into the folder."""
    store = LocalObjectStore(tmp_path / "objects")
    album = uuid.uuid4()
    good = keys.raw_key(album, uuid.uuid4(), "jpg")
    store.put(good, JPEG, "image/jpeg")
    with pytest.raises(ValueError, match="NUL"):
        store.put(f"raw/{album}/bad\x00name.jpg", JPEG, "image/jpeg")
    folder = tmp_path / "objects" / "raw" / str(album)
    (folder / "bell\x07\x1b[31m.jpg").write_bytes(JPEG)
    os.close(os.open(os.fsencode(folder) + b"/latin1-\xe9t\xe9.jpg", os.O_CREAT | os.O_WRONLY, 0o644))
    old = time.time() - 600
    for entry in folder.iterdir():
        os.utime(entry, (old, old))

    repository = PhotoRepository.from_url(photo_db)
    reconciler = Reconciler(repository, store, ReconcilePolicy(orphan_grace_seconds=0), page_size=1)
    plan = reconciler.plan()
    assert plan.unholdable_keys == 2
    reasons = sorted(s.reason for s in plan.skipped_keys)
    assert "U+0007" in reasons[0] and "UTF-8" in reasons[1]
    assert_no_raw_hostile(json.dumps(plan.summary()))
    report = reconciler.apply(plan)
    assert report.ok and report.applied["adopt"] == 1
    assert set(repository.find_by_original_keys([good])) == {good}


# -- independent apply steps -------------------------------------------------------------------------


def refuse_keys_containing(database_url: str, marker: str) -> None:
    """A real constraint the database enforces (as an operator's or a newer schema's would):
    rows whose key contains `marker` cannot be inserted."""
    url = make_url(database_url)
    with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE photos ADD CONSTRAINT ck_test_refused CHECK (original_key NOT LIKE '%{marker}%')")


def expired_claim(repository: PhotoRepository, store: S3ObjectStore, album: uuid.UUID) -> uuid.UUID:
    photo_id = uuid.uuid4()
    key = keys.raw_key(album, photo_id, "jpg")
    repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key))
    store.put(key, JPEG, "image/jpeg")
    assert repository.claim_photos([photo_id], "dead-run")
    return photo_id


def test_one_refused_row_loses_no_other_adoption_and_other_repairs_still_run(
    instance: DagsterInstance, photo_db: str, s3_bucket: str, store: S3ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOTO_ORPHAN_GRACE_SECONDS", "0")
    repository = PhotoRepository.from_url(photo_db)
    album = uuid.uuid4()
    stuck = expired_claim(PhotoRepository(repository.engine, clock=lambda: utc_now() - timedelta(hours=1)), store, album)
    orphans = [keys.raw_key(album, uuid.uuid4(), "jpg") for _ in range(6)]
    refused = f"raw/{album}/refused-by-db.jpg"
    for key in [*orphans, refused]:
        store.put(key, JPEG, "image/jpeg")
    stray = keys.thumb_key(album, uuid.uuid4(), "JPEG")
    store.put(stray, JPEG, "image/jpeg")
    # A row whose original moved to a key the database will refuse: the whole correct_key kind fails.
    moved = uuid.uuid4()
    repository.register_pending(NewPhoto(id=moved, album_id=album, original_key=keys.raw_key(album, moved, "jpg")))
    store.put(f"raw/refused-by-db/{moved}.jpg", JPEG, "image/jpeg")
    refuse_keys_containing(photo_db, "refused-by-db")
    time.sleep(1.1)

    result = run_reconcile(instance, PhotoPipelineResource(database_url=photo_db, bucket=s3_bucket))

    assert not result.success, "a run that could not apply everything must not be a success"
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "storage_reconciliation.report"  # after recording what was done
    error = str(failure.step_failure_data.error)
    assert "adopt" in error and "refused-by-db" in error and "correct_key" in error
    assert result.output_for_node("storage_reconciliation.plan_changes").counts()["correct_key"] == 1
    assert repository.get(moved).original_key == keys.raw_key(album, moved, "jpg")  # type: ignore[union-attr]
    # Every other orphan adopted, the expired claim released, the stray rendition removed.
    assert set(repository.find_by_original_keys(orphans)) == set(orphans)
    assert repository.find_by_original_keys([refused]) == {}
    row = repository.get(stuck)
    assert row is not None and row.status is PhotoStatus.PENDING
    assert not store.exists(stray)
    event = instance.get_latest_materialization_event(AssetKey("storage_reconciliation"))
    assert event is not None and event.asset_materialization is not None
    assert event.run_id == result.run_id and event.asset_materialization.metadata["apply_errors"].value == 2


def test_cli_reconcile_exits_non_zero_when_a_repair_failed(cli_env: None, store: S3ObjectStore, photo_db: str) -> None:
    album = uuid.uuid4()
    good = keys.raw_key(album, uuid.uuid4(), "jpg")
    refused = f"raw/{album}/refused-by-db.jpg"
    for key in (good, refused):
        store.put(key, JPEG, "image/jpeg")
    refuse_keys_containing(photo_db, "refused-by-db")
    time.sleep(1.1)

    result = CliRunner().invoke(main, ["reconcile", "--json"], catch_exceptions=False)

    assert result.exit_code == 3, result.output
    payload = json.loads(result.stdout)
    assert payload["applied"]["adopt"] == 1 and "adopt" in payload["errors"]
    assert any("refused-by-db" in row for row in payload["failed_rows"]["adopt"])
    assert set(PhotoRepository.from_url(photo_db).find_by_original_keys([good])) == {good}


def test_s3_listing_resumes_after_keys_with_control_characters(store: S3ObjectStore) -> None:
    """A page that ends on such a key must not stall the next page: moto answers 500 when the
    key comes back as StartAfter (real S3 url-encodes it in its answer; other servers may not),
    so the store resumes from the key's safe prefix and drops what is not after the key."""
    listed_keys = sorted(["raw/a/\x00first.jpg", "raw/a/b\x07c.jpg", "raw/a/b\x07d.jpg", "raw/a/bz.jpg", "raw/a/c.jpg", "raw/b.jpg"])
    for key in listed_keys:
        store.put(key, b"x", "image/jpeg")
    assert [o.key for o in store.iter_objects("raw/", page_size=1)] == listed_keys
    assert [o.key for o in store.list_page("raw/", start_after="raw/a/b\x07c.jpg", limit=2)] == listed_keys[2:4]
    assert [o.key for o in store.list_page("raw/", start_after="raw/a/\x00first.jpg", limit=10)] == listed_keys[1:]


def test_raw_object_sensor_goes_on_when_the_table_refuses_one_row(
    instance: DagsterInstance,
    photo_db: str,
    s3_bucket: str,
    store: S3ObjectStore,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A row the database refuses for a reason the key rule does not know (here a real CHECK
    constraint) costs that row only: the rest of the slice is adopted and the cursor moves."""
    resource = PhotoPipelineResource(database_url=photo_db, bucket=s3_bucket)
    album = uuid.uuid4()
    good = [keys.raw_key(album, uuid.uuid4(), "jpg") for _ in range(5)]
    refused = f"raw/{album}/refused-by-db.jpg"
    for key in [*good, refused]:
        store.put(key, JPEG, "image/jpeg")
    refuse_keys_containing(photo_db, "refused-by-db")

    result = tick(instance, None, resource)

    assert discovery.RawSweepCursor.from_json(result.cursor).sweeps_completed == 1
    repository = PhotoRepository.from_url(photo_db)
    assert set(repository.find_by_original_keys(good)) == set(good)
    assert repository.find_by_original_keys([refused]) == {}
    assert [r.partition_key for r in result.run_requests or []] == [str(album)]
    assert any("refused a row" in line and "refused-by-db" in line for line in capfd.readouterr().err.splitlines())
