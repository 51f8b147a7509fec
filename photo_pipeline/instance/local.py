"""The persistent local Dagster instance of the embedded mode, under $PHOTO_PIPELINE_HOME/dagster.

`dagster dev` without DAGSTER_HOME would read the production ./dagster.yaml (PostgreSQL from
environment variables); the local commands therefore point DAGSTER_HOME here themselves, so the
demo's runs show up in the UI afterwards and nothing needs configuring.
"""

from __future__ import annotations

from pathlib import Path

from dagster import DagsterInstance

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
telemetry:
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
