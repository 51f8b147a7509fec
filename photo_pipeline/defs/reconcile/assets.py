"""`storage_reconciliation`: the table compared with the bucket, as an asset whose every
materialization holds the plan (what was found, what each kind of repair would do, the first
actions, the skipped keys) and what became of it (applied, dry run, refused by the safety limit).

A graph-backed asset, so the UI keeps showing the steps an operator can follow and re-execute:
list objects, load rows, plan, apply, report. The listing and the table are spilled to files in
the run's scratch folder between steps, so memory stays bounded however large the bucket is.
The rules live in `reconcile/` (plan, apply, report); the ops below only wire and record.
"""

import pickle
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetsDefinition,
    Config,
    ConfigMapping,
    Failure,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    TableColumn,
    TableRecord,
    TableSchema,
    apply_freshness_policy,
    graph_asset,
    op,
)
from pydantic import Field

from photo_pipeline.defs.health.freshness import freshness_policy, windows_for_schedule
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.photos.reconcile_queries import ReconciliationQueries
from photo_pipeline.photos.repository import utc_now
from photo_pipeline.reconcile import report as told
from photo_pipeline.reconcile.apply import (
    Reconciler,
    SafetyLimitExceeded,
    iter_sized_objects,
    policy_from_settings,
    settle_erased,
)
from photo_pipeline.reconcile.plan import ReconciliationPlan, plan_reconciliation
from photo_pipeline.settings import Settings
from photo_pipeline.storage import keys

STORAGE_RECONCILIATION = "storage_reconciliation"
# The jobs that materialize it (defs/reconcile/jobs.py): a dry run by default, and applying.
RECONCILE_JOB = "reconcile_storage"
APPLY_JOB = "apply_reconciliation"
RECONCILIATION_ASSET = AssetKey(STORAGE_RECONCILIATION)
PLAN_WITHIN_SAFETY_LIMIT = "plan_within_safety_limit"
STREAMS = ("originals", "thumbnails", "previews", "sized")
PREFIXES = {
    "originals": keys.RAW_PREFIX,
    "thumbnails": keys.THUMBS_PREFIX,
    "previews": keys.PREVIEWS_PREFIX,
    "sized": keys.PROCESSED_PREFIX + "<size>/",
}
MAX_LISTED_ACTIONS = 50

# Metadata keys `pipeline_health` reads back (one spelling for writer and reader).
ORPHAN_OBJECTS = "orphan_objects"
MISSING_ROWS = "missing_rows"
UNHOLDABLE_KEYS = "unholdable_keys"
OUTCOME = "outcome"
PLAN_TAKEN_AT = "plan_taken_at"

# Schedule of reconcile_storage, read once at load (its freshness is derived from it).
RECONCILE_CRON = Settings.from_env().reconcile_cron
RECONCILIATION_FRESHNESS = windows_for_schedule(RECONCILE_CRON)


class ReconcileConfig(Config):
    dry_run: bool = Field(
        default=True,
        description=(
            "true (the default, and what the launchpad and the Materialize button start with): plan, "
            "record the plan on storage_reconciliation, change nothing. false: apply the plan (what "
            "the schedule does)."
        ),
    )
    force: bool = Field(
        default=False,
        description=(
            "With dry_run: false, apply a plan the safety limit refused. Review that plan first: it "
            "is on storage_reconciliation's latest materialization, with the refusal reason."
        ),
    )


# -- reading both sides ------------------------------------------------------------------------


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
        listing = iter_sized_objects(store, 1000) if stream == "sized" else store.iter_objects(PREFIXES[stream])
        count = spill(path, listing)
        context.log.info("listed %d object(s) under %s in %s", count, PREFIXES[stream], store.describe())
        paths[stream] = str(path)
    return paths


@op(
    out=Out(dict),
    description="Read the photo table in the bucket's key order, and the duplicates with the photos they point to (streamed to scratch files).",
)
def load_rows(context: OpExecutionContext, photo_pipeline: PhotoPipelineResource) -> dict[str, str]:
    queries = ReconciliationQueries(photo_pipeline.repository())
    folder = scratch_dir(context)
    readers = {
        "originals": queries.rows_by_original_key,
        "thumbnails": queries.rows_by_thumb_key,
        "previews": queries.rows_by_preview_key,
        "sized": queries.rows_by_sized_key,
        # Not a listing's partner: the completed duplicates with the rows they point to.
        "duplicates": queries.duplicate_links,
    }
    paths = {}
    for stream, read in readers.items():
        path = folder / f"rows-{stream}.pickle"
        count = spill(path, read())
        context.log.info("read %d row(s) for the %s comparison", count, stream)
        paths[stream] = str(path)
    return paths


@op(out=Out(list), description="Keys of uploads the client cleaned up (their late objects are removed).")
def load_cancelled_uploads(photo_pipeline: PhotoPipelineResource) -> list[str]:
    settings = photo_pipeline.settings()
    since = utc_now() - timedelta(seconds=policy_from_settings(settings).tombstone_seconds)
    return sorted(photo_pipeline.repository().tombstones_since(since))


@op(out=Out(ReconciliationPlan), description="Compare table and bucket (merge join) and decide; no writes.")
def plan_changes(
    context: OpExecutionContext, photo_pipeline: PhotoPipelineResource, objects: dict, rows: dict, cancelled: list
) -> ReconciliationPlan:
    settings = photo_pipeline.settings()
    policy = policy_from_settings(settings)
    plan = plan_reconciliation(
        originals=unspill(Path(objects["originals"])),
        rows_by_original_key=unspill(Path(rows["originals"])),
        thumbnails=unspill(Path(objects["thumbnails"])),
        rows_by_thumb_key=unspill(Path(rows["thumbnails"])),
        previews=unspill(Path(objects["previews"])),
        rows_by_preview_key=unspill(Path(rows["previews"])),
        sized=unspill(Path(objects["sized"])),
        rows_by_sized_key=unspill(Path(rows["sized"])),
        duplicates=unspill(Path(rows["duplicates"])),
        now=utc_now(),
        policy=policy,
        cancelled_uploads=cancelled,
    )
    plan = settle_erased(plan, photo_pipeline.repository(), policy)
    shutil.rmtree(scratch_dir(context), ignore_errors=True)
    context.log.info("plan: %s", plan.summary())
    if plan.unholdable_keys:
        context.log.warning(
            "%d object(s) under raw/ have keys the photo table cannot hold; skipped (first: %s)",
            plan.unholdable_keys,
            "; ".join(f"{s.shown} ({s.reason})" for s in plan.skipped_keys[:5]),
        )
    for violation in plan.violations:
        context.log.warning("safety limit: %s", violation)
    context.add_output_metadata(
        {
            "planned_changes": MetadataValue.int(len(plan.actions)),
            "destructive_changes": MetadataValue.int(plan.destructive),
            "within_safety_limit": MetadataValue.bool(plan.safe),
        }
    )
    return plan


# -- applying --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyStep:
    """What `apply_changes` did with the plan, for the report."""

    outcome: told.Outcome
    # Kind -> rows changed; None when nothing was applied (dry run, refused).
    applied: dict[str, int] | None = None
    refusal: str | None = None
    errors: dict[str, str] = field(default_factory=dict)
    error_summary: str = ""


@op(out=Out(ApplyStep), description="Apply the plan in batches, unless it is a dry run or the safety limit refuses it.")
def apply_changes(
    context: OpExecutionContext, config: ReconcileConfig, photo_pipeline: PhotoPipelineResource, plan: ReconciliationPlan
) -> ApplyStep:
    if config.dry_run:
        context.log.info("dry run: nothing applied; the plan is recorded on %s", STORAGE_RECONCILIATION)
        return ApplyStep(told.Outcome.DRY_RUN)
    settings = photo_pipeline.settings()
    reconciler = Reconciler(photo_pipeline.repository(), photo_pipeline.store(), policy_from_settings(settings))
    try:
        report = reconciler.apply(
            plan,
            force=config.force,
            processor=photo_pipeline.processor(context.log),
            worker=context.run.run_id,
            rerender_limit=settings.reconcile_rerender_limit,
        )
    except SafetyLimitExceeded as exc:
        # Recorded by `report` (plan and reason on the asset), which then fails the run.
        context.log.error("%s", exc)
        return ApplyStep(told.Outcome.REFUSED, refusal=str(exc))
    outcome = told.decide_outcome(plan, dry_run=False, force=config.force, apply_ok=report.ok)
    context.log.info("applied: %s; albums with photos to render: %d", report.applied, len(report.albums_to_render))
    return ApplyStep(
        outcome,
        applied=dict(report.applied),
        refusal="; ".join(plan.violations) or None,
        errors=dict(report.errors),
        error_summary=report.describe_errors(),
    )


# -- recording -------------------------------------------------------------------------------


def table(columns: Mapping[str, str], rows: Iterable[Mapping[str, str | int | bool | None]]) -> MetadataValue:
    """A metadata table (shown as a table on the asset's page); `columns`: name -> description.

    The asset page lays every metadata value out in one column, as wide as its widest value, and
    shows about 340 pixels of it in a 1280-pixel window, cutting off the rest of every value at
    once (the old five-column first_actions cut off actions_by_kind's meanings). So each table
    here is at most a few narrow number columns and one text column, which wraps."""
    schema = TableSchema(columns=[TableColumn(name, _column_type(name), description) for name, description in columns.items()])
    return MetadataValue.table(records=[TableRecord(dict(row)) for row in rows], schema=schema)


def _column_type(name: str) -> str:
    return {"planned": "int", "applied": "int"}.get(name, "string")


def actions_by_kind_table(plan: ReconciliationPlan, step: ApplyStep) -> MetadataValue:
    """The kinds of repair the plan holds: the numbers, then the kind with what it does."""
    rows = [{"planned": r.planned, "applied": r.applied, "repair": r.repair} for r in told.counts_by_kind(plan, step.applied)]
    columns = {
        "planned": "how many the plan holds",
        "applied": "how many were carried out (empty: nothing was applied)",
        "repair": "the kind of repair, (destructive) when it counts against the safety limit, and what it does",
    }
    return table(columns, rows)


def first_actions_table(plan: ReconciliationPlan) -> MetadataValue:
    rows = [{"action": r.text} for r in told.first_actions(plan, MAX_LISTED_ACTIONS)]
    return table({"action": "kind of repair: why: object key (escaped, shortened; it names album and photo)"}, rows)


def skipped_keys_table(plan: ReconciliationPlan) -> MetadataValue:
    rows = [{"key": r.text} for r in told.skipped_keys(plan)]
    return table({"key": "object key (escaped, shortened): why the table cannot hold it"}, rows)


def reconciliation_metadata(plan: ReconciliationPlan, step: ApplyStep) -> dict[str, MetadataValue]:
    """The materialization's metadata, in the order an operator reads it: what became of the plan
    (and why, when refused), the plan itself as tables, then the figures (numbers, plotted)."""
    found = told.findings(plan)
    metadata: dict[str, MetadataValue] = {OUTCOME: MetadataValue.text(step.outcome.value)}
    metadata["plan"] = MetadataValue.text(told.headline(plan))
    next_step = told.how_to_apply(plan, step.outcome, APPLY_JOB)
    if next_step:
        metadata["to_apply"] = MetadataValue.text(next_step)
    if step.refusal:
        metadata["refusal"] = MetadataValue.text(step.refusal)
    metadata[PLAN_TAKEN_AT] = MetadataValue.timestamp(plan.taken_at)
    metadata["applied"] = MetadataValue.bool(step.outcome.applied)
    metadata["first_actions"] = first_actions_table(plan)
    metadata["first_actions_note"] = MetadataValue.text(
        f"{min(len(plan.actions), MAX_LISTED_ACTIONS)} of {len(plan.actions)} planned action(s), destructive ones first"
    )
    metadata["actions_by_kind"] = actions_by_kind_table(plan, step)
    if step.errors:
        metadata["apply_failures"] = table(
            {"failure": "kind of repair: what failed (its other batches and every other kind still ran)"},
            [{"failure": f"{kind}: {error}"} for kind, error in step.errors.items()],
        )
    if plan.skipped_keys:
        metadata["skipped_keys"] = skipped_keys_table(plan)
        if plan.unholdable_keys > len(plan.skipped_keys):
            metadata["skipped_keys_note"] = MetadataValue.text(
                f"{len(plan.skipped_keys)} of {plan.unholdable_keys} skipped key(s) listed"
            )
    metadata.update(
        {
            ORPHAN_OBJECTS: MetadataValue.int(found.orphan_objects),
            MISSING_ROWS: MetadataValue.int(found.missing_rows),
            "rerender_needed": MetadataValue.int(found.rerender_needed),
            "expired_claims": MetadataValue.int(found.expired_claims),
            "planned_changes": MetadataValue.int(found.planned_changes),
            "destructive_changes": MetadataValue.int(found.destructive_changes),
            UNHOLDABLE_KEYS: MetadataValue.int(found.unholdable_keys),
            "rows_seen": MetadataValue.int(plan.rows_seen),
            "objects_seen": MetadataValue.int(plan.objects_seen),
        }
    )
    if step.outcome.applied:
        # Only a run that applied can have failed to: no point for dry runs and refusals.
        metadata["apply_errors"] = MetadataValue.int(len(step.errors))
    return metadata


def safety_check_result(plan: ReconciliationPlan, step: ApplyStep) -> AssetCheckResult:
    if plan.safe:
        description = f"{plan.destructive} destructive change(s) planned, within the safety limit ({step.outcome.value})"
    else:
        description = f"{step.outcome.value}: " + "; ".join(plan.violations)
    return AssetCheckResult(
        asset_key=RECONCILIATION_ASSET,
        check_name=PLAN_WITHIN_SAFETY_LIMIT,
        passed=plan.safe,
        severity=AssetCheckSeverity.ERROR,
        description=description,
        metadata={"destructive_changes": plan.destructive, OUTCOME: step.outcome.value},
    )


@op(
    out={"result": Out(Nothing), "check": Out(is_required=False)},
    description=(
        "Record the plan and its outcome on storage_reconciliation and judge it against the safety "
        "limit; then fail the run if the plan was refused or applied only in part."
    ),
)
def report(context: OpExecutionContext, plan: ReconciliationPlan, step: ApplyStep) -> Iterator[Any]:
    yield Output(None, output_name="result", metadata=reconciliation_metadata(plan, step))
    yield safety_check_result(plan, step)
    if step.outcome is told.Outcome.REFUSED:
        # After the materialization: the plan and the reason are on the asset's page; the run
        # still fails, so a schedule that keeps being refused never looks green.
        raise Failure(description=step.refusal or "reconciliation refused", allow_retries=False)
    if step.outcome is told.Outcome.PARTLY_APPLIED:
        # Not retried: the next run plans afresh.
        raise Failure(
            description=f"reconciliation applied only in part; failed: {step.error_summary}",
            metadata={f"failed_{kind}": MetadataValue.text(error) for kind, error in step.errors.items()},
            allow_retries=False,
        )


# -- the asset ---------------------------------------------------------------------------------


SAFETY_CHECK_SPEC = AssetCheckSpec(
    PLAN_WITHIN_SAFETY_LIMIT,
    asset=RECONCILIATION_ASSET,
    description=(
        "ERROR when the latest plan's destructive changes (flag missing, purge, remove renditions) "
        "exceed the safety limit (PHOTO_RECONCILE_MAX_CHANGE_FRACTION of an album's or the whole "
        "table's rows/objects, past PHOTO_RECONCILE_MIN_CHANGES), or the bucket lists no originals "
        "while the table has settled photos. Such a plan is refused unless forced."
    ),
)

DESCRIPTION = f"""\
The photo table compared with the bucket: each materialization is one reconciliation plan, with
what became of it (`outcome`: applied, dry run, or refused by the safety limit with its `refusal`
reason).

- `plan`: the plan in one line; `to_apply`: how to apply a plan that was not;
- `actions_by_kind`: the kinds of repair the plan holds, how many of each were planned and applied, what each does;
- `first_actions`: the first {MAX_LISTED_ACTIONS} actions (destructive ones first), each with its reason and key;
- `skipped_keys`: objects whose keys the table cannot hold (left in the bucket);
- plotted: orphan objects, missing rows, re-renders needed, expired claims, planned changes.

**Materialize** (or the `{RECONCILE_JOB}` launchpad) is a dry run: it records the plan and changes
nothing. **To apply**, launch the `{APPLY_JOB}` job (its launchpad opens on `dry_run: false`:
one click on Launch Run). Both stay behind the safety limit: a plan it refuses is recorded here and
the run fails; add `force: true` in the launchpad to apply such a plan, once reviewed.
`reconcile_storage_schedule` applies on `{RECONCILE_CRON}`; freshness: {RECONCILIATION_FRESHNESS.describe()}.
"""


def _route_config(config: dict[str, Any]) -> dict[str, Any]:
    # The launchpad shows one flat `config: {dry_run, force}` for the asset; it belongs to apply_changes.
    return {"apply_changes": {"config": config}}


def build_storage_reconciliation() -> AssetsDefinition:
    """The graph-backed asset with its freshness policy (graph_asset takes none itself). Built in a
    function: a second module-level AssetsDefinition with the same key would be loaded twice."""

    @graph_asset(
        name=STORAGE_RECONCILIATION,
        group_name="reconciliation",
        description=DESCRIPTION,
        check_specs=[SAFETY_CHECK_SPEC],
        config=ConfigMapping(config_fn=_route_config, config_schema=ReconcileConfig.to_config_schema()),
    )
    def reconciliation_graph() -> dict[str, Any]:
        plan = plan_changes(list_objects(), load_rows(), load_cancelled_uploads())
        recorded, check = report(plan, apply_changes(plan))
        return {"result": recorded, SAFETY_CHECK_SPEC.get_python_identifier(): check}

    return reconciliation_graph.map_asset_specs(
        lambda spec: apply_freshness_policy(spec, freshness_policy(RECONCILIATION_FRESHNESS))
    )


storage_reconciliation = build_storage_reconciliation()
