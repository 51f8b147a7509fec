"""docs/contract.md against the code: every name it lists exists, every name the code has is
listed, and what it marks *(planned)* does not exist yet (the marker goes when it lands)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from photo_pipeline.api.routes import ENDPOINTS
from photo_pipeline.cli.commands import main
from photo_pipeline.definitions import defs
from photo_pipeline.photos.models import Base, PhotoStatus
from photo_pipeline.settings import EnvironmentSettings
from photo_pipeline_tests.markdown import Row, sections, table_rows

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / "docs" / "contract.md"
TEXT = CONTRACT.read_text(encoding="utf-8")
PARTS = sections(TEXT, 2)


def listed(rows: list[Row], column: int = 0) -> tuple[set[str], set[str]]:
    """(names built, names planned) of the rows' backticked first names."""
    built = {row.names(column)[0] for row in rows if not row.planned}
    planned = {row.names(column)[0] for row in rows if row.planned}
    return built, planned


def assert_listed(what: str, rows: list[Row], in_code: set[str], column: int = 0) -> None:
    built, planned = listed(rows, column)
    assert built == in_code, f"{what}: only in docs/contract.md {sorted(built - in_code)}, only in the code {sorted(in_code - built)}"
    assert not planned & in_code, f"{what}: {sorted(planned & in_code)} exist now: drop their *(planned)* marker"


def test_the_commands_are_the_cli_s() -> None:
    assert_listed("commands", table_rows(PARTS["Command line: `photo-pipeline`"]), set(main.commands))


def test_the_endpoints_are_the_api_s() -> None:
    routes = {f"{endpoint.method} {endpoint.path}" for endpoint in ENDPOINTS} | {"GET /openapi.json"}
    assert_listed("endpoints", table_rows(PARTS["HTTP API (`photo-pipeline serve`)"]), routes)


def test_the_states_are_the_table_s() -> None:
    assert_listed("states", table_rows(PARTS["States"]), {status.value for status in PhotoStatus})


@pytest.mark.parametrize("kind", ["asset", "job", "sensor", "schedule"])
def test_the_dagster_names_are_the_definitions(kind: str) -> None:
    repository = defs().get_repository_def()
    in_code = {
        "asset": {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()},
        "job": {job.name for job in repository.get_all_jobs() if not job.name.startswith("__")},
        "sensor": {sensor.name for sensor in repository.sensor_defs},
        "schedule": {schedule.name for schedule in repository.schedule_defs},
    }[kind]
    rows = [row for row in table_rows(PARTS["Dagster"]) if row.cells[0] == kind]
    assert_listed(f"{kind}s", rows, in_code, column=1)


def test_the_tables_and_their_columns_are_the_model_s() -> None:
    documented = {
        heading.strip("`"): table_rows(body)
        for heading, body in sections(PARTS["Tables"], 3).items()
        if heading.startswith("`")
    }
    assert set(documented) == set(Base.metadata.tables), "every table, and only those, has a section"
    for name, table in Base.metadata.tables.items():
        assert_listed(f"columns of {name}", documented[name], {column.name for column in table.columns})


def test_the_settings_are_the_declared_variables() -> None:
    named = set(re.findall(r"`(PHOTO_[A-Z_]+)`", PARTS["Settings"]))
    declared = {EnvironmentSettings.variable(name) for name in EnvironmentSettings.model_fields}
    assert named == declared, f"only in docs/contract.md {sorted(named - declared)}, only declared {sorted(declared - named)}"
