"""`empty_trash` (the job that materializes `trash`) and its daily schedule.

The job's own config is a dry run, so its launchpad opens on `dry_run: true` and erases nothing
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
