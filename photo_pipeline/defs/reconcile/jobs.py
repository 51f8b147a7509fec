"""`reconcile_storage` (the job that materializes `storage_reconciliation`) and its schedule.

The job's own config is a dry run, so its launchpad opens on `dry_run: true` and changes nothing
unless the operator sets `dry_run: false`; the schedule passes the applying config.
"""

from typing import Any

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    ScheduleDefinition,
    define_asset_job,
    in_process_executor,
)

from photo_pipeline.defs.reconcile.assets import RECONCILE_CRON, STORAGE_RECONCILIATION


def reconcile_config(*, dry_run: bool, force: bool = False) -> dict[str, Any]:
    return {"ops": {STORAGE_RECONCILIATION: {"config": {"dry_run": dry_run, "force": force}}}}


DRY_RUN = reconcile_config(dry_run=True)
APPLY = reconcile_config(dry_run=False)

reconcile_storage = define_asset_job(
    name="reconcile_storage",
    selection=AssetSelection.assets(STORAGE_RECONCILIATION),
    config=DRY_RUN,
    # One process: the steps hand each other scratch files in the run's temporary folder.
    executor_def=in_process_executor,
    description=(
        "Bring the photo table and the bucket back into agreement: requeue, flag missing, adopt "
        "orphans, correct keys, remove stray renditions, render lost ones (and duplicates whose photo "
        "is gone or changed), take back expired claims. The launchpad starts as a DRY RUN "
        "(dry_run: true): the plan is recorded on storage_reconciliation and nothing changes. Set "
        "dry_run: false to apply; force: true applies a plan the safety limit refused. The schedule "
        "applies."
    ),
    tags={"photo_pipeline/kind": "reconcile"},
)

reconcile_schedule = ScheduleDefinition(
    name="reconcile_storage_schedule",
    job=reconcile_storage,
    cron_schedule=RECONCILE_CRON,
    run_config=APPLY,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Reconciliation on a schedule (PHOTO_RECONCILE_CRON, hourly by default); applies the plan (dry_run: false).",
)
