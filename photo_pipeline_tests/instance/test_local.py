"""The local instance of the embedded mode: quiet for a newcomer, and the run-retry daemon's
starting point set the way the daemon itself would set it."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetMaterialization
from dagster._daemon.auto_run_reexecution.event_log_consumer import (
    DAGSTER_EVENT_TYPES,
    _create_cursor_key,
    _fetch_persisted_cursors,
)

from photo_pipeline.instance.local import local_instance, start_run_retries_from_now
from photo_pipeline.settings import Settings

KEYS = {_create_cursor_key(event_type) for event_type in DAGSTER_EVENT_TYPES}


class RecordingLogger:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    warning = warn


def test_local_instance_sends_no_telemetry_and_shows_no_community_dialog(tmp_path: Path) -> None:
    with local_instance(Settings(home=tmp_path)) as instance:
        assert instance.telemetry_enabled is False
        assert instance.nux_enabled is False


def test_run_retries_start_after_the_newest_event_and_the_daemon_has_nothing_to_warn(tmp_path: Path) -> None:
    with local_instance(Settings(home=tmp_path)) as instance:
        instance.report_runless_asset_event(AssetMaterialization("an_event_before_the_daemon_ever_ran"))
        newest = instance.event_log_storage.get_maximum_record_id()
        assert newest
        start_run_retries_from_now(instance)
        assert instance.daemon_cursor_storage.get_cursor_values(KEYS) == {key: str(newest) for key in KEYS}
        # What the daemon reads on its first look: every cursor there, so no "No cursor" warning.
        logger = RecordingLogger()
        assert _fetch_persisted_cursors(instance, DAGSTER_EVENT_TYPES, logger) == {t: newest for t in DAGSTER_EVENT_TYPES}  # type: ignore[arg-type]
        assert logger.warnings == []


def test_cursors_the_daemon_keeps_are_left_alone(tmp_path: Path) -> None:
    with local_instance(Settings(home=tmp_path)) as instance:
        kept = {key: "7" for key in KEYS}
        instance.daemon_cursor_storage.set_cursor_values(kept)
        instance.report_runless_asset_event(AssetMaterialization("a_later_event"))
        start_run_retries_from_now(instance)
        assert instance.daemon_cursor_storage.get_cursor_values(KEYS) == kept
