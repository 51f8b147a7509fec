"""`photo-pipeline worker`: a Celery worker that takes album runs from the broker.

The worker is configured by the same instance file as the daemon (deploy/dagster-celery.yaml as
`$DAGSTER_HOME/dagster.yaml`): broker, result backend, queue and the Celery settings under
`run_launcher.config` are read from the instance's run launcher, so launcher and workers cannot
disagree about them. (`dagster-celery worker start` would need them again, in a second file of
another shape.) Each run is one Celery task, executed like the default launcher's run worker
(`dagster api execute_run`) in a prefork child of this process; the yaml's
`worker_max_tasks_per_child: 1` gives every run a fresh child, forked with Dagster and the code
location already imported.
"""

from __future__ import annotations

import importlib
import re

from dagster import DagsterInstance
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task

from photo_pipeline.instance.run_requests import DEFINITIONS_MODULE

# A Celery node name is NAME@HOST; the name itself must not carry the separator.
WORKER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class CeleryWorkerError(RuntimeError):
    """The worker cannot start as configured (no Celery run launcher, a bad name)."""


def worker_argv(name: str, queue: str, loglevel: str, concurrency: int | None) -> list[str]:
    """`celery worker`'s arguments: the node name `NAME@HOST`, the launcher's queue; the
    concurrency only when given (the instance yaml's `worker_concurrency` otherwise)."""
    if not WORKER_NAME.match(name):
        raise CeleryWorkerError(
            f"worker name {name!r}: use letters, digits, '.', '_' or '-' (up to 63, no '@'; the host is added)"
        )
    argv = ["worker", f"--hostname={name}@%h", f"--queues={queue}", f"--loglevel={loglevel}"]
    if concurrency is not None:
        argv.append(f"--concurrency={concurrency}")
    return argv


def celery_launcher_of(instance: DagsterInstance) -> CeleryRunLauncher:
    launcher = instance.run_launcher
    if not isinstance(launcher, CeleryRunLauncher):
        raise CeleryWorkerError(
            f"the Dagster instance in {instance.root_directory} launches runs with {type(launcher).__name__}, "
            "not the Celery run launcher: point DAGSTER_HOME at a folder whose dagster.yaml is "
            "deploy/dagster-celery.yaml"
        )
    return launcher


def start_worker(name: str, concurrency: int | None = None, loglevel: str = "INFO") -> None:
    """Run a Celery worker in this process until it is stopped (SIGTERM: warm shutdown, the
    running runs finish first)."""
    instance = DagsterInstance.get()  # DAGSTER_HOME's instance; raises if DAGSTER_HOME is unset
    launcher = celery_launcher_of(instance)
    argv = worker_argv(name, launcher.default_queue, loglevel, concurrency)
    app = launcher.celery
    # The tasks the launcher sends; registering them on this app makes it their consumer.
    create_execute_job_task(app)
    create_resume_job_task(app)
    # Imported once here, so every run's forked child starts with the code location loaded
    # (about 2 s of imports a run otherwise).
    importlib.import_module(DEFINITIONS_MODULE)
    app.worker_main(argv)
