"""The one place that reads the environment.

Everything else receives a `Settings` (or the Dagster resources built from it), so tests can
construct settings directly and nothing deep in the code depends on process state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy.engine import make_url

DEFAULT_HOME = ".photo_pipeline"

# Names of the variables, so that Dagster's EnvVar and the docs use the very same strings.
ENV_DATABASE_URL = "PHOTO_DATABASE_URL"
ENV_HOME = "PHOTO_PIPELINE_HOME"
ENV_BUCKET = "PHOTO_BUCKET"
ENV_PUBLIC_ENDPOINT_URL = "PHOTO_PUBLIC_ENDPOINT_URL"


class SettingsError(ValueError):
    """A configuration value is present but unusable."""


@dataclass(frozen=True)
class RenderSettings:
    preview_long_side: int = 1600
    thumb_long_side: int = 400
    quality: int = 82
    format: str = "JPEG"  # or "WEBP"
    watermark_text: str | None = "© photo_pipeline"
    watermark_logo_path: Path | None = None
    watermark_opacity: float = 0.45
    watermark_position: str = "bottom-right"
    # Height of the watermark as a share of the image's shorter side.
    watermark_scale: float = 0.05
    background: str = "#ffffff"
    max_pixels: int = 120_000_000


@dataclass(frozen=True)
class Settings:
    home: Path = Path(DEFAULT_HOME)
    database_url: str = ""
    bucket: str | None = None
    public_endpoint_url: str | None = None
    render: RenderSettings = field(default_factory=RenderSettings)
    # A missing original younger than this is "not arrived yet", never "lost".
    missing_grace_seconds: int = 900
    # A raw object with no row younger than this may still be getting its row.
    orphan_grace_seconds: int = 300
    claim_lease_seconds: int = 900
    missing_retention_days: int = 30
    max_attempts: int = 5
    presign_expires_seconds: int = 900
    batch_size: int = 32
    max_photos_per_run: int = 5000
    workers: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    sensor_interval_seconds: int = 30
    sensor_max_keys_per_tick: int = 5000
    # Reconciliation refuses a plan that would flag or delete more than this share of an
    # album's (or the whole table's) rows or objects, once more than `reconcile_min_changes`.
    reconcile_max_change_fraction: float = 0.2
    reconcile_min_changes: int = 10
    reconcile_cron: str = "0 * * * *"
    # Completed photos whose renditions vanished, rendered again per reconciliation run.
    reconcile_rerender_limit: int = 500

    @property
    def objects_dir(self) -> Path:
        """Object store root of the embedded mode (when no bucket is configured)."""
        return self.home / "objects"

    @property
    def dagster_home(self) -> Path:
        """Persistent local Dagster instance used by `demo` and `ui`."""
        return self.home / "dagster"

    @property
    def uses_s3(self) -> bool:
        return self.bucket is not None

    def database_url_for_display(self) -> str:
        """The database URL with its password masked, safe for logs and the UI."""
        return make_url(self.database_url).render_as_string(hide_password=True)

    def with_home(self, home: Path) -> Settings:
        return replace(self, home=home, database_url=default_database_url(home))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get(ENV_HOME) or DEFAULT_HOME).expanduser().absolute()
        render = RenderSettings(
            preview_long_side=_int(env, "PHOTO_PREVIEW_SIZE", RenderSettings.preview_long_side),
            thumb_long_side=_int(env, "PHOTO_THUMB_SIZE", RenderSettings.thumb_long_side),
            quality=_int(env, "PHOTO_QUALITY", RenderSettings.quality),
            format=_choice(env, "PHOTO_FORMAT", RenderSettings.format, ("JPEG", "WEBP")),
            watermark_text=_optional_text(env, "PHOTO_WATERMARK_TEXT", RenderSettings.watermark_text),
            watermark_logo_path=_optional_path(env, "PHOTO_WATERMARK_LOGO"),
            watermark_opacity=_float(env, "PHOTO_WATERMARK_OPACITY", RenderSettings.watermark_opacity),
            watermark_position=_choice(
                env,
                "PHOTO_WATERMARK_POSITION",
                RenderSettings.watermark_position,
                ("bottom-right", "bottom-left", "top-right", "top-left", "center"),
                upper=False,
            ),
            watermark_scale=_float(env, "PHOTO_WATERMARK_SCALE", RenderSettings.watermark_scale),
            background=env.get("PHOTO_BACKGROUND", RenderSettings.background),
            max_pixels=_int(env, "PHOTO_MAX_PIXELS", RenderSettings.max_pixels),
        )
        defaults = cls()
        return cls(
            home=home,
            database_url=env.get(ENV_DATABASE_URL) or default_database_url(home),
            bucket=env.get(ENV_BUCKET) or None,
            public_endpoint_url=env.get(ENV_PUBLIC_ENDPOINT_URL) or None,
            render=render,
            missing_grace_seconds=_int(env, "PHOTO_MISSING_GRACE_SECONDS", defaults.missing_grace_seconds),
            orphan_grace_seconds=_int(env, "PHOTO_ORPHAN_GRACE_SECONDS", defaults.orphan_grace_seconds),
            claim_lease_seconds=_int(env, "PHOTO_CLAIM_LEASE_SECONDS", defaults.claim_lease_seconds),
            missing_retention_days=_int(env, "PHOTO_MISSING_RETENTION_DAYS", defaults.missing_retention_days),
            max_attempts=_int(env, "PHOTO_MAX_ATTEMPTS", defaults.max_attempts),
            presign_expires_seconds=_int(env, "PHOTO_PRESIGN_EXPIRES_SECONDS", defaults.presign_expires_seconds),
            batch_size=_int(env, "PHOTO_BATCH_SIZE", defaults.batch_size),
            max_photos_per_run=_int(env, "PHOTO_MAX_PHOTOS_PER_RUN", defaults.max_photos_per_run),
            workers=_int(env, "PHOTO_WORKERS", defaults.workers),
            sensor_interval_seconds=_int(env, "PHOTO_SENSOR_INTERVAL_SECONDS", defaults.sensor_interval_seconds),
            sensor_max_keys_per_tick=_int(env, "PHOTO_SENSOR_MAX_KEYS_PER_TICK", defaults.sensor_max_keys_per_tick),
            reconcile_max_change_fraction=_float(
                env, "PHOTO_RECONCILE_MAX_CHANGE_FRACTION", defaults.reconcile_max_change_fraction
            ),
            reconcile_min_changes=_int(env, "PHOTO_RECONCILE_MIN_CHANGES", defaults.reconcile_min_changes),
            reconcile_cron=env.get("PHOTO_RECONCILE_CRON") or defaults.reconcile_cron,
            reconcile_rerender_limit=_int(env, "PHOTO_RECONCILE_RERENDER_LIMIT", defaults.reconcile_rerender_limit),
        )


def default_database_url(home: Path) -> str:
    return f"sqlite:///{(home / 'photos.db').absolute()}"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _choice(
    env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...], *, upper: bool = True
) -> str:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().upper() if upper else raw.strip().lower()
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def _optional_text(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    raw = env.get(name)
    if raw is None:
        return default
    # An explicitly empty value switches the text watermark off.
    return raw or None


def _optional_path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name)
    return Path(raw).expanduser() if raw else None


def env_is_set(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether a variable is set and non-empty: Dagster definitions use it to decide between an
    `EnvVar` (resolved at run time, never shown in the UI) and the embedded default."""
    env = os.environ if environ is None else environ
    return bool(env.get(name))
