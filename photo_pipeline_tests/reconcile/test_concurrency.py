"""Issue 6, item 7a: two reconciliations at once must not render the same photos twice.

- At most one `reconcile_storage` run at a time: a tag concurrency limit in the repository's
  dagster.yaml (and in the local instance's), checked by dequeuing with Dagster's own
  QueuedRunCoordinatorDaemon on an instance built from those files.
- Re-render requests are idempotent: two plans that both want a photo rendered again render it
  once (the claim takes a completed photo only if its completion is still what the plan saw).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.test_utils import (
    create_run_for_test,
    create_test_daemon_workspace_context,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)
from sqlalchemy.engine import make_url

from photo_pipeline.cli import samples
from photo_pipeline.instance.local import LOCAL_DAGSTER_YAML
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import NewPhoto, PhotoRepository
from photo_pipeline.reconcile.apply import Reconciler
from photo_pipeline.reconcile.plan import ActionKind, ReconcilePolicy
from photo_pipeline.rendering.render import RenderOptions
from photo_pipeline.services.processing import PhotoProcessor, ProcessingLimits
from photo_pipeline.storage import S3ObjectStore, keys, make_s3_client
from photo_pipeline_tests.conftest import ROOT, PostgresServer, S3Server

JPEG = samples.photo_jpeg(64, 48)
# Dagster's own in-memory launcher for coordinator tests: records launches, starts no process.
MOCKED_LAUNCHER = {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}


@contextmanager
def instance_from(config: dict, home: Path) -> Iterator[DagsterInstance]:
    """The instance an operator gets from this configuration, with only the run launcher
    swapped, so dequeuing decides on the file's concurrency settings but starts no process."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump({**config, "run_launcher": MOCKED_LAUNCHER}))
    with DagsterInstance.from_config(str(home)) as instance:
        yield instance


@contextmanager
def code_location(instance: DagsterInstance) -> Iterator[WorkspaceProcessContext]:
    """The project's code location (photo_pipeline.definitions:defs), loaded in this process."""
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable,
            module_name="photo_pipeline.definitions",
            attribute="defs",
            working_directory=str(ROOT),
        ),
        location_name="photo_pipeline",
    )
    with create_test_daemon_workspace_context(InProcessWorkspaceLoadTarget(origin), instance) as workspace:
        yield workspace


def queue_reconcile_runs(instance: DagsterInstance, workspace: WorkspaceProcessContext, count: int) -> list[str]:
    """Submit runs of reconcile_storage as the UI or the scheduler does: tags and origin from the
    code location's job, queued by the instance's run coordinator."""
    request = workspace.create_request_context()
    [repository] = request.get_code_location("photo_pipeline").get_repositories().values()
    job = repository.get_full_job("reconcile_storage")
    run_ids = []
    for _ in range(count):
        run = create_run_for_test(
            instance,
            job_name=job.name,
            status=DagsterRunStatus.NOT_STARTED,
            tags=job.run_tags,
            remote_job_origin=job.get_remote_origin(),
            job_code_origin=job.get_python_origin(),
        )
        instance.submit_run(run.run_id, request)
        run_ids.append(run.run_id)
    return run_ids


def dequeue_once(workspace: WorkspaceProcessContext) -> None:
    list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(workspace))


def launched(instance: DagsterInstance, run_ids: list[str]) -> list[str]:
    runs = instance.get_runs(RunsFilter(run_ids=run_ids))
    return [r.run_id for r in runs if r.status is not DagsterRunStatus.QUEUED]


def assert_one_reconcile_at_a_time(instance: DagsterInstance) -> None:
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    with code_location(instance) as workspace:
        run_ids = queue_reconcile_runs(instance, workspace, 2)
        assert all(instance.get_run_by_id(r).tags.get("photo_pipeline/kind") == "reconcile" for r in run_ids)  # type: ignore[union-attr]
        assert all(instance.get_run_by_id(r).status is DagsterRunStatus.QUEUED for r in run_ids)  # type: ignore[union-attr]

        for _ in range(2):  # a second pass must not let the other one through either
            dequeue_once(workspace)
            assert len(launched(instance, run_ids)) == 1
        [first] = launched(instance, run_ids)
        assert instance.get_run_by_id(first).status is DagsterRunStatus.STARTING  # type: ignore[union-attr]

        # Once the first has finished, the second goes.
        instance.report_run_failed(instance.get_run_by_id(first))  # type: ignore[arg-type]
        dequeue_once(workspace)
        assert sorted(launched(instance, run_ids)) == sorted(run_ids)


def test_production_instance_runs_one_reconcile_storage_at_a_time(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_url(postgres_server.new_database())
    monkeypatch.setenv("DAGSTER_PG_HOST", url.host or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_USER", url.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "unused-with-trust-auth")
    monkeypatch.setenv("DAGSTER_PG_DB", url.database or "")
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    with instance_from(config, tmp_path / "prod") as instance:
        assert_one_reconcile_at_a_time(instance)


def test_local_instance_runs_one_reconcile_storage_at_a_time(tmp_path: Path) -> None:
    config = yaml.safe_load(LOCAL_DAGSTER_YAML)
    with instance_from(config, tmp_path / "local") as instance:
        assert_one_reconcile_at_a_time(instance)


# -- idempotent re-render ------------------------------------------------------------------------


def completed_photo(repository: PhotoRepository, store: S3ObjectStore, album: uuid.UUID) -> uuid.UUID:
    photo_id = uuid.uuid4()
    key = keys.raw_key(album, photo_id, "jpg")
    repository.register_pending(NewPhoto(id=photo_id, album_id=album, original_key=key))
    store.put(key, JPEG, "image/jpeg")
    [claim] = repository.claim_photos([photo_id], "seed")
    thumb, preview = keys.thumb_key(album, photo_id, "JPEG"), keys.preview_key(album, photo_id, "JPEG")
    store.put(thumb, JPEG, "image/jpeg")
    store.put(preview, JPEG, "image/jpeg")
    assert repository.complete(
        claim, thumb_key=thumb, preview_key=preview, width=64, height=48, original_bytes=1, thumb_bytes=1, preview_bytes=1
    )
    return photo_id


def test_two_reconciliations_planning_the_same_rerender_render_it_once(
    photo_db: str, s3_env: S3Server, s3_bucket: str
) -> None:
    repository = PhotoRepository.from_url(photo_db)
    store = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)
    album = uuid.uuid4()
    lost, kept = completed_photo(repository, store, album), completed_photo(repository, store, album)
    store.delete(keys.thumb_key(album, lost, "JPEG"))
    processor = PhotoProcessor(repository, store, RenderOptions(preview_long_side=64, thumb_long_side=32), ProcessingLimits(workers=1))
    policy = ReconcilePolicy(min_changes=100)

    # Both plans are made before either applies: the race of two runs at once.
    first, second = Reconciler(repository, store, policy), Reconciler(repository, store, policy)
    plan_a, plan_b = first.plan(), second.plan()
    assert [a.photo_id for a in plan_a.of_kind(ActionKind.RERENDER)] == [lost]
    assert [a.photo_id for a in plan_b.of_kind(ActionKind.RERENDER)] == [lost]
    before = repository.get(lost)
    assert before is not None

    report_a = first.apply(plan_a, processor=processor, worker="reconcile-a")
    after_a = repository.get(lost)
    assert report_a.applied["rerender"] == 1 and report_a.ok
    assert after_a is not None and after_a.status is PhotoStatus.COMPLETED and after_a.attempts == before.attempts + 1
    assert after_a.completed_at != before.completed_at

    report_b = second.apply(plan_b, processor=processor, worker="reconcile-b")
    after_b = repository.get(lost)
    assert report_b.applied["rerender"] == 0 and report_b.ok
    assert after_b == after_a, "the second plan's re-render of a photo rendered since is a no-op"
    assert store.exists(keys.thumb_key(album, lost, "JPEG"))
    assert repository.get(kept) is not None and repository.get(kept).attempts == 1  # type: ignore[union-attr]


def test_rerender_claim_takes_only_the_completion_the_plan_saw(photo_db: str, s3_env: S3Server, s3_bucket: str) -> None:
    repository = PhotoRepository.from_url(photo_db)
    store = S3ObjectStore(make_s3_client(endpoint_url=s3_env.endpoint_url), s3_bucket)
    album = uuid.uuid4()
    photo = completed_photo(repository, store, album)
    seen = repository.get(photo)
    assert seen is not None and seen.completed_at is not None
    # A plan that saw another completion gets nothing; the one that saw this one gets the claim,
    # and a second identical request while it is processing gets nothing either.
    assert repository.claim_for_rerender([(photo, seen.completed_at - timedelta(microseconds=1))], "stale") == []
    [claim] = repository.claim_for_rerender([(photo, seen.completed_at)], "fresh")
    assert claim.id == photo
    assert repository.claim_for_rerender([(photo, seen.completed_at)], "again") == []
