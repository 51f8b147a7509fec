"""The jobs that materialize `storage_reconciliation`, and the schedule.

`reconcile_storage`'s own config is a dry run, so its launchpad opens on `dry_run: true` and
changes nothing; the schedule passes the applying config. `apply_reconciliation` is the same asset
with the applying config as its own: applying is one click on Launch Run, no YAML typed, still
behind the safety limit (`force: true` stays something an operator types).
"""

from typing import Any

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    ScheduleDefinition,
    define_asset_job,
    in_process_executor,
)

from photo_pipeline.defs.reconcile.assets import APPLY_JOB, RECONCILE_CRON, RECONCILE_JOB, STORAGE_RECONCILIATION


def reconcile_config(*, dry_run: bool, force: bool = False) -> dict[str, Any]:
    return {"ops": {STORAGE_RECONCILIATION: {"config": {"dry_run": dry_run, "force": force}}}}


DRY_RUN = reconcile_config(dry_run=True)
APPLY = reconcile_config(dry_run=False)

reconcile_storage = define_asset_job(
    name=RECONCILE_JOB,
    selection=AssetSelection.assets(STORAGE_RECONCILIATION),
    config=DRY_RUN,
    # One process: the steps hand each other scratch files in the run's temporary folder.
    executor_def=in_process_executor,
    description=(
        "Bring the photo table and the bucket back into agreement: requeue, flag missing, adopt "
        "orphans, correct keys, remove stray renditions, render lost ones (and duplicates whose photo "
        "is gone or changed), take back expired claims. The launchpad starts as a DRY RUN "
        "(dry_run: true): the plan is recorded on storage_reconciliation and nothing changes. Set "
        f"dry_run: false to apply (or launch {APPLY_JOB}); force: true applies a plan the safety limit refused. "
        "The schedule applies."
    ),
    tags={"photo_pipeline/kind": "reconcile"},
)

apply_reconciliation = define_asset_job(
    name=APPLY_JOB,
    selection=AssetSelection.assets(STORAGE_RECONCILIATION),
    config=APPLY,
    executor_def=in_process_executor,
    description=(
        "Reconcile and APPLY now (dry_run: false is this job's own config: Launch Run, no YAML): the same plan "
        f"and repairs as {RECONCILE_JOB}'s schedule, recorded on storage_reconciliation. Behind the safety "
        "limit: a plan it refuses is recorded with the reason and the run fails; review it on the asset, then "
        "set force: true in this launchpad to apply it anyway."
    ),
    # The same tag as reconcile_storage: the instance runs one reconciliation at a time.
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
