"""Freshness of the scheduled assets (`storage_reconciliation`, `pipeline_health`): a Dagster
`FreshnessPolicy` derived from the asset's own schedule, so a stopped schedule, a dead daemon or a
run that keeps failing before it records anything turns the asset's freshness yellow, then red.

The daemon's freshness evaluator (on by default in Dagster 1.13) judges the policies every 30 s
and the UI shows the state on the asset's page and in the catalog. The windows' rule lives in
`services/health.py`; this module only measures the cron and hands Dagster the policy.
"""

from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise

from dagster import FreshnessPolicy

# cron_string_iterator is Dagster's own cron walker (the one its schedules tick by, with their
# timezone and leap-day rules); Dagster exports no public equivalent.
from dagster._utils.schedules import cron_string_iterator

from photo_pipeline.services.health import FreshnessWindows, freshness_windows

# A fixed start keeps the policy (part of the code location's snapshot) the same on every load;
# fifty ticks see a weekday cron's weekend and an hourly cron's every hour alike.
REFERENCE_START = datetime(2024, 1, 1, tzinfo=UTC)
TICKS_MEASURED = 50


def schedule_interval(cron: str, timezone: str = "UTC") -> timedelta:
    """The longest gap between two consecutive ticks of `cron` (over TICKS_MEASURED ticks)."""
    ticks = list(islice(cron_string_iterator(REFERENCE_START.timestamp(), cron, timezone), TICKS_MEASURED))
    if len(ticks) < 2:
        raise ValueError(f"cron {cron!r} ticks fewer than twice: cannot tell how often it runs")
    return max(later - earlier for earlier, later in pairwise(ticks))


def windows_for_schedule(cron: str) -> FreshnessWindows:
    return freshness_windows(schedule_interval(cron))


def freshness_policy(windows: FreshnessWindows) -> FreshnessPolicy:
    return FreshnessPolicy.time_window(fail_window=windows.fail_after, warn_window=windows.warn_after)
