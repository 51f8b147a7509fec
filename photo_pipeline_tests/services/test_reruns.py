"""Re-runs on real parts: failed photos re-run by `reprocess_failed_photos` (an album picked in the
launchpad's partition picker, as the UI's GraphQL sees it), albums re-rendered by `rerender_albums`,
the failed-photo checks (per album and across albums), and "re-execute from failure" of a
failed `process_album` run. Photo table on PostgreSQL, bucket on S3 over HTTP (moto's server),
Dagster instance from the repository's own dagster.yaml.

The resource reads its settings from the environment at run time (as production does), so a test
changes the environment (database URL, watermark) between runs to change what the next run sees.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import yaml
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterInvalidConfigError,
    Definitions,
    ExecuteInProcessResult,
    JobDefinition,
    JobExecutionResult,
    MetadataValue,
    ReexecutionOptions,
    execute_job,
    reconstructable,
)

from photo_pipeline.cli import samples
from photo_pipeline.failures import FailureKind
from photo_pipeline.defs.renditions.assets import (
    ALBUMS,
    NO_FAILED_PHOTOS_IN_ALBUM,
    NO_FAILED_PHOTOS_IN_ANY_ALBUM,
    album_renditions,
)
from photo_pipeline.defs.renditions.jobs import process_album, rerender_albums
from photo_pipeline.defs.reruns.jobs import RERUN_RESULT_TAG, config_for_album, reprocess_failed_photos
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.reconcile_queries import ReconciliationQueries
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.services import reruns
from photo_pipeline.services.processing import Outcome, PhotoOutcome
from photo_pipeline.storage import S3ObjectStore, keys, make_s3_client
from photo_pipeline_tests.conftest import PostgresServer, S3Server
from photo_pipeline_tests.defs.ui_graphql import (
    code_location,
    job_selector,
    query,
    repository_selector,
)

# Steps in this process: fast, and re-execution from failure works the same.
# process_album runs its step in process already (in_process_executor): no executor config to choose.
IN_PROCESS: dict[str, Any] = {}


def definitions() -> Definitions:
    """What these tests run: the product's assets and jobs, with a resource that reads the
    environment at run time (module level, so `reconstructable` can rebuild it)."""
    return Definitions(
        assets=[album_renditions],
        jobs=[process_album, rerender_albums, reprocess_failed_photos],
        resources={"photo_pipeline": PhotoPipelineResource()},
    )


def process_album_job() -> JobDefinition:
    return definitions().resolve_job_def(process_album.name)


@pytest.fixture
def env(photo_db: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("PHOTO_DATABASE_URL", photo_db)
    monkeypatch.setenv("PHOTO_BUCKET", s3_bucket)
    monkeypatch.setenv("PHOTO_PREVIEW_SIZE", "320")
    monkeypatch.setenv("PHOTO_THUMB_SIZE", "96")
    monkeypatch.setenv("PHOTO_WORKERS", "2")
    return monkeypatch


@pytest.fixture
def repository(photo_db: str) -> PhotoRepository:
    return PhotoRepository.from_url(photo_db)


@pytest.fixture
def store(s3_env: S3Server, s3_bucket: str) -> S3ObjectStore:
    return S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)


def upload(
    repository: PhotoRepository, store: S3ObjectStore, album: uuid.UUID, data: bytes, filename: str | None = None
) -> uuid.UUID:
    photo_id = uuid.uuid4()
    key = keys.raw_key(album, photo_id, "jpg")
    repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key, filename=filename))
    store.put(key, data, "image/jpeg")
    return photo_id


def photos(repository: PhotoRepository, store: S3ObjectStore, album: uuid.UUID, n: int) -> list[uuid.UUID]:
    return [upload(repository, store, album, samples.photo_jpeg(480, 360, seed=i)) for i in range(n)]


def fail_by_hand(repository: PhotoRepository, photo_ids: Sequence[uuid.UUID], error: str = "simulated crash") -> None:
    """What a worker does when a photo cannot be rendered: claim, then fail."""
    claims = repository.claim_photos(photo_ids, "test-worker")
    assert len(claims) == len(photo_ids)
    for claim in claims:
        assert repository.fail(claim, error)


def statuses(repository: PhotoRepository, photo_ids: Sequence[uuid.UUID]) -> list[PhotoStatus]:
    rows = repository.get_many(photo_ids)
    return [rows[p].status for p in photo_ids]


def reprocess(instance: DagsterInstance, album: uuid.UUID | str, **options: Any) -> ExecuteInProcessResult:
    """What the launchpad launches once an album partition is picked: the partition's tags and
    config (album_id filled in), with the options the operator changed on top."""
    instance.add_dynamic_partitions(ALBUMS, [str(album)])
    job = definitions().resolve_job_def(reprocess_failed_photos.name)
    run_config = config_for_album(str(album))
    run_config["ops"]["requeue_failed"]["config"].update(options)
    return job.execute_in_process(
        run_config=run_config, instance=instance, partition_key=str(album), raise_on_error=False
    )


def render(instance: DagsterInstance, job_name: str, album: uuid.UUID) -> ExecuteInProcessResult:
    instance.add_dynamic_partitions(ALBUMS, [str(album)])
    job = definitions().resolve_job_def(job_name)
    # No run_config: each job's own (preset) config applies, as for sensor runs and backfills.
    return job.execute_in_process(instance=instance, partition_key=str(album))


def output_metadata(result: ExecuteInProcessResult, step: str) -> Mapping[str, Any]:
    for event in result.events_for_node(step):
        if event.event_type is DagsterEventType.STEP_OUTPUT:
            return {k: v.value for k, v in event.step_output_data.metadata.items()}
    raise AssertionError(f"no output from {step}")


def check_evaluations(result: ExecuteInProcessResult) -> dict[str, AssetCheckEvaluation]:
    """The per-album check's evaluations by album, after asserting the run also evaluated the
    check across albums (once per album it rendered)."""
    evaluations = result.get_asset_check_evaluations()
    assert all(e.asset_key == AssetKey("thumbnails") for e in evaluations)
    per_album = [e for e in evaluations if e.check_name == NO_FAILED_PHOTOS_IN_ALBUM]
    across = [e for e in evaluations if e.check_name == NO_FAILED_PHOTOS_IN_ANY_ALBUM]
    assert len(across) == len(per_album) and all(e.partition is None for e in across)
    return {str(e.partition): e for e in per_album}


def across_albums_evaluation(result: ExecuteInProcessResult) -> AssetCheckEvaluation:
    """The run's last evaluation of the check across albums."""
    return [e for e in result.get_asset_check_evaluations() if e.check_name == NO_FAILED_PHOTOS_IN_ANY_ALBUM][-1]


def failure_description(result: ExecuteInProcessResult | JobExecutionResult) -> str:
    [failure] = result.get_step_failure_events()
    user_failure = failure.step_failure_data.user_failure_data
    assert user_failure is not None, "a Failure raised on purpose, not a crash"
    return user_failure.description or ""


def text(value: MetadataValue) -> str:
    return str(value.value)


def messages(instance: DagsterInstance, run_id: str) -> str:
    return "\n".join(entry.user_message for entry in instance.all_logs(run_id))


# -- reprocess_failed_photos -----------------------------------------------------------------


def test_failed_photos_of_an_album_are_requeued_and_rendered(
    instance: DagsterInstance, env: pytest.MonkeyPatch, repository: PhotoRepository, store: S3ObjectStore
) -> None:
    album, other_album = uuid.uuid4(), uuid.uuid4()
    failed = photos(repository, store, album, 3)
    fail_by_hand(repository, failed)
    untouched = photos(repository, store, other_album, 1)
    fail_by_hand(repository, untouched)

    result = reprocess(instance, album)

    assert result.success
    assert statuses(repository, failed) == [PhotoStatus.COMPLETED] * 3
    assert statuses(repository, untouched) == [PhotoStatus.FAILED], "another album's failures stay"
    requeued = output_metadata(result, "requeue_failed")
    assert requeued["photos_requeued"] == 3 and requeued["albums"] == 1
    assert "requeued 3 photo(s) in 1 album(s)" in messages(instance, result.run_id)
    for asset in ("thumbnails", "previews"):
        event = instance.get_latest_materialization_event(AssetKey(asset))
        assert event is not None and event.asset_materialization is not None
        assert event.run_id == result.run_id
        assert event.asset_materialization.partition == str(album)
        metadata = event.asset_materialization.metadata
        assert metadata["photos_rendered"].value == 3 and metadata["photos_failed"].value == 0
        assert int(text(metadata["bytes_written"])) > 0
        # The album from the table, as the asset records it after any render.
        assert metadata["album_completed"].value == 3 and metadata["album_failed"].value == 0
    assert check_evaluations(result)[str(album)].passed
    # The other album still has its failure: the check across albums says so.
    across = across_albums_evaluation(result)
    assert not across.passed and str(other_album) in text(across.metadata["albums"])


def test_chosen_photo_ids_only_touch_those_photos(
    instance: DagsterInstance, env: pytest.MonkeyPatch, repository: PhotoRepository, store: S3ObjectStore
) -> None:
    album = uuid.uuid4()
    chosen, left_failed, completed = photos(repository, store, album, 3)
    fail_by_hand(repository, [chosen, left_failed], "decoder crashed")
    assert render(instance, process_album.name, album).success  # renders `completed`
    completed_before = repository.get(completed)
    assert completed_before is not None and completed_before.status is PhotoStatus.COMPLETED
    unknown = uuid.uuid4()

    result = reprocess(instance, album, photo_ids=[str(chosen), str(completed), str(unknown)])

    assert result.success
    assert statuses(repository, [chosen, left_failed, completed]) == [
        PhotoStatus.COMPLETED,
        PhotoStatus.FAILED,
        PhotoStatus.COMPLETED,
    ]
    assert repository.get(completed) == completed_before, "a completed photo is not rendered again"
    requeued = output_metadata(result, "requeue_failed")
    assert requeued["photos_requeued"] == 1 and requeued["photos_not_requeued"] == 2
    assert "rerender_albums" in requeued["not_requeued"] and "no such photo" in requeued["not_requeued"]
    # The album still has a failed photo: the check says so, with the photo and its error.
    evaluation = check_evaluations(result)[str(album)]
    assert not evaluation.passed and evaluation.severity is AssetCheckSeverity.WARN
    assert evaluation.metadata["failed_photos"].value == 1
    assert evaluation.metadata["failed_photo_ids"].value == [str(left_failed)]
    assert "decoder crashed" in text(evaluation.metadata["latest_failures"])


def test_a_rerun_says_which_photos_it_fixed_and_which_failed_again_for_the_same_reason(
    instance: DagsterInstance, env: pytest.MonkeyPatch, repository: PhotoRepository, store: S3ObjectStore
) -> None:
    """Issue 18 item 7: re-running a still-corrupt photo used to end "Success" with 0 rendered and
    nothing else said. Now the step's summary, the run's tag, the log and the check compare each
    photo's failure before and after."""
    album = uuid.uuid4()
    still_corrupt = upload(repository, store, album, samples.corrupt_jpeg(), "cut.jpg")
    replaced = upload(repository, store, album, samples.corrupt_jpeg(), "replaced.jpg")
    assert render(instance, process_album.name, album).success
    failed_before = repository.get(still_corrupt)
    assert failed_before is not None and failed_before.status is PhotoStatus.FAILED
    assert failed_before.failure_kind is FailureKind.DAMAGED
    store.put(keys.raw_key(album, replaced, "jpg"), samples.photo_jpeg(480, 360), "image/jpeg")  # the fix
    crashed = upload(repository, store, album, samples.corrupt_jpeg(), "crashed.jpg")
    fail_by_hand(repository, [crashed], "simulated crash")  # it fails for its own reason when rendered

    result = reprocess(instance, album)

    assert result.success
    assert statuses(repository, [still_corrupt, replaced, crashed]) == [PhotoStatus.FAILED, PhotoStatus.COMPLETED, PhotoStatus.FAILED]
    rendered = output_metadata(result, "render_albums")
    summary = "re-run of 3 photo(s): 1 fixed (completed), 1 failed again, same reason, 1 failed again with a new reason"
    assert rendered["summary"] == summary
    assert (rendered["photos_fixed"], rendered["photos_failed_again_same_reason"], rendered["photos_failed_with_new_reason"]) == (1, 1, 1)
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.tags[RERUN_RESULT_TAG] == summary
    evaluation = check_evaluations(result)[str(album)]
    assert not evaluation.passed
    assert (evaluation.description or "").endswith("The re-run just made changed nothing for 1 of them: failed again, same reason")
    assert evaluation.metadata["failed_again_same_reason"].value == [str(still_corrupt)]
    # Each failed photo says whether a re-run can help it at all.
    assert "the file itself is damaged: a re-run cannot help" in text(evaluation.metadata["latest_failures"])
    materialization = instance.get_latest_materialization_event(AssetKey("thumbnails"))
    assert materialization is not None and materialization.asset_materialization is not None
    assert text(materialization.asset_materialization.metadata["summary"]).endswith(summary)

    again = reprocess(instance, album, photo_ids=[str(still_corrupt)])

    assert again.success
    nothing = (
        "re-run of 1 photo(s): 0 fixed (completed), 1 failed again, same reason: the re-run changed nothing "
        "(the originals are the same); replace them or fix the cause first"
    )
    assert output_metadata(again, "render_albums")["summary"] == nothing
    warnings = [e.user_message for e in instance.all_logs(again.run_id) if e.level >= logging.WARNING]
    assert f"album {album}: {nothing}" in warnings


def test_a_reruns_result_is_each_photos_failure_compared_with_the_one_before() -> None:
    album = uuid.uuid4()
    same, new, fixed, released, absent, other = (uuid.uuid4() for _ in range(6))
    before = {same: "cannot render: cut", new: "simulated crash", fixed: "simulated crash", released: "x", absent: "y"}
    outcomes = [
        PhotoOutcome(same, album, Outcome.FAILED, "cannot render: cut"),
        PhotoOutcome(new, album, Outcome.FAILED, "cannot render: cut"),
        PhotoOutcome(fixed, album, Outcome.COMPLETED),
        PhotoOutcome(released, album, Outcome.RELEASED, "storage error"),
        PhotoOutcome(other, album, Outcome.FAILED, "not requeued by this re-run"),
    ]

    result = reruns.rerun_result(album, before, outcomes)

    assert result == reruns.RerunResult(
        album, fixed=[fixed], failed_again=[same], failed_differently={new: "cannot render: cut"}, not_finished=[released, absent]
    )
    assert not result.changed_nothing
    assert reruns.rerun_result(album, {same: "cannot render: cut"}, outcomes[:1]).changed_nothing


def test_album_and_photo_ids_together_require_the_photo_to_be_in_the_album(
    instance: DagsterInstance, env: pytest.MonkeyPatch, repository: PhotoRepository, store: S3ObjectStore
) -> None:
    album, elsewhere = uuid.uuid4(), uuid.uuid4()
    [inside] = photos(repository, store, album, 1)
    [outside] = photos(repository, store, elsewhere, 1)
    fail_by_hand(repository, [inside, outside])

    result = reprocess(instance, album, photo_ids=[str(inside), str(outside)])

    assert result.success
    assert statuses(repository, [inside, outside]) == [PhotoStatus.COMPLETED, PhotoStatus.FAILED]
    assert f"belongs to album {elsewhere}" in output_metadata(result, "requeue_failed")["not_requeued"]


def test_missing_photos_are_requeued_only_with_include_missing(
    instance: DagsterInstance, env: pytest.MonkeyPatch, repository: PhotoRepository, store: S3ObjectStore
) -> None:
    album = uuid.uuid4()
    [missing] = photos(repository, store, album, 1)  # its file is back in the bucket
    assert ReconciliationQueries(repository).flag_missing([missing]) == 1

    without = reprocess(instance, album)
    assert without.success
    assert output_metadata(without, "requeue_failed")["photos_requeued"] == 0
    assert statuses(repository, [missing]) == [PhotoStatus.MISSING]

    with_missing = reprocess(instance, album, include_missing=True)
    assert with_missing.success
    assert output_metadata(with_missing, "requeue_failed")["photos_requeued"] == 1
    assert statuses(repository, [missing]) == [PhotoStatus.COMPLETED]


@pytest.mark.parametrize(
    ("album", "options", "message"),
    [
        ("holiday-2024", {}, "album_id 'holiday-2024' is not a UUID"),
        (str(uuid.uuid4()), {"photo_ids": [str(uuid.uuid4()), "IMG_0001.jpg"]}, "1 are not: 'IMG_0001.jpg'"),
    ],
    # Fixed ids: the random UUIDs would name the test differently in each xdist worker's collection.
    ids=["album-not-a-uuid", "photo-id-not-a-uuid"],
)
def test_invalid_config_fails_the_run_with_a_clear_error(
    instance: DagsterInstance, env: pytest.MonkeyPatch, album: str, options: dict[str, Any], message: str
) -> None:
    result = reprocess(instance, album, **options)

    assert not result.success
    assert [f.step_key for f in result.get_step_failure_events()] == ["requeue_failed"]
    description = failure_description(result)
    assert description.startswith("invalid config:") and message in description


def test_nothing_chosen_is_refused_before_any_run(instance: DagsterInstance, env: pytest.MonkeyPatch) -> None:
    """No album picked: the config lacks its required album_id, so the run is never created (the
    launchpad shows the missing field instead of a run that fails with a stack trace)."""
    job = definitions().resolve_job_def(reprocess_failed_photos.name)

    with pytest.raises(DagsterInvalidConfigError, match="album_id"):
        job.execute_in_process(instance=instance, raise_on_error=False)

    assert instance.get_runs_count() == 0


def test_launchpad_picks_the_album_from_the_partition_picker(
    instance: DagsterInstance, env: pytest.MonkeyPatch, repository: PhotoRepository, store: S3ObjectStore
) -> None:
    """What the UI asks the webserver: the job is partitioned by album; picking a partition fills
    album_id (and shows the other options); with nothing picked the config is invalid, naming
    album_id; a run launched with the picked partition's config and tags re-runs that album."""
    album = uuid.uuid4()
    failed = photos(repository, store, album, 2)
    fail_by_hand(repository, failed)
    instance.add_dynamic_partitions(ALBUMS, [str(album)])

    with code_location(instance) as workspace:
        job = query(workspace, JOB_PARTITIONS, {"selector": job_selector(reprocess_failed_photos.name)})
        picked = query(
            workspace,
            PARTITION_CONFIG,
            {"repository": repository_selector(), "partitionSet": f"{reprocess_failed_photos.name}_partition_set", "partition": str(album)},
        )
        nothing_picked = query(
            workspace, CONFIG_VALID, {"selector": job_selector(reprocess_failed_photos.name), "config": {}}
        )

    assert job["pipelineOrError"]["isJob"] and job["pipelineOrError"]["partitionKeysOrError"]["partitionKeys"] == [str(album)]
    partition = picked["partitionSetOrError"]["partition"]
    config = yaml.safe_load(partition["runConfigOrError"]["yaml"])
    assert config == {"ops": {"requeue_failed": {"config": {"album_id": str(album), "photo_ids": [], "include_missing": False}}}}
    tags = {t["key"]: t["value"] for t in partition["tagsOrError"]["results"]}
    assert tags["dagster/partition"] == str(album)
    invalid = nothing_picked["isPipelineConfigValid"]
    assert invalid["__typename"] == "RunConfigValidationInvalid"
    assert any("album_id" in error["message"] for error in invalid["errors"])

    # Launch what the launchpad holds: that partition's config and tags.
    result = definitions().resolve_job_def(reprocess_failed_photos.name).execute_in_process(
        run_config=config, tags=tags, instance=instance, raise_on_error=False
    )

    assert result.success
    assert statuses(repository, failed) == [PhotoStatus.COMPLETED] * 2
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.tags["dagster/partition"] == str(album)
    assert check_evaluations(result)[str(album)].passed


JOB_PARTITIONS = """
query ($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    ... on Pipeline { isJob partitionKeysOrError { ... on PartitionKeys { partitionKeys } } }
  }
}
"""

PARTITION_CONFIG = """
query ($repository: RepositorySelector!, $partitionSet: String!, $partition: String!) {
  partitionSetOrError(repositorySelector: $repository, partitionSetName: $partitionSet) {
    ... on PartitionSet {
      partition(partitionName: $partition) {
        runConfigOrError { ... on PartitionRunConfig { yaml } }
        tagsOrError { ... on PartitionTags { results { key value } } }
      }
    }
  }
}
"""

CONFIG_VALID = """
query ($selector: PipelineSelector!, $config: RunConfigData) {
  isPipelineConfigValid(pipeline: $selector, mode: "default", runConfigData: $config) {
    __typename
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


def test_selection_rules_without_dagster() -> None:
    album, photo = uuid.uuid4(), uuid.uuid4()
    selection = reruns.parse_selection(str(album), [f" {photo} ", str(photo)], include_missing=False)
    assert selection == reruns.RerunSelection(album_id=album, photo_ids=(photo,), include_missing=False)
    assert reruns.parse_selection("", [str(photo)], True).album_id is None
    with pytest.raises(reruns.InvalidRerunSelection, match="nothing chosen"):
        reruns.parse_selection(None, [], include_missing=True)


# -- rerender_albums and the check on process_album -----------------------------------------


def test_rerender_albums_renders_every_completed_photo_again_with_new_settings(
    instance: DagsterInstance, env: pytest.MonkeyPatch, repository: PhotoRepository, store: S3ObjectStore
) -> None:
    album = uuid.uuid4()
    rendered = photos(repository, store, album, 2)
    [failed] = photos(repository, store, album, 1)
    fail_by_hand(repository, [failed])
    assert render(instance, process_album.name, album).success
    before = repository.get_many(rendered)
    previews_before = {p: store.get(before[p].preview_key or "") for p in rendered}

    # The sensors' runs (no run config) never re-render: completed photos are left alone.
    assert render(instance, process_album.name, album).success
    assert repository.get_many(rendered) == before

    env.setenv("PHOTO_WATERMARK_TEXT", "© a new owner, 2025")
    # What a backfill from the UI launches for each album: the job's preset config.
    job = definitions().resolve_job_def(rerender_albums.name)
    assert job.partitioned_config is not None
    assert job.partitioned_config.get_run_config_for_partition_key(str(album))["ops"] == {
        "album_renditions": {"config": {"rerender": True}}
    }
    result = render(instance, rerender_albums.name, album)

    assert result.success
    after = repository.get_many(rendered)
    for photo in rendered:
        assert after[photo].status is PhotoStatus.COMPLETED
        assert after[photo].completed_at > before[photo].completed_at  # type: ignore[operator]
        assert after[photo].attempts == before[photo].attempts + 1
        assert store.get(after[photo].preview_key or "") != previews_before[photo], "new watermark"
    assert statuses(repository, [failed]) == [PhotoStatus.FAILED], "failed photos need reprocess_failed_photos"
    [materialization] = [
        m for m in result.asset_materializations_for_node("album_renditions") if m.asset_key == AssetKey("previews")
    ]
    assert materialization.metadata["photos_rendered"].value == 2


def test_no_failed_photos_check_per_album(
    instance: DagsterInstance, env: pytest.MonkeyPatch, repository: PhotoRepository, store: S3ObjectStore
) -> None:
    clean, broken = uuid.uuid4(), uuid.uuid4()
    photos(repository, store, clean, 1)
    photos(repository, store, broken, 1)
    corrupt = upload(repository, store, broken, samples.corrupt_jpeg(), "DSC_0042.jpg")

    clean_run = render(instance, process_album.name, clean)
    broken_run = render(instance, process_album.name, broken)

    assert clean_run.success and broken_run.success, "a bad photo never fails the run"
    assert check_evaluations(clean_run)[str(clean)].passed
    evaluation = check_evaluations(broken_run)[str(broken)]
    assert not evaluation.passed and evaluation.severity is AssetCheckSeverity.WARN
    assert evaluation.metadata["failed_photos"].value == 1
    assert evaluation.metadata["failed_photo_ids"].value == [str(corrupt)]
    assert "cannot render" in text(evaluation.metadata["latest_failures"])
    # By the uploader's file name beside the id, in the table and in the description.
    assert f"| DSC\\_0042.jpg | `{corrupt}` |" in text(evaluation.metadata["latest_failures"])
    assert "1 failed photo(s): DSC_0042.jpg" in (evaluation.description or "")
    # Stored per album partition, so one album's failures do not colour another's check.
    assert evaluation.partition == str(broken)


def test_failures_across_albums_without_dagster(repository: PhotoRepository) -> None:
    titled, untitled, clean = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    repository.set_album_title(titled, "Studio")
    failed_here = [register(repository, titled, f"scan-{i}.tif") for i in range(3)]
    failed_there = [register(repository, untitled, None)]
    register(repository, clean, "fine.jpg")
    fail_by_hand(repository, failed_here, "cannot render: truncated")
    fail_by_hand(repository, failed_there)

    across = reruns.failures_across_albums(repository, limit=1)
    assert (across.albums, across.photos, across.passed) == (2, 4, False)
    assert across.listed == [reruns.FailedAlbum(titled, "Studio", 3)], "the most failed first, up to the limit"

    album = reruns.album_failures(repository, titled, examples=2)
    assert album.failed == 3 and len(album.examples) == 2
    assert {p.filename for p in album.examples} <= {"scan-0.tif", "scan-1.tif", "scan-2.tif"}
    assert all(p.error == "cannot render: truncated" for p in album.examples)
    [unnamed] = reruns.album_failures(repository, untitled).examples
    assert unnamed.filename == f"{failed_there[0]}.jpg", "no recorded name: the key's last segment"
    assert reruns.failures_across_albums(repository).listed[1] == reruns.FailedAlbum(untitled, None, 1)


def register(repository: PhotoRepository, album: uuid.UUID, filename: str | None) -> uuid.UUID:
    """A pending row without an object (the rules above read the table only)."""
    photo_id = uuid.uuid4()
    key = keys.raw_key(album, photo_id, "jpg")
    repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key, filename=filename))
    return photo_id


# -- re-execute from failure -----------------------------------------------------------------


def test_failed_run_is_re_executed_from_failure_once_the_cause_is_fixed(
    instance: DagsterInstance,
    env: pytest.MonkeyPatch,
    repository: PhotoRepository,
    store: S3ObjectStore,
    postgres_url: str,
    postgres_server: PostgresServer,
) -> None:
    album = uuid.uuid4()
    uploaded = photos(repository, store, album, 2)
    instance.add_dynamic_partitions(ALBUMS, [str(album)])
    right_database = postgres_url
    # A deployment mistake: the code points at a database without the photo table.
    env.setenv("PHOTO_DATABASE_URL", postgres_server.new_database())
    tags = {"dagster/partition": str(album)}

    failed = execute_job(reconstructable(process_album_job), instance=instance, run_config=IN_PROCESS, tags=tags)

    assert not failed.success
    description = failure_description(failed)
    assert "has no photos table" in description and "re-execute this run from failure" in description
    retries = [e for e in failed.all_events if e.event_type is DagsterEventType.STEP_UP_FOR_RETRY]
    assert not retries, "no retry can fix a missing table: fail at once"
    assert statuses(repository, uploaded) == [PhotoStatus.PENDING] * 2

    env.setenv("PHOTO_DATABASE_URL", right_database)  # the fix, then the UI's "Re-execute from failure"
    again = execute_job(
        reconstructable(process_album_job),
        instance=instance,
        tags=tags,  # the UI copies the parent's tags; execute_job does not
        reexecution_options=ReexecutionOptions.from_failure(failed.run_id, instance),
    )

    assert again.success
    run = instance.get_run_by_id(again.run_id)
    assert run is not None and run.parent_run_id == failed.run_id
    assert statuses(repository, uploaded) == [PhotoStatus.COMPLETED] * 2
    event = instance.get_latest_materialization_event(AssetKey("thumbnails"))
    assert event is not None and event.run_id == again.run_id
