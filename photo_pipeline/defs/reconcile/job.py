"""`reconcile_storage`: the Dagster shell around the Reconciler, in steps an operator can follow in
the UI (list objects, load rows, plan, apply, report), plus its schedule.

The listing and the table are spilled to files in the run's scratch folder between steps, so
memory stays bounded however large the bucket is; the job runs in one process for that reason.
"""

import pickle
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    AssetMaterialization,
    Config,
    DefaultScheduleStatus,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Out,
    ScheduleDefinition,
    in_process_executor,
    job,
    op,
)
from pydantic import Field

from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.photos.reconcile_queries import ReconciliationQueries
from photo_pipeline.photos.repository import utc_now
from photo_pipeline.reconcile.apply import (
    ApplyReport,
    Reconciler,
    SafetyLimitExceeded,
    policy_from_settings,
)
from photo_pipeline.reconcile.plan import (
    ActionKind,
    ReconciliationPlan,
    plan_reconciliation,
)
from photo_pipeline.settings import Settings
from photo_pipeline.storage import keys

RECONCILIATION_ASSET = AssetKey("storage_reconciliation")
STREAMS = ("originals", "thumbnails", "previews")
PREFIXES = {"originals": keys.RAW_PREFIX, "thumbnails": keys.THUMBS_PREFIX, "previews": keys.PREVIEWS_PREFIX}
MAX_LISTED_ACTIONS = 50


class ReconcileConfig(Config):
    dry_run: bool = Field(default=False, description="Plan and report only; change nothing in the table or the bucket.")
    force: bool = Field(
        default=False,
        description="Apply a plan the safety limit refused (after reviewing it in a dry run).",
    )


def scratch_dir(context: OpExecutionContext) -> Path:
    folder = Path(tempfile.gettempdir()) / "photo_pipeline_reconcile" / context.run.run_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def spill(path: Path, items: Iterable[Any]) -> int:
    count = 0
    with path.open("wb") as f:
        for item in items:
            pickle.dump(item, f, protocol=pickle.HIGHEST_PROTOCOL)
            count += 1
    return count


def unspill(path: Path) -> Iterator[Any]:
    with path.open("rb") as f:
        while True:
            try:
                yield pickle.load(f)
            except EOFError:
                return


@op(out=Out(dict), description="List originals, thumbnails and previews (streamed to scratch files).")
def list_objects(context: OpExecutionContext, photo_pipeline: PhotoPipelineResource) -> dict[str, str]:
    store = photo_pipeline.store()
    folder = scratch_dir(context)
    paths = {}
    for stream in STREAMS:
        path = folder / f"objects-{stream}.pickle"
        count = spill(path, store.iter_objects(PREFIXES[stream]))
        context.log.info("listed %d object(s) under %s in %s", count, PREFIXES[stream], store.describe())
        paths[stream] = str(path)
    return paths


@op(out=Out(dict), description="Read the photo table in the bucket's key order (streamed to scratch files).")
def load_rows(context: OpExecutionContext, photo_pipeline: PhotoPipelineResource) -> dict[str, str]:
    queries = ReconciliationQueries(photo_pipeline.repository())
    folder = scratch_dir(context)
    readers = {
        "originals": queries.rows_by_original_key,
        "thumbnails": queries.rows_by_thumb_key,
        "previews": queries.rows_by_preview_key,
    }
    paths = {}
    for stream, read in readers.items():
        path = folder / f"rows-{stream}.pickle"
        count = spill(path, read())
        context.log.info("read %d row(s) ordered by their %s key", count, stream)
        paths[stream] = str(path)
    return paths


@op(out=Out(list), description="Keys of uploads the client cleaned up (their late objects are removed).")
def load_cancelled_uploads(photo_pipeline: PhotoPipelineResource) -> list[str]:
    settings = photo_pipeline.settings()
    since = utc_now() - timedelta(seconds=policy_from_settings(settings).tombstone_seconds)
    return sorted(photo_pipeline.repository().tombstones_since(since))


def plan_metadata(plan: ReconciliationPlan) -> dict[str, MetadataValue]:
    metadata: dict[str, MetadataValue] = {
        f"planned_{kind}": MetadataValue.int(count) for kind, count in plan.counts().items()
    }
    metadata["rows_seen"] = MetadataValue.int(plan.rows_seen)
    metadata["objects_seen"] = MetadataValue.int(plan.objects_seen)
    metadata["safe"] = MetadataValue.bool(plan.safe)
    lines = ["| action | album | photo | key | why |", "|---|---|---|---|---|"]
    for action in plan.actions[:MAX_LISTED_ACTIONS]:
        key = markdown_cell(keys.display_key(action.key)) if action.key else ""
        lines.append(f"| {action.kind.value} | `{action.album_id}` | `{action.photo_id}` | {key} | {markdown_cell(action.detail)} |")
    if len(plan.actions) > MAX_LISTED_ACTIONS:
        lines.append(f"| … {len(plan.actions) - MAX_LISTED_ACTIONS} more | | | | |")
    metadata["plan"] = MetadataValue.md("\n".join(lines))
    if plan.violations:
        metadata["violations"] = MetadataValue.md("\n".join(f"- {v}" for v in plan.violations))
    metadata.update(skipped_keys_metadata(plan))
    return metadata


def markdown_cell(text: str) -> str:
    """Text (already escaped by keys.display_key where it came from a key) safe in a markdown
    table cell: pipes would split it, backticks, brackets and angle brackets would format it."""
    for char in ("\\", "|", "`", "*", "_", "[", "]", "<", ">"):
        text = text.replace(char, "\\" + char)
    return text


def skipped_keys_metadata(plan: ReconciliationPlan) -> dict[str, MetadataValue]:
    """Objects under raw/ whose keys the table cannot hold: how many (plotted), and which."""
    metadata: dict[str, MetadataValue] = {"unholdable_keys": MetadataValue.int(plan.unholdable_keys)}
    if plan.skipped_keys:
        lines = ["| key (escaped, shortened) | why it was skipped |", "|---|---|"]
        lines += [f"| {markdown_cell(s.shown)} | {markdown_cell(s.reason)} |" for s in plan.skipped_keys]
        if plan.unholdable_keys > len(plan.skipped_keys):
            lines.append(f"| … {plan.unholdable_keys - len(plan.skipped_keys)} more | |")
        metadata["unholdable_keys_table"] = MetadataValue.md("\n".join(lines))
    return metadata


@op(out=Out(ReconciliationPlan), description="Compare table and bucket (merge join) and decide; no writes.")
def plan_changes(
    context: OpExecutionContext, photo_pipeline: PhotoPipelineResource, objects: dict, rows: dict, cancelled: list
) -> ReconciliationPlan:
    settings = photo_pipeline.settings()
    plan = plan_reconciliation(
        originals=unspill(Path(objects["originals"])),
        rows_by_original_key=unspill(Path(rows["originals"])),
        thumbnails=unspill(Path(objects["thumbnails"])),
        rows_by_thumb_key=unspill(Path(rows["thumbnails"])),
        previews=unspill(Path(objects["previews"])),
        rows_by_preview_key=unspill(Path(rows["previews"])),
        now=utc_now(),
        policy=policy_from_settings(settings),
        cancelled_uploads=cancelled,
    )
    shutil.rmtree(scratch_dir(context), ignore_errors=True)
    context.log.info("plan: %s", plan.summary())
    if plan.unholdable_keys:
        context.log.warning(
            "%d object(s) under raw/ have keys the photo table cannot hold; skipped (first: %s)",
            plan.unholdable_keys,
            "; ".join(f"{s.shown} ({s.reason})" for s in plan.skipped_keys[:5]),
        )
    context.add_output_metadata(plan_metadata(plan))
    return plan


@op(out=Out(dict), description="Apply the plan in batches, unless it is a dry run or the safety limit refuses it.")
def apply_changes(
    context: OpExecutionContext, config: ReconcileConfig, photo_pipeline: PhotoPipelineResource, plan: ReconciliationPlan
) -> dict:
    if config.dry_run:
        context.log.info("dry run: nothing applied")
        return {"applied": False, "counts": {}, "albums_to_render": 0}
    settings = photo_pipeline.settings()
    reconciler = Reconciler(photo_pipeline.repository(), photo_pipeline.store(), policy_from_settings(settings))
    try:
        report: ApplyReport = reconciler.apply(
            plan,
            force=config.force,
            processor=photo_pipeline.processor(context.log),
            worker=context.run.run_id,
            rerender_limit=settings.reconcile_rerender_limit,
        )
    except SafetyLimitExceeded as exc:
        raise Failure(description=str(exc), metadata=plan_metadata(plan), allow_retries=False) from exc
    context.log.info("applied: %s; albums with photos to render: %d", report.applied, len(report.albums_to_render))
    applied = {f"applied_{k}": MetadataValue.int(v) for k, v in report.applied.items()}
    outcome = {"applied": True, "counts": report.applied, "albums_to_render": len(report.albums_to_render)}
    if not report.ok:
        # Every other kind of repair has run; record what was found and done, then fail the step
        # (not retried: a run on the next schedule plans afresh).
        failed = {kind: MetadataValue.text(error) for kind, error in report.errors.items()}
        record_reconciliation(context, plan, {**outcome, "apply_errors": len(report.errors)})
        raise Failure(
            description=f"reconciliation applied only in part; failed: {report.describe_errors()}",
            metadata={**applied, **{f"failed_{kind}": value for kind, value in failed.items()}},
            allow_retries=False,
        )
    context.add_output_metadata(applied)
    return outcome


@op(description="Record the outcome on the storage_reconciliation asset (plotted over time).")
def report(context: OpExecutionContext, plan: ReconciliationPlan, outcome: dict) -> None:
    record_reconciliation(context, plan, outcome)


def record_reconciliation(context: OpExecutionContext, plan: ReconciliationPlan, outcome: dict) -> None:
    counts = plan.counts()
    metadata: dict[str, Any] = {
        "orphan_objects": MetadataValue.int(
            counts[ActionKind.ADOPT.value] + counts[ActionKind.DELETE_RENDITION.value] + counts[ActionKind.DELETE_CANCELLED.value]
        ),
        "missing_rows": MetadataValue.int(counts[ActionKind.FLAG_MISSING.value] + counts[ActionKind.SEEN_GONE.value]),
        "rerender_needed": MetadataValue.int(counts[ActionKind.RERENDER.value]),
        "expired_claims": MetadataValue.int(counts[ActionKind.RELEASE_CLAIM.value] + counts[ActionKind.FAIL_CLAIM.value]),
        "planned_changes": MetadataValue.int(len(plan.actions)),
        "applied": MetadataValue.bool(bool(outcome.get("applied"))),
        "rows_seen": MetadataValue.int(plan.rows_seen),
        "objects_seen": MetadataValue.int(plan.objects_seen),
        "apply_errors": MetadataValue.int(int(outcome.get("apply_errors", 0))),
        **skipped_keys_metadata(plan),
    }
    context.log_event(AssetMaterialization(asset_key=RECONCILIATION_ASSET, metadata=metadata))


@job(
    name="reconcile_storage",
    executor_def=in_process_executor,
    description=(
        "Bring the photo table and the bucket back into agreement: requeue, flag missing, adopt "
        "orphans, correct keys, remove stray renditions, render lost ones, take back expired "
        "claims. Refuses plans past the safety limit; `dry_run: true` changes nothing."
    ),
    tags={"photo_pipeline/kind": "reconcile"},
)
def reconcile_storage() -> None:
    plan = plan_changes(list_objects(), load_rows(), load_cancelled_uploads())
    report(plan, apply_changes(plan))


reconcile_schedule = ScheduleDefinition(
    name="reconcile_storage_schedule",
    job=reconcile_storage,
    cron_schedule=Settings.from_env().reconcile_cron,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Reconciliation on a schedule (PHOTO_RECONCILE_CRON, hourly by default).",
)
