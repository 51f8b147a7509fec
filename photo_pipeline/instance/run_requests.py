"""The fast path: "this photo has arrived" turns into its album's `process_album` run at once.

The sensors find every upload sooner or later (they stay the safety net); a client that knows an
upload is complete says so, and the run is requested without waiting for a tick. Used by the
CLI's `upload` and `arrived` commands, and by the HTTP API's `POST /api/photos/{id}/complete`.

How the run is requested: like `dagster job launch` (dagster/_cli/job.py): the job's snapshot and
execution plan come from the code location, the run is created with its remote origin and handed
to the instance's run coordinator. With the production `dagster.yaml` that coordinator is the
queue, so the run waits behind the album's per-album limit like a sensor's run would, and the
daemon launches it. The code location is loaded in this process (the module and attribute that
`workspace.yaml` names, under the same location name, which is all the daemon needs to launch
it): starting a gRPC code server for one request would cost more than the request saves. The
webserver's GraphQL API would do the same but requires a webserver to be up; the daemon and the
database are what the pipeline already depends on.

Pure rules first (which albums, request or skip); the Dagster adapter below only wires them.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.errors import DagsterError
from sqlalchemy.exc import SQLAlchemyError

from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import PhotoRecord
from photo_pipeline.settings import Settings, env_is_set

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
# What workspace.yaml loads (a test keeps the two in step).
DEFINITIONS_MODULE = "photo_pipeline.definitions"
DEFINITIONS_ATTRIBUTE = "defs"
LOCATION_NAME = "photo_pipeline"
JOB_NAME = "process_album"
PARTITION_TAG = "dagster/partition"
TRIGGER_TAG = "photo_pipeline/trigger"
TRIGGER = "arrived"
ALBUMS_PARTITIONS = "albums"

# What a run request may fail with (the instance's storage, the code location, the machine).
# Such a failure loses no photo: it stays pending and the sensors request its run within their
# interval, so callers report it as a warning, not as the client's error.
RUN_REQUEST_ERRORS: tuple[type[Exception], ...] = (DagsterError, SQLAlchemyError, OSError)

# A run in one of these states has not claimed yet (or is about to): it will see the photo.
NOT_YET_CLAIMING = frozenset({DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING})
IN_FLIGHT = [*NOT_YET_CLAIMING, DagsterRunStatus.STARTED]


class Decision(Enum):
    SUBMIT = "submitted"
    # Queued behind the album's run that is already claiming: it may have claimed its last batch
    # before the photo landed, so a run that starts after it ends picks the photo up.
    SUBMIT_FOLLOWER = "submitted (after the run in progress)"
    SKIP_WAITING_RUN = "skipped: a run of the album is waiting to start and will pick the photo up"


def decide(in_flight: Collection[DagsterRunStatus]) -> Decision:
    """One album's request, from the statuses of its `process_album` runs still in flight.

    At most one run per album waits to start: the per-album limit in dagster.yaml lets one run
    claim at a time, and a run that has not started claiming will see every photo pending now."""
    if any(status in NOT_YET_CLAIMING for status in in_flight):
        return Decision.SKIP_WAITING_RUN
    if in_flight:
        return Decision.SUBMIT_FOLLOWER
    return Decision.SUBMIT


@dataclass(frozen=True)
class ArrivalPlan:
    """Which albums to request a run for, and the photos that cannot be processed and why."""

    albums: list[uuid.UUID]
    refused: dict[uuid.UUID, str]


def plan_arrivals(photo_ids: Iterable[uuid.UUID], rows: Mapping[uuid.UUID, PhotoRecord]) -> ArrivalPlan:
    """Albums of the photos that are pending (in first-seen order); every other photo is refused
    with a reason the client can act on."""
    albums: list[uuid.UUID] = []
    refused: dict[uuid.UUID, str] = {}
    for photo_id in photo_ids:
        row = rows.get(photo_id)
        if row is None:
            refused[photo_id] = "no such photo"
        elif row.status is not PhotoStatus.PENDING:
            refused[photo_id] = f"photo is {row.status.value}, not pending"
        elif row.album_id not in albums:
            albums.append(row.album_id)
    return ArrivalPlan(albums=albums, refused=refused)


@dataclass(frozen=True)
class AlbumRunRequest:
    album_id: uuid.UUID
    decision: Decision
    run_id: str | None

    @property
    def submitted(self) -> bool:
        return self.run_id is not None


class AlbumRunRequester:
    """Requests `process_album` runs on a Dagster instance. Holds the code location loaded once:
    a long-lived caller (the HTTP API) keeps one open, a CLI command opens one per invocation."""

    def __init__(self, instance: DagsterInstance) -> None:
        self._instance = instance
        self._workspace_context = None

    @property
    def instance(self) -> DagsterInstance:
        """The instance runs are requested on (the API's /metrics reads the latest plan there)."""
        return self._instance

    def __enter__(self) -> AlbumRunRequester:
        from dagster._core.remote_origin import InProcessCodeLocationOrigin
        from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
        from dagster._core.workspace.context import WorkspaceProcessContext
        from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

        origin = InProcessCodeLocationOrigin(
            loadable_target_origin=LoadableTargetOrigin(
                executable_path=sys.executable,
                module_name=DEFINITIONS_MODULE,
                attribute=DEFINITIONS_ATTRIBUTE,
                working_directory=str(ROOT),
            ),
            location_name=LOCATION_NAME,
        )
        self._workspace_context = WorkspaceProcessContext(self._instance, InProcessWorkspaceLoadTarget(origin))
        self._workspace_context.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._workspace_context is not None:
            self._workspace_context.__exit__(*exc_info)
            self._workspace_context = None

    def album_runs_in_flight(self, album_id: uuid.UUID) -> list[DagsterRunStatus]:
        records = self._instance.get_run_records(
            RunsFilter(job_name=JOB_NAME, statuses=IN_FLIGHT, tags={PARTITION_TAG: str(album_id)}), limit=10
        )
        return [record.dagster_run.status for record in records]

    def request(self, album_id: uuid.UUID) -> AlbumRunRequest:
        """Submit the album's run unless one that has not started claiming is already there."""
        decision = decide(self.album_runs_in_flight(album_id))
        if decision is Decision.SKIP_WAITING_RUN:
            return AlbumRunRequest(album_id, decision, None)
        run_id = self._submit(album_id)
        log.info("album %s: process_album run %s %s", album_id, run_id, decision.value)
        return AlbumRunRequest(album_id, decision, run_id)

    def forget_album(self, album_id: uuid.UUID) -> bool:
        """Delete an erased album's partition; False when it had none."""
        from photo_pipeline.instance.partitions import remove_album_partitions

        return bool(remove_album_partitions(self._instance, [album_id]))

    def _submit(self, album_id: uuid.UUID) -> str:
        from dagster._core.definitions.selector import JobSubsetSelector

        if self._workspace_context is None:
            raise RuntimeError("AlbumRunRequester is used outside its `with` block")
        partition = str(album_id)
        if not self._instance.has_dynamic_partition(ALBUMS_PARTITIONS, partition):
            self._instance.add_dynamic_partitions(ALBUMS_PARTITIONS, [partition])
        workspace = self._workspace_context.create_request_context()
        location = workspace.get_code_location(LOCATION_NAME)
        [repository] = location.get_repositories().values()
        job = location.get_job(
            JobSubsetSelector(location_name=LOCATION_NAME, repository_name=repository.name, job_name=JOB_NAME, op_selection=None)
        )
        plan = location.get_execution_plan(job, {}, step_keys_to_execute=None, known_state=None, instance=self._instance)
        snapshot = plan.execution_plan_snapshot
        run = self._instance.create_run(
            job_name=JOB_NAME,
            run_id=None,
            run_config={},
            resolved_op_selection=None,
            step_keys_to_execute=snapshot.step_keys_to_execute,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags={**job.tags, PARTITION_TAG: partition, TRIGGER_TAG: TRIGGER},
            job_snapshot=job.job_snapshot,
            execution_plan_snapshot=snapshot,
            parent_job_snapshot=job.parent_job_snapshot,
            remote_job_origin=job.get_remote_origin(),
            job_code_origin=job.get_python_origin(),
            asset_selection=None,
            asset_check_selection=None,
            asset_graph=repository.asset_graph,
        )
        return self._instance.submit_run(run.run_id, workspace).run_id


def instance_for(settings: Settings) -> DagsterInstance:
    """The daemon's instance: the one DAGSTER_HOME names (production), else the embedded mode's
    local instance that `photo-pipeline ui` runs."""
    if env_is_set("DAGSTER_HOME"):
        return DagsterInstance.get()
    from photo_pipeline.instance.local import local_instance

    return local_instance(settings)


@contextmanager
def album_run_requester(instance: DagsterInstance | None = None) -> Iterator[AlbumRunRequester]:
    """A requester on the given instance, or on the daemon's (see `instance_for`)."""
    if instance is not None:
        with AlbumRunRequester(instance) as requester:
            yield requester
        return
    with instance_for(Settings.from_env()) as own, AlbumRunRequester(own) as requester:
        yield requester


def request_album_run(album_id: uuid.UUID, instance: DagsterInstance | None = None) -> AlbumRunRequest:
    """Request one album's `process_album` run now (see `AlbumRunRequester.request`)."""
    with album_run_requester(instance) as requester:
        return requester.request(album_id)
