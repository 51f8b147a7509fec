"""`trash`: the trash as an asset. Each materialization holds what the trash holds (photos and
albums, the fullest albums), the plan to empty it (what is past `PHOTO_TRASH_RETENTION_DAYS`: albums
erased whole, photos per album, the oldest listed) and what became of the plan (dry run, applied,
refused by the safety limit), with the check `empty_trash_within_safety_limit`.

Mirrors `storage_reconciliation`: the launchpad and the Materialize button start a dry run, the
schedule applies, `force: true` applies a refused plan once reviewed. Ids and times only: a trash
of deleted photos must not keep their file names, keys or album titles in the event log forever.
The rules live in `trash/plan.py` and `services/removal.py`; this module only wires and records.
"""

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)
from pydantic import Field

from photo_pipeline.defs.health.freshness import freshness_policy, windows_for_schedule
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.instance.partitions import erased_album_partitions, remove_album_partitions
from photo_pipeline.photos.repository import utc_now
from photo_pipeline.photos.trash import TrashFigures
from photo_pipeline.reconcile.report import Outcome, decide_outcome
from photo_pipeline.services.removal import EmptyTrashReport, TrashSafetyLimitExceeded, empty_trash
from photo_pipeline.settings import Settings
from photo_pipeline.trash.plan import EmptyTrashPlan, EmptyTrashPolicy, plan_empty_trash, trash_cutoff

TRASH = "trash"
TRASH_ASSET = AssetKey(TRASH)
WITHIN_SAFETY_LIMIT = "empty_trash_within_safety_limit"
MAX_LISTED = 50

# Schedule of empty_trash, read once at load (its freshness is derived from it).
EMPTY_TRASH_CRON = Settings.from_env().empty_trash_cron
TRASH_FRESHNESS = windows_for_schedule(EMPTY_TRASH_CRON)


class EmptyTrashConfig(Config):
    dry_run: bool = Field(
        default=True,
        description=(
            "true (the default, and what the launchpad and the Materialize button start with): plan, record the "
            "plan on the trash asset, erase nothing. false: erase what the plan holds (what the schedule does)."
        ),
    )
    force: bool = Field(
        default=False,
        description=(
            "With dry_run: false, carry out a plan the safety limit refused. Review that plan first: it is on the "
            "trash asset's latest materialization, with the refusal reason."
        ),
    )


def policy_from_settings(settings: Settings) -> EmptyTrashPolicy:
    return EmptyTrashPolicy(
        retention_days=settings.trash_retention_days,
        max_fraction=settings.empty_trash_max_fraction,
        min_erases=settings.empty_trash_min_erases,
        listed=MAX_LISTED,
    )


@dataclass(frozen=True)
class Emptied:
    """What the run did with the plan."""

    outcome: Outcome
    report: EmptyTrashReport | None = None  # None: nothing was erased (dry run, refused)
    refusal: str | None = None
    partitions_removed: list[str] = field(default_factory=list)


def carry_out(
    context: AssetExecutionContext, config: EmptyTrashConfig, photo_pipeline: PhotoPipelineResource, plan: EmptyTrashPlan
) -> Emptied:
    if config.dry_run:
        context.log.info("dry run: nothing erased; the plan is recorded on %s", TRASH)
        return Emptied(Outcome.DRY_RUN)
    repository = photo_pipeline.repository()
    try:
        report = empty_trash(repository, photo_pipeline.store(), plan, force=config.force)
    except TrashSafetyLimitExceeded as exc:
        context.log.error("%s", exc)
        return Emptied(Outcome.REFUSED, refusal=str(exc))
    # Every erased album's partition, not only this run's: an erase from the API or the CLI
    # whose instance could not be reached left its partition behind.
    erased = erased_album_partitions(context.instance, lambda albums: repository.erased_among(album_ids=albums).albums)
    removed = remove_album_partitions(context.instance, erased)
    for problem in report.problems:
        context.log.warning("empty_trash: %s", problem)
    outcome = decide_outcome(plan, dry_run=False, force=config.force, apply_ok=report.ok)
    return Emptied(outcome, report, "; ".join(plan.violations) or None, removed)


# -- recording -------------------------------------------------------------------------------------


def table(columns: Mapping[str, tuple[str, str]], rows: Iterable[Mapping[str, Any]]) -> MetadataValue:
    """A metadata table; `columns`: name -> (type, description)."""
    schema = TableSchema(columns=[TableColumn(name, kind, description) for name, (kind, description) in columns.items()])
    return MetadataValue.table(records=[TableRecord(dict(row)) for row in rows], schema=schema)


def trash_metadata(plan: EmptyTrashPlan, figures: TrashFigures, emptied: Emptied, policy: EmptyTrashPolicy) -> dict[str, MetadataValue]:
    """What became of the plan, the plan as tables, what the trash holds, then the figures
    (numbers, plotted)."""
    metadata: dict[str, MetadataValue] = {"outcome": MetadataValue.text(emptied.outcome.value)}
    if emptied.refusal:
        metadata["refusal"] = MetadataValue.text(emptied.refusal)
    metadata["plan_taken_at"] = MetadataValue.timestamp(plan.taken_at)
    metadata["retention"] = MetadataValue.text(
        f"{policy.retention_days} day(s) (PHOTO_TRASH_RETENTION_DAYS): trashed before {plan.cutoff:%Y-%m-%d %H:%M:%S} UTC"
    )
    metadata["applied"] = MetadataValue.bool(emptied.outcome.applied)
    metadata["albums_to_erase"] = table(
        {"album": ("string", "album id"), "trashed_at": ("string", "in the trash since (UTC)"), "photos": ("int", "photos erased with it")},
        ({"album": str(a.album_id), "trashed_at": f"{a.trashed_at:%Y-%m-%d %H:%M:%S}", "photos": a.photos} for a in plan.albums[:MAX_LISTED]),
    )
    by_album = sorted(plan.photos_by_album.items(), key=lambda item: (-item[1], str(item[0])))
    metadata["photos_to_erase_by_album"] = table(
        {"album": ("string", "album id"), "photos": ("int", "its photos past the retention")},
        ({"album": str(album), "photos": count} for album, count in by_album[:MAX_LISTED]),
    )
    metadata["first_photos_to_erase"] = table(
        {"photo": ("string", "photo id"), "album": ("string", "album id"), "trashed_at": ("string", "in the trash since (UTC)")},
        ({"photo": str(p), "album": str(a), "trashed_at": f"{at:%Y-%m-%d %H:%M:%S}"} for p, a, at in plan.first_photos),
    )
    metadata["in_trash_by_album"] = table(
        {"album": ("string", "album id"), "photos": ("int", "photos in the trash"), "oldest": ("string", "the oldest one's trash time (UTC)")},
        ({"album": str(a), "photos": n, "oldest": f"{oldest:%Y-%m-%d %H:%M:%S}"} for a, n, oldest in figures.by_album),
    )
    metadata.update(
        photos_in_trash=MetadataValue.int(figures.photos),
        albums_in_trash=MetadataValue.int(figures.albums),
        photos_to_erase=MetadataValue.int(plan.photos_to_erase),
        albums_to_erase_count=MetadataValue.int(len(plan.albums)),
        table_rows=MetadataValue.int(plan.table_rows),
    )
    report = emptied.report
    if report is not None:
        metadata.update(
            photos_erased=MetadataValue.int(report.photos_erased),
            albums_erased=MetadataValue.int(len(report.albums_erased)),
            objects_removed=MetadataValue.int(report.objects_removed),
            partitions_removed=MetadataValue.int(len(emptied.partitions_removed)),
            erase_problems=MetadataValue.int(len(report.problems)),
        )
    return metadata


def safety_check_result(plan: EmptyTrashPlan, emptied: Emptied) -> AssetCheckResult:
    if plan.safe:
        description = f"{plan.photos_to_erase} photo(s) to erase, within the safety limit ({emptied.outcome.value})"
    else:
        description = f"{emptied.outcome.value}: " + "; ".join(plan.violations)
    return AssetCheckResult(
        asset_key=TRASH_ASSET,
        check_name=WITHIN_SAFETY_LIMIT,
        passed=plan.safe,
        severity=AssetCheckSeverity.ERROR,
        description=description,
        metadata={"photos_to_erase": plan.photos_to_erase, "outcome": emptied.outcome.value},
    )


SAFETY_CHECK_SPEC = AssetCheckSpec(
    WITHIN_SAFETY_LIMIT,
    asset=TRASH_ASSET,
    description=(
        "ERROR when the latest plan to empty the trash would erase more than PHOTO_EMPTY_TRASH_MAX_FRACTION of the "
        "photo table (past PHOTO_EMPTY_TRASH_MIN_ERASES photos). Such a plan is refused unless forced."
    ),
)

DESCRIPTION = f"""\
The trash: photos and albums deleted through the API or `photo-pipeline delete`, hidden everywhere,
their files kept, restorable until `empty_trash` erases them (`PHOTO_TRASH_RETENTION_DAYS` after
their trash time). Each materialization is one plan to empty it, with what became of it (`outcome`:
applied, dry run, or refused by the safety limit with its `refusal` reason).

- `albums_to_erase`, `photos_to_erase_by_album`, `first_photos_to_erase`: the plan (ids and times only);
- `in_trash_by_album`: what the trash holds, the fullest albums first;
- plotted: photos and albums in the trash, photos to erase, and what was erased.

Materialize (or the `empty_trash` launchpad) starts as a dry run: it records the plan and erases
nothing. To erase, launch `empty_trash` with `dry_run: false` (add `force: true` for a plan the
safety limit refused, once reviewed here). `empty_trash_schedule` applies on `{EMPTY_TRASH_CRON}`;
freshness: {TRASH_FRESHNESS.describe()}.
"""


@asset(
    name=TRASH,
    group_name="trash",
    description=DESCRIPTION,
    check_specs=[SAFETY_CHECK_SPEC],
    freshness_policy=freshness_policy(TRASH_FRESHNESS),
)
def trash(
    context: AssetExecutionContext, config: EmptyTrashConfig, photo_pipeline: PhotoPipelineResource
) -> Iterator[MaterializeResult | AssetCheckResult]:
    repository = photo_pipeline.repository()
    policy = policy_from_settings(photo_pipeline.settings())
    now = utc_now()
    plan = plan_empty_trash(repository.expired_trash(trash_cutoff(now, policy), listed=policy.listed), now, policy)
    context.log.info(
        "plan: %d album(s) and %d photo(s) in all to erase (trashed before %s); %d row(s) in the table",
        len(plan.albums),
        plan.photos_to_erase,
        plan.cutoff.isoformat(),
        plan.table_rows,
    )
    for violation in plan.violations:
        context.log.warning("safety limit: %s", violation)
    emptied = carry_out(context, config, photo_pipeline, plan)
    figures = repository.trash_figures(MAX_LISTED)
    yield MaterializeResult(metadata=trash_metadata(plan, figures, emptied, policy))
    if WITHIN_SAFETY_LIMIT in {key.name for key in context.selected_asset_check_keys}:
        yield safety_check_result(plan, emptied)
    if emptied.outcome is Outcome.REFUSED:
        # After the materialization: the plan and the reason are on the asset's page; the run still
        # fails, so a schedule that keeps being refused never looks green.
        raise Failure(description=emptied.refusal or "empty_trash refused", allow_retries=False)
    if emptied.outcome is Outcome.PARTLY_APPLIED and emptied.report is not None:
        raise Failure(
            description=(
                f"empty_trash erased the rows but could not remove every object: {'; '.join(emptied.report.problems[:5])}"
            ),
            allow_retries=False,
        )
