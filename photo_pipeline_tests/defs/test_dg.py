"""Dagster's project tooling sees the project as we lay it out: `dg check defs` passes and
`dg list defs` finds every definition under `defs/`, each exactly once, through the same loader the
code location uses (`photo_pipeline.definitions`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from photo_pipeline_tests.conftest import BIN, ROOT

EXPECTED = {
    "assets": {"thumbnails", "previews", "storage_reconciliation", "pipeline_health", "trash"},
    "jobs": {"process_album", "rerender_albums", "reprocess_failed_photos", "reconcile_storage", "apply_reconciliation", "pipeline_health_job", "empty_trash"},
    "sensors": {"raw_object_sensor", "pending_photo_sensor", "alert_on_run_failure", "alert_on_conditions"},
    "schedules": {"reconcile_storage_schedule", "pipeline_health_schedule", "empty_trash_schedule"},
    "resources": {"photo_pipeline"},
    "asset_checks": {
        "no_failed_photos_in_album",
        "no_failed_photos_in_any_album",
        "plan_within_safety_limit",
        "empty_trash_within_safety_limit",
        "no_orphans_or_missing_rows",
        "failure_rate_below_threshold",
        "no_stale_pending_photos",
    },
}


def dg(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    # A DAGSTER_HOME of its own: without one, Dagster's CLIs read ./dagster.yaml, the production
    # instance, whose PostgreSQL variables a test machine does not set.
    (home / "dagster.yaml").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTO_", "DAGSTER_"))}
    env.update({"DAGSTER_HOME": str(home), "VIRTUAL_ENV": str(Path(sys.executable).parent.parent)})
    return subprocess.run([str(BIN / "dg"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def test_dg_check_defs_passes(tmp_path: Path) -> None:
    result = dg("check", "defs", home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr


def test_dg_list_defs_finds_every_definition_once(tmp_path: Path) -> None:
    result = dg("list", "defs", "--json", home=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)

    def names(section: str) -> list[str]:
        return [item.get("name") or item.get("asset_key") or item["key"] for item in listed[section]]

    for section, expected in EXPECTED.items():
        found = names(section)
        assert sorted(found) == sorted(set(found)), f"{section} listed twice: {found}"
        assert set(found) == expected, section
