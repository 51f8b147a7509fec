"""The Celery run launcher's health rule and the worker command's checks, without a broker (the
cluster itself is exercised by photo_pipeline_tests/deploy/test_celery.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from dagster._core.launcher import WorkerStatus

from photo_pipeline.cli.commands import main
from photo_pipeline.instance.celery_launcher import (
    WorkerReply,
    reply_about,
    run_worker_health,
    task_worker,
)
from photo_pipeline.instance.celery_worker import CeleryWorkerError, worker_argv
from photo_pipeline.instance.local import LOCAL_DAGSTER_YAML
from photo_pipeline.photos.database import migrate

WORKER = "photos-a@host"
LOST_AFTER = 60.0


def health(state: str, reply: WorkerReply | None, silent_since: float | None, now: float = 1000.0):  # type: ignore[no-untyped-def]
    return run_worker_health(state, WORKER, reply, silent_since, now, LOST_AFTER)


@pytest.mark.parametrize(
    ("state", "status"),
    [("SUCCESS", WorkerStatus.SUCCESS), ("FAILURE", WorkerStatus.FAILED), ("REVOKED", WorkerStatus.FAILED), ("PENDING", WorkerStatus.UNKNOWN)],
)
def test_a_finished_or_unknown_task_is_judged_by_its_state_alone(state: str, status: WorkerStatus) -> None:
    verdict = health(state, None, silent_since=900.0)
    assert verdict.result.status is status and verdict.silent_since is None


def test_a_started_task_its_worker_holds_is_running_and_forgets_earlier_silence() -> None:
    verdict = health("STARTED", WorkerReply.HOLDS_TASK, silent_since=900.0)
    assert verdict.result.status is WorkerStatus.RUNNING and verdict.silent_since is None


def test_a_silent_worker_keeps_its_run_running_until_the_grace_period_ends() -> None:
    first_miss = health("STARTED", WorkerReply.SILENT, silent_since=None, now=1000.0)
    assert first_miss.result.status is WorkerStatus.RUNNING and first_miss.silent_since == 1000.0
    still = health("STARTED", WorkerReply.SILENT, silent_since=1000.0, now=1000.0 + LOST_AFTER - 1)
    assert still.result.status is WorkerStatus.RUNNING and still.silent_since == 1000.0
    lost = health("STARTED", WorkerReply.SILENT, silent_since=1000.0, now=1000.0 + LOST_AFTER)
    assert lost.result.status is WorkerStatus.FAILED
    assert f"Celery worker {WORKER} does not answer for 60s" in (lost.result.msg or "")


def test_a_worker_that_answers_without_the_task_has_lost_the_run_after_the_grace_period() -> None:
    lost = health("STARTED", WorkerReply.FORGOT_TASK, silent_since=1000.0, now=1000.0 + LOST_AFTER + 5)
    assert lost.result.status is WorkerStatus.FAILED
    assert "no longer runs the task" in (lost.result.msg or "")


def test_a_started_task_without_a_recorded_worker_is_running_as_the_stock_launcher_says() -> None:
    verdict = run_worker_health("STARTED", None, None, None, 1000.0, LOST_AFTER)
    assert verdict.result.status is WorkerStatus.RUNNING


def test_replies_are_read_for_the_asked_worker_only() -> None:
    assert reply_about("t1", WORKER, None) is WorkerReply.SILENT
    assert reply_about("t1", WORKER, {"photos-b@host": {"t1": ["active", {}]}}) is WorkerReply.SILENT
    assert reply_about("t1", WORKER, {WORKER: {}}) is WorkerReply.FORGOT_TASK
    assert reply_about("t1", WORKER, {WORKER: {"t1": ["active", {"id": "t1"}]}}) is WorkerReply.HOLDS_TASK


def test_the_worker_of_a_started_task_comes_from_its_recorded_hostname() -> None:
    assert task_worker({"pid": 12, "hostname": WORKER}) == WORKER
    assert task_worker(None) is None
    assert task_worker(RuntimeError("a failed task's info is its exception")) is None


def test_worker_argv_names_the_node_and_the_queue() -> None:
    assert worker_argv("photos-a", "dagster", "INFO", None) == [
        "worker", "--hostname=photos-a@%h", "--queues=dagster", "--loglevel=INFO",
    ]  # fmt: skip
    assert worker_argv("photos-a", "dagster", "INFO", 2)[-1] == "--concurrency=2"


@pytest.mark.parametrize("name", ["", "a@b", "two words", "-leading-dash", "x" * 64])
def test_worker_names_celery_cannot_use_are_refused(name: str) -> None:
    with pytest.raises(CeleryWorkerError, match="worker name"):
        worker_argv(name, "dagster", "INFO", None)


def test_the_worker_command_refuses_an_instance_without_the_celery_launcher(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'photos.db'}"
    migrate(database_url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(LOCAL_DAGSTER_YAML)
    result = CliRunner().invoke(
        main,
        ["worker", "--name", "photos-a"],
        env={"DAGSTER_HOME": str(home), "PHOTO_DATABASE_URL": database_url, "PHOTO_PIPELINE_HOME": str(tmp_path)},
    )
    assert result.exit_code == 1, result.output
    assert "not the Celery run launcher" in result.output and "deploy/dagster-celery.yaml" in result.output
