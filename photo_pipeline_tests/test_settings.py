"""The PHOTO_* variables: declared once (pydantic-settings), read from the mapping given, checked
with one error naming the variable, and listed in the operations guide from the same declarations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from photo_pipeline.settings import (
    ENV_BUCKET,
    ENV_DATABASE_URL,
    ENV_HOME,
    ENV_PUBLIC_ENDPOINT_URL,
    REGENERATE,
    TABLE_END,
    TABLE_START,
    EnvironmentSettings,
    RenderSettings,
    Settings,
    SettingsError,
    default_workers,
    main,
    replace_settings_table,
    settings_reference_markdown,
)

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
OPERATIONS_GUIDE = ROOT / "docs" / "operations.md"


def load(tmp_path: Path, **variables: str) -> Settings:
    return Settings.from_env({"PHOTO_PIPELINE_HOME": str(tmp_path), **variables})


def test_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert settings.home == tmp_path
    assert settings.database_url == f"sqlite:///{tmp_path / 'photos.db'}"
    assert (settings.bucket, settings.public_endpoint_url, settings.uses_s3) == (None, None, False)
    assert settings.render == RenderSettings(), "the dataclasses' defaults are the declared ones"
    assert (settings.render.quality, settings.render.format, settings.render.watermark_text) == (82, "JPEG", "© photo_pipeline")
    assert (settings.claim_lease_seconds, settings.claim_heartbeat_seconds) == (120, 30)
    assert settings.workers == default_workers() >= 2
    assert settings.reconcile_cron == "0 * * * *"
    assert settings.memory_budget_bytes == 1536 * 1024 * 1024
    assert Settings.from_env({}).home == (Path.cwd() / ".photo_pipeline"), "home defaults to ./.photo_pipeline"


def test_values_are_read_and_normalised(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        PHOTO_QUALITY=" 90 ",
        PHOTO_FORMAT="webp",
        PHOTO_WATERMARK_POSITION="Top-Left",
        PHOTO_WATERMARK_OPACITY="0.3",
        PHOTO_WATERMARK_LOGO="~/logo.png",
        PHOTO_BACKGROUND=" black ",
        PHOTO_PUBLIC_ENDPOINT_URL=" https://photos.example.com ",
        PHOTO_API_PUBLIC_URL=" https://photos-api.example.com/uploads/ ",
        PHOTO_BUCKET="photos",
        PHOTO_RECONCILE_CRON=" */5 * * * * ",
        PHOTO_WORKERS="3",
    )
    render = settings.render
    assert (render.quality, render.format, render.watermark_position, render.watermark_opacity) == (90, "WEBP", "top-left", 0.3)
    assert render.watermark_logo_path == Path.home() / "logo.png"
    assert render.background == "black"
    assert settings.public_endpoint_url == "https://photos.example.com"
    assert settings.api_public_url == "https://photos-api.example.com/uploads", "URLs are built by appending /api/…"
    assert (settings.bucket, settings.uses_s3, settings.reconcile_cron, settings.workers) == ("photos", True, "*/5 * * * *", 3)


def test_only_the_mapping_given_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOTO_QUALITY", "7")
    monkeypatch.setenv("PHOTO_BUCKET", "from-the-process")
    settings = load(tmp_path)
    assert (settings.render.quality, settings.bucket) == (82, None)
    assert EnvironmentSettings().quality == 82, "the declarations never read os.environ by themselves"
    assert Settings.from_env().render.quality == 7, "from_env() without a mapping reads the process environment"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PHOTO_QUALITY", "0", "PHOTO_QUALITY must be between 1 and 100, got 0"),
        ("PHOTO_QUALITY", "101", "PHOTO_QUALITY must be between 1 and 100, got 101"),
        ("PHOTO_MAX_PIXELS", "0", "PHOTO_MAX_PIXELS must be between 1 and 2000000000, got 0"),
        ("PHOTO_CLAIM_LEASE_SECONDS", "9", "PHOTO_CLAIM_LEASE_SECONDS must be between 10 and 604800, got 9"),
        ("PHOTO_WATERMARK_SCALE", "0", "PHOTO_WATERMARK_SCALE must be between 0.001 and 1, got 0"),
        ("PHOTO_WATERMARK_OPACITY", "nan", "PHOTO_WATERMARK_OPACITY must be between 0 and 1, got nan"),
        ("PHOTO_RECONCILE_MAX_CHANGE_FRACTION", "inf", "PHOTO_RECONCILE_MAX_CHANGE_FRACTION must be between 0 and 1, got inf"),
        ("PHOTO_IO_THREADS", "many", "PHOTO_IO_THREADS must be a whole number, got 'many'"),
        ("PHOTO_WATERMARK_OPACITY", "half", "PHOTO_WATERMARK_OPACITY must be a number, got 'half'"),
        # Choices, colours and cron expressions.
        ("PHOTO_FORMAT", "gif", "PHOTO_FORMAT must be one of JPEG, WEBP, got 'gif'"),
        (
            "PHOTO_WATERMARK_POSITION",
            "middle",
            "PHOTO_WATERMARK_POSITION must be one of bottom-right, bottom-left, top-right, top-left, center, got 'middle'",
        ),
        ("PHOTO_BACKGROUND", "nope", "PHOTO_BACKGROUND must be a colour (#rrggbb or a name), got 'nope'"),
        ("PHOTO_RECONCILE_CRON", "hourly", "PHOTO_RECONCILE_CRON must be a five-field cron expression such as '0 * * * *', got 'hourly'"),
        # URLs: refused without echoing them.
        ("PHOTO_DATABASE_URL", "not a url, s3cret", "PHOTO_DATABASE_URL is not a SQLAlchemy URL (dialect+driver://user:password@host/db)"),
        ("PHOTO_PUBLIC_ENDPOINT_URL", "ftp://user:s3cret@minio", "PHOTO_PUBLIC_ENDPOINT_URL must be an http(s) URL with a host name"),
        ("PHOTO_API_PUBLIC_URL", "photos.example.com", "PHOTO_API_PUBLIC_URL must be an http(s) URL with a host name"),
        (
            "PHOTO_API_PUBLIC_URL",
            "https://user:s3cret@photos.example.com/?x=1",
            "PHOTO_API_PUBLIC_URL must be a base URL: no user:password@, query or fragment",
        ),
        ("PHOTO_API_BUCKET_TIMEOUT_SECONDS", "0", "PHOTO_API_BUCKET_TIMEOUT_SECONDS must be between 1 and 300, got 0"),
        # Responsive sizes: whole pixels, in range, and not so many that every photo gets dozens of files.
        ("PHOTO_RENDITION_SIZES", "400,wide", "PHOTO_RENDITION_SIZES must be comma-separated whole pixel sizes, got '400,wide'"),
        ("PHOTO_RENDITION_SIZES", "8,400", "PHOTO_RENDITION_SIZES sizes must be between 16 and 20000 pixels, got '8,400'"),
        (
            "PHOTO_RENDITION_SIZES",
            ",".join(str(size) for size in range(100, 1200, 100)),
            "PHOTO_RENDITION_SIZES may list at most 10 sizes, got 11",
        ),
    ],
)
def test_a_bad_value_is_one_error_naming_the_variable(tmp_path: Path, variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as error:
        load(tmp_path, **{variable: value})
    assert str(error.value) == message
    assert error.value.__cause__ is None and error.value.__suppress_context__, "pydantic's report (with the input) is not chained"


def test_a_photo_variable_that_is_no_setting_is_refused_with_the_name_meant(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as typo:
        load(tmp_path, PHOTO_QUALTIY="60")
    assert str(typo.value) == (
        "PHOTO_QUALTIY is not a setting (did you mean PHOTO_QUALITY?); the settings are listed in docs/operations.md#configuration"
    )
    with pytest.raises(SettingsError, match=r"^PHOTO_NOTHING_LIKE_IT is not a setting; "):
        load(tmp_path, PHOTO_NOTHING_LIKE_IT="1")
    with pytest.raises(SettingsError, match=r"^PHOTO_RENDITION_WIDTHS was renamed PHOTO_RENDITION_SIZES "):
        load(tmp_path, PHOTO_RENDITION_WIDTHS="400,800")
    # The test suite's own variables and other programs' are not ours to judge.
    assert load(tmp_path, PHOTO_TEST_PG_ADMIN_DSN="postgresql://x", PHOTOS="1", HOME="/").render.quality == 82


def test_empty_means_unset_except_for_the_watermark_text(tmp_path: Path) -> None:
    empty = {name: "" for name in (EnvironmentSettings.variable(field) for field in EnvironmentSettings.model_fields)}
    empty.pop(ENV_HOME)
    settings = load(tmp_path, **empty)
    assert settings.render.watermark_text is None, "an empty PHOTO_WATERMARK_TEXT switches the text watermark off"
    assert settings.render.quality == 82 and settings.render.format == "JPEG" and settings.workers == default_workers()
    assert settings.database_url == f"sqlite:///{tmp_path / 'photos.db'}", "an empty database URL is the SQLite default"
    assert (settings.bucket, settings.public_endpoint_url, settings.render.watermark_logo_path) == (None, None, None)
    assert load(tmp_path, PHOTO_QUALITY="   ", PHOTO_BUCKET=" ").render.quality == 82
    assert load(tmp_path, PHOTO_WATERMARK_TEXT="Studio").render.watermark_text == "Studio"
    assert Settings.from_env({ENV_HOME: ""}).home == Path.cwd() / ".photo_pipeline"


def test_the_heartbeat_must_fit_twice_in_the_lease(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as error:
        load(tmp_path, PHOTO_CLAIM_LEASE_SECONDS="60", PHOTO_CLAIM_HEARTBEAT_SECONDS="40")
    assert str(error.value) == (
        "PHOTO_CLAIM_HEARTBEAT_SECONDS (40) must be at most half of PHOTO_CLAIM_LEASE_SECONDS (60), "
        "or a live claim could expire between two renewals"
    )
    assert load(tmp_path, PHOTO_CLAIM_LEASE_SECONDS="60", PHOTO_CLAIM_HEARTBEAT_SECONDS="30").claim_heartbeat_seconds == 30


def test_the_default_heartbeat_follows_a_short_lease(tmp_path: Path) -> None:
    assert load(tmp_path, PHOTO_CLAIM_LEASE_SECONDS="60").claim_heartbeat_seconds == 15
    assert load(tmp_path, PHOTO_CLAIM_LEASE_SECONDS="10").claim_heartbeat_seconds == 2
    assert load(tmp_path, PHOTO_CLAIM_LEASE_SECONDS="3600").claim_heartbeat_seconds == 30


def test_the_connection_variable_names_are_declared() -> None:
    declared = {EnvironmentSettings.variable(name) for name in EnvironmentSettings.model_fields}
    assert {ENV_DATABASE_URL, ENV_HOME, ENV_BUCKET, ENV_PUBLIC_ENDPOINT_URL} <= declared
    assert ENV_HOME == "PHOTO_PIPELINE_HOME" and ENV_DATABASE_URL == "PHOTO_DATABASE_URL"


def test_every_variable_has_a_description() -> None:
    undescribed = [name for name, info in EnvironmentSettings.model_fields.items() if not (info.description or "").strip()]
    assert undescribed == []


def test_the_operations_guide_table_is_generated_from_the_declarations() -> None:
    guide = OPERATIONS_GUIDE.read_text(encoding="utf-8")
    assert TABLE_START in guide and TABLE_END in guide, f"{OPERATIONS_GUIDE} lost its settings-table markers"
    block = guide[guide.index(TABLE_START) + len(TABLE_START) : guide.index(TABLE_END)].strip("\n")
    assert block == settings_reference_markdown().strip("\n"), (
        f"the Configuration table of {OPERATIONS_GUIDE.relative_to(ROOT)} differs from the declarations in "
        f"photo_pipeline/settings.py: run `{REGENERATE}`"
    )


def test_the_table_has_one_row_per_variable_with_its_default_and_range() -> None:
    table = settings_reference_markdown()
    rows = [line for line in table.splitlines() if line.startswith("| `PHOTO_")]
    assert len(rows) == len(EnvironmentSettings.model_fields)
    assert "| `PHOTO_QUALITY` | 82 | whole number, 1 to 100 |" in table
    assert "| `PHOTO_FORMAT` | `JPEG` | `JPEG`, `WEBP` |" in table
    assert "| `PHOTO_WORKERS` | cores (at least 2) |" in table, "a derived default is described, not this machine's value"


def test_update_docs_rewrites_only_the_block(tmp_path: Path) -> None:
    guide = tmp_path / "operations.md"
    guide.write_text(f"# Guide\n\nbefore\n\n{TABLE_START}\n| stale |\n{TABLE_END}\n\nafter\n", encoding="utf-8")
    assert main(["--update-docs", str(guide)]) == 0
    assert guide.read_text(encoding="utf-8") == (
        f"# Guide\n\nbefore\n\n{TABLE_START}\n{settings_reference_markdown()}{TABLE_END}\n\nafter\n"
    )
    with pytest.raises(ValueError, match="settings-table"):
        replace_settings_table("# no markers here\n")


def test_the_markdown_entry_point_prints_the_table() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTO_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "photo_pipeline.settings", "--markdown"], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout == settings_reference_markdown()
