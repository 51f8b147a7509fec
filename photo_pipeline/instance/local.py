"""The persistent local Dagster instance of the embedded mode, under $PHOTO_PIPELINE_HOME/dagster.

`dagster dev` without DAGSTER_HOME would read the production ./dagster.yaml (PostgreSQL from
environment variables); the local commands therefore point DAGSTER_HOME here themselves, so the
demo's runs show up in the UI afterwards and nothing needs configuring.
"""

from __future__ import annotations

from pathlib import Path

from dagster import DagsterInstance

# The run-retry daemon's cursors (dagster's own names for them: if they change, this import fails
# loudly rather than the daemon's first-start warning coming back unnoticed).
from dagster._daemon.auto_run_reexecution.event_log_consumer import (
    DAGSTER_EVENT_TYPES as RUN_RETRY_EVENT_TYPES,
)
from dagster._daemon.auto_run_reexecution.event_log_consumer import (
    _create_cursor_key as run_retry_cursor_key,
)

from photo_pipeline.settings import Settings

LOCAL_DAGSTER_YAML = """\
# Local instance of photo_pipeline's embedded mode (SQLite storage in this folder).
# Written by photo-pipeline; production uses the dagster.yaml at the repository root.
concurrency:
  runs:
    max_concurrent_runs: 4
    tag_concurrency_limits:
      - key: "dagster/partition"
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      - key: "photo_pipeline/kind"
        value: "reconcile"
        limit: 1
run_queue:
  dequeue_interval_seconds: 1
run_retries:
  enabled: true
  max_retries: 1
  retry_on_asset_or_op_failure: false
run_monitoring:
  enabled: true
  free_slots_after_run_end_seconds: 60
# No usage statistics sent, and no "Join the Dagster community" dialog over the UI's first page.
telemetry:
  enabled: false
nux:
  enabled: false
"""


def ensure_local_dagster_home(settings: Settings) -> Path:
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(LOCAL_DAGSTER_YAML)
    return home


def local_instance(settings: Settings) -> DagsterInstance:
    return DagsterInstance.from_config(str(ensure_local_dagster_home(settings)))


def start_run_retries_from_now(instance: DagsterInstance) -> None:
    """Give the run-retry daemon (dagster's EventLogConsumerDaemon) the starting point it would
    pick itself. On an instance it has never seen, it logs "WARNING - No cursor for event type
    RUN_FAILURE, ignoring older events" and starts after the newest event, so that runs which
    failed before it ever ran are not retried. Setting that same cursor before the daemon starts
    keeps the behaviour and spares a newcomer the warning. Cursors the daemon already keeps are
    left alone."""
    wanted = {run_retry_cursor_key(event_type) for event_type in RUN_RETRY_EVENT_TYPES}
    kept = instance.daemon_cursor_storage.get_cursor_values(wanted)
    missing = wanted - kept.keys()
    if missing:
        newest = instance.event_log_storage.get_maximum_record_id() or 0
        instance.daemon_cursor_storage.set_cursor_values({key: str(newest) for key in missing})
