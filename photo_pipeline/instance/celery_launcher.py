"""Album runs on Celery workers: dagster-celery's `CeleryRunLauncher`, with a health check that
notices a dead worker.

The stock launcher judges a run's health by its Celery task state alone. A worker killed with
`kill -9` (or a machine that vanished) never writes another state, so its task reads STARTED
forever and run monitoring would keep the run STARTED for good, holding the album's concurrency
slot (dagster-io/dagster PR #33493, still open for 1.13, proposes the same fix upstream). Here a
STARTED task is also put to the worker that took it, over the broker (`inspect().query_task`): a
worker that does not answer, or answers without the task (it was restarted under the same name),
for `worker_lost_after_seconds` in a row has lost the run, and run monitoring marks it failed. The
grace period keeps one missed answer on a busy machine from failing a healthy run: a run marked
failed while still working would free its album's slot for a second run of the album.

The rule (`run_worker_health`) is pure; `PhotoCeleryRunLauncher` only asks Celery and remembers
since when each task's worker has been silent (the daemon keeps one launcher for its lifetime).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from dagster import DagsterRun, Field, IntSource
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._serdes import ConfigurableClassData
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

# Defaults of the two settings below (the production yaml states them explicitly).
DEFAULT_WORKER_ANSWER_TIMEOUT_SECONDS = 5
DEFAULT_WORKER_LOST_AFTER_SECONDS = 60


class WorkerReply(Enum):
    """What the worker that took a task said when asked about it."""

    HOLDS_TASK = "holds the task"
    FORGOT_TASK = "answers but no longer runs the task (restarted?)"
    SILENT = "does not answer"


@dataclass(frozen=True)
class HealthVerdict:
    result: CheckRunHealthResult
    # Since when the worker has failed to vouch for the task (monotonic seconds), or None.
    silent_since: float | None


def run_worker_health(
    task_state: str,
    worker: str | None,
    reply: WorkerReply | None,
    silent_since: float | None,
    now: float,
    lost_after_seconds: float,
) -> HealthVerdict:
    """The health of a run's worker from its Celery task state and, for a STARTED task, what its
    worker said. `reply` is None when the worker was not asked (no worker recorded)."""
    if task_state == "SUCCESS":
        return HealthVerdict(CheckRunHealthResult(WorkerStatus.SUCCESS), None)
    if task_state in ("FAILURE", "REVOKED"):
        return HealthVerdict(CheckRunHealthResult(WorkerStatus.FAILED, f"Celery task {task_state.lower()}."), None)
    if task_state != "STARTED":
        # PENDING, RETRY: as the stock launcher says (run monitoring fails a STARTED run on it).
        return HealthVerdict(CheckRunHealthResult(WorkerStatus.UNKNOWN, f"Unknown task status: {task_state}"), None)
    if worker is None or reply is None or reply is WorkerReply.HOLDS_TASK:
        return HealthVerdict(CheckRunHealthResult(WorkerStatus.RUNNING), None)
    first_miss = now if silent_since is None else silent_since
    waited = now - first_miss
    if waited < lost_after_seconds:
        # Not yet: a worker on a loaded machine may miss one answer.
        return HealthVerdict(CheckRunHealthResult(WorkerStatus.RUNNING), first_miss)
    message = (
        f"Celery worker {worker} {reply.value} for {waited:.0f}s (limit {lost_after_seconds:.0f}s): "
        "the run's worker is gone (killed, crashed or its machine lost)."
    )
    return HealthVerdict(CheckRunHealthResult(WorkerStatus.FAILED, message), first_miss)


def task_worker(task_info: Any) -> str | None:
    """The worker's node name Celery records with a STARTED task (`track_started`)."""
    if isinstance(task_info, Mapping):
        hostname = task_info.get("hostname")
        return hostname if isinstance(hostname, str) and hostname else None
    return None


def reply_about(task_id: str, worker: str, replies: Mapping[str, Any] | None) -> WorkerReply:
    """Read `inspect(destination=[worker]).query_task(task_id)`: `{worker: {task_id: [state,
    info]}}`, or None when no worker answered."""
    if not replies or worker not in replies:
        return WorkerReply.SILENT
    held = replies[worker] or {}
    return WorkerReply.HOLDS_TASK if task_id in held else WorkerReply.FORGOT_TASK


class PhotoCeleryRunLauncher(CeleryRunLauncher):
    """`CeleryRunLauncher` whose health check asks the task's worker (see the module's docstring).

    Configured in deploy/dagster-celery.yaml like the stock launcher (broker, backend,
    default_queue, config_source), plus `worker_answer_timeout_seconds` (how long one question
    waits) and `worker_lost_after_seconds` (how long a worker may fail to vouch for its task)."""

    def __init__(
        self,
        default_queue: str,
        broker: str | None = None,
        backend: str | None = None,
        include: list[str] | None = None,
        config_source: dict | None = None,
        inst_data: ConfigurableClassData | None = None,
        worker_answer_timeout_seconds: int = DEFAULT_WORKER_ANSWER_TIMEOUT_SECONDS,
        worker_lost_after_seconds: int = DEFAULT_WORKER_LOST_AFTER_SECONDS,
    ) -> None:
        super().__init__(
            default_queue=default_queue,
            broker=broker,
            backend=backend,
            include=include,
            config_source=config_source,
            inst_data=inst_data,
        )
        self.worker_answer_timeout_seconds = worker_answer_timeout_seconds
        self.worker_lost_after_seconds = worker_lost_after_seconds
        self._silent_since: dict[str, float] = {}
        self._lock = threading.Lock()

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {
            **CeleryRunLauncher.config_type(),
            "worker_answer_timeout_seconds": Field(
                IntSource,
                is_required=False,
                default_value=DEFAULT_WORKER_ANSWER_TIMEOUT_SECONDS,
                description="Seconds the health check waits for the worker of a STARTED run to answer.",
            ),
            "worker_lost_after_seconds": Field(
                IntSource,
                is_required=False,
                default_value=DEFAULT_WORKER_LOST_AFTER_SECONDS,
                description=(
                    "A STARTED run whose worker has not answered for it (or answered without its task) "
                    "for this long is reported failed to run monitoring."
                ),
            ),
        }

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        task_id = run.tags[DAGSTER_CELERY_TASK_ID_TAG]
        result = self.celery.AsyncResult(task_id)
        state = result.state
        worker = task_worker(result.info) if state == "STARTED" else None
        reply = self._ask(task_id, worker) if worker is not None else None
        if reply is not None and reply is not WorkerReply.HOLDS_TASK:
            # The task may have ended between the two reads (its result is stored before the
            # worker forgets it): read the state again before counting a miss.
            state = self.celery.AsyncResult(task_id).state
        with self._lock:
            verdict = run_worker_health(
                state, worker, reply, self._silent_since.get(task_id), time.monotonic(), self.worker_lost_after_seconds
            )
            # Remembered only while the run is still judged running: a verdict ends the watch.
            if verdict.silent_since is not None and verdict.result.status is WorkerStatus.RUNNING:
                self._silent_since[task_id] = verdict.silent_since
            else:
                self._silent_since.pop(task_id, None)
        return verdict.result

    def _ask(self, task_id: str, worker: str) -> WorkerReply:
        inspector = self.celery.control.inspect(destination=[worker], timeout=self.worker_answer_timeout_seconds)
        return reply_about(task_id, worker, inspector.query_task(task_id))
