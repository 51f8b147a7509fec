"""`empty_trash`, the job of the `trash` asset, and `empty_trash_schedule`, which runs it daily.

As for `reconcile_storage` (defs/reconcile/jobs.py): what an operator launches by hand is a dry run
unless told otherwise (the job's own config), what the schedule launches applies.
"""

from typing import Any

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    ScheduleDefinition,
    define_asset_job,
    in_process_executor,
)

from photo_pipeline.defs.trash.assets import EMPTY_TRASH_CRON, TRASH


def empty_trash_config(*, dry_run: bool, force: bool = False) -> dict[str, Any]:
    return {"ops": {TRASH: {"config": {"dry_run": dry_run, "force": force}}}}


DRY_RUN = empty_trash_config(dry_run=True)
APPLY = empty_trash_config(dry_run=False)

empty_trash = define_asset_job(
    name="empty_trash",
    selection=AssetSelection.assets(TRASH),
    config=DRY_RUN,
    executor_def=in_process_executor,
    description=(
        "Erase what has been in the trash longer than PHOTO_TRASH_RETENTION_DAYS: albums whole, and photos, with "
        "their originals and every rendition; an id-only erase record stays. The launchpad starts as a DRY RUN "
        "(dry_run: true): the plan is recorded on the trash asset and nothing is erased. Set dry_run: false to "
        "erase; force: true carries out a plan the safety limit refused. The schedule applies."
    ),
    tags={"photo_pipeline/kind": "trash"},
)

empty_trash_schedule = ScheduleDefinition(
    name="empty_trash_schedule",
    job=empty_trash,
    cron_schedule=EMPTY_TRASH_CRON,
    run_config=APPLY,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Empties the trash on a schedule (PHOTO_EMPTY_TRASH_CRON, daily by default); applies the plan (dry_run: false).",
)
