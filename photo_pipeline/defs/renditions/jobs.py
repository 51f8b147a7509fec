"""The renditions' jobs.

- `process_album`: the album's pending photos (requested by the sensors and the fast path, one run
  per album).
- `rerender_albums`: every completed photo of the album again, with the settings in force now;
  backfilled from the UI over the album partitions.
"""



from dagster import (
    AssetSelection,
    DagsterInstance,
    DagsterRunStatus,
    RunConfig,
    RunsFilter,
    define_asset_job,
    in_process_executor,
)

from photo_pipeline.defs.renditions.assets import (
    PREVIEWS,
    THUMBNAILS,
    RenditionsConfig,
)

RENDITIONS_OP = "album_renditions"

# Runs that may still be working, and so still hold claims on photos.
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def in_flight_run_ids(instance: DagsterInstance) -> set[str]:
    """Ids of runs still going: a claim they hold is slow, not abandoned."""
    records = instance.get_run_records(RunsFilter(statuses=IN_FLIGHT), limit=10_000)
    return {r.dagster_run.run_id for r in records}


process_album = define_asset_job(
    name="process_album",
    selection=AssetSelection.assets(THUMBNAILS, PREVIEWS),
    description="Render the thumbnails and previews of one album's pending photos.",
    tags={"photo_pipeline/kind": "render"},
    # One step: running it in the run worker saves a second Python process (and its imports) per
    # run. Nothing needs the subprocess: the memory budget is per run, the heartbeat a thread.
    executor_def=in_process_executor,
)

rerender_albums = define_asset_job(
    name="rerender_albums",
    selection=AssetSelection.assets(THUMBNAILS, PREVIEWS),
    # Preset, so that every run of a backfill re-renders; a plain dict would work the same.
    config=RunConfig(ops={RENDITIONS_OP: RenditionsConfig(rerender=True)}),
    description=(
        "Render EVERY completed photo of the chosen albums again (and their pending ones), with "
        "the rendering settings in force now: use it after changing the watermark, sizes, quality "
        "or format. From the UI: Jobs -> rerender_albums -> Partitions -> Materialize…, pick the "
        "albums under Partition selection, then Launch backfill (Launch 1 run for one album). "
        "Failed photos are left alone: re-run them with reprocess_failed_photos."
    ),
    tags={"photo_pipeline/kind": "rerender"},
    executor_def=in_process_executor,
)
