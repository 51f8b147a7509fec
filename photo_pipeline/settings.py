"""The one place that reads the environment.

Everything else receives a `Settings` (or the Dagster resources built from it), so tests can
construct settings directly and nothing deep in the code depends on process state.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from PIL import ImageColor
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_HOME = ".photo_pipeline"
MIB = 1024 * 1024
DAY = 86400
_CRON_FIELD = re.compile(r"^[0-9*/,\-A-Za-z?LW#]+$")

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
    # A claim is a lease: renewed every `claim_heartbeat_seconds` while its run works on the photo,
    # taken back by anyone once it is older than this, whatever the run record says.
    claim_lease_seconds: int = 120
    claim_heartbeat_seconds: int = 30
    missing_retention_days: int = 30
    max_attempts: int = 5
    presign_expires_seconds: int = 900
    batch_size: int = 32
    max_photos_per_run: int = 5000
    workers: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    # Threads that fetch originals (and as many that upload renditions and write rows): network
    # waits, so more than the cores; each may hold a database connection while it writes.
    io_threads: int = 4
    # Originals fetched ahead of the render threads, held at once (spooled; on top of the
    # memory budget, which counts decoded pixels).
    prefetch_mb: int = 128
    # What one run may hold in decoded pixels at once (width x height x bytes per sample x bands,
    # reserved from the header before decoding): sized for a 2-core, 4 GB worker.
    memory_budget_mb: int = 1536
    # Largest original accepted: checked by HEAD before any GET, signed into presigned PUTs, and
    # refused by the CLI before a row is created.
    max_original_mb: int = 200
    # Safety net behind the fast path (`photo-pipeline arrived`): raw_object_sensor every 10 s,
    # pending_photo_sensor every 5 s (the daemon's sensor loop never runs more often than 5 s).
    sensor_interval_seconds: int = 10
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

    @property
    def memory_budget_bytes(self) -> int:
        return self.memory_budget_mb * MIB

    @property
    def prefetch_bytes(self) -> int:
        return self.prefetch_mb * MIB

    @property
    def max_original_bytes(self) -> int:
        return self.max_original_mb * MIB

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from the environment, every value checked here: a bad one raises one
        SettingsError naming the variable, before anything has been touched."""
        env = os.environ if environ is None else environ
        home = Path(env.get(ENV_HOME) or DEFAULT_HOME).expanduser().absolute()
        base = RenderSettings()
        render = RenderSettings(
            preview_long_side=_int(env, "PHOTO_PREVIEW_SIZE", base.preview_long_side, 16, 20_000),
            thumb_long_side=_int(env, "PHOTO_THUMB_SIZE", base.thumb_long_side, 16, 20_000),
            quality=_int(env, "PHOTO_QUALITY", base.quality, 1, 100),
            format=_choice(env, "PHOTO_FORMAT", base.format, ("JPEG", "WEBP")),
            watermark_text=_optional_text(env, "PHOTO_WATERMARK_TEXT", base.watermark_text),
            watermark_logo_path=_optional_path(env, "PHOTO_WATERMARK_LOGO"),
            watermark_opacity=_float(env, "PHOTO_WATERMARK_OPACITY", base.watermark_opacity, 0.0, 1.0),
            watermark_position=_choice(
                env,
                "PHOTO_WATERMARK_POSITION",
                base.watermark_position,
                ("bottom-right", "bottom-left", "top-right", "top-left", "center"),
                upper=False,
            ),
            watermark_scale=_float(env, "PHOTO_WATERMARK_SCALE", base.watermark_scale, 0.001, 1.0),
            background=_colour(env, "PHOTO_BACKGROUND", base.background),
            max_pixels=_int(env, "PHOTO_MAX_PIXELS", base.max_pixels, 1, 2_000_000_000),
        )
        d = cls()
        lease = _int(env, "PHOTO_CLAIM_LEASE_SECONDS", d.claim_lease_seconds, 10, 7 * DAY)
        heartbeat = _int(env, "PHOTO_CLAIM_HEARTBEAT_SECONDS", min(d.claim_heartbeat_seconds, lease // 4), 1, 3600)
        if heartbeat * 2 > lease:
            raise SettingsError(
                f"PHOTO_CLAIM_HEARTBEAT_SECONDS ({heartbeat}) must be at most half of PHOTO_CLAIM_LEASE_SECONDS "
                f"({lease}), or a live claim could expire between two renewals"
            )
        return cls(
            home=home,
            database_url=_database_url(env) or default_database_url(home),
            bucket=env.get(ENV_BUCKET) or None,
            public_endpoint_url=_url(env, ENV_PUBLIC_ENDPOINT_URL),
            render=render,
            missing_grace_seconds=_int(env, "PHOTO_MISSING_GRACE_SECONDS", d.missing_grace_seconds, 0, 30 * DAY),
            orphan_grace_seconds=_int(env, "PHOTO_ORPHAN_GRACE_SECONDS", d.orphan_grace_seconds, 0, 30 * DAY),
            claim_lease_seconds=lease,
            claim_heartbeat_seconds=heartbeat,
            missing_retention_days=_int(env, "PHOTO_MISSING_RETENTION_DAYS", d.missing_retention_days, 1, 3650),
            max_attempts=_int(env, "PHOTO_MAX_ATTEMPTS", d.max_attempts, 1, 100),
            # SigV4 presigned URLs live at most 7 days.
            presign_expires_seconds=_int(env, "PHOTO_PRESIGN_EXPIRES_SECONDS", d.presign_expires_seconds, 10, 7 * DAY),
            batch_size=_int(env, "PHOTO_BATCH_SIZE", d.batch_size, 1, 10_000),
            max_photos_per_run=_int(env, "PHOTO_MAX_PHOTOS_PER_RUN", d.max_photos_per_run, 1, 10_000_000),
            workers=_int(env, "PHOTO_WORKERS", d.workers, 1, 256),
            # The photo table's pool holds 20 connections (database.py): I/O threads of both
            # stages, the heartbeat and the claim loop must fit in it.
            io_threads=_int(env, "PHOTO_IO_THREADS", d.io_threads, 1, 8),
            prefetch_mb=_int(env, "PHOTO_PREFETCH_MB", d.prefetch_mb, 8, 1_048_576),
            memory_budget_mb=_int(env, "PHOTO_MEMORY_BUDGET_MB", d.memory_budget_mb, 64, 1_048_576),
            max_original_mb=_int(env, "PHOTO_MAX_ORIGINAL_MB", d.max_original_mb, 1, 5 * 1024 * 1024),
            sensor_interval_seconds=_int(env, "PHOTO_SENSOR_INTERVAL_SECONDS", d.sensor_interval_seconds, 1, DAY),
            sensor_max_keys_per_tick=_int(env, "PHOTO_SENSOR_MAX_KEYS_PER_TICK", d.sensor_max_keys_per_tick, 1, 1_000_000),
            reconcile_max_change_fraction=_float(
                env, "PHOTO_RECONCILE_MAX_CHANGE_FRACTION", d.reconcile_max_change_fraction, 0.0, 1.0
            ),
            reconcile_min_changes=_int(env, "PHOTO_RECONCILE_MIN_CHANGES", d.reconcile_min_changes, 0, 10_000_000),
            reconcile_cron=_cron(env, "PHOTO_RECONCILE_CRON", d.reconcile_cron),
            reconcile_rerender_limit=_int(env, "PHOTO_RECONCILE_RERENDER_LIMIT", d.reconcile_rerender_limit, 0, 1_000_000),
        )


def default_database_url(home: Path) -> str:
    return f"sqlite:///{(home / 'photos.db').absolute()}"


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float, maximum: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:  # also refuses nan
        raise SettingsError(f"{name} must be between {minimum:g} and {maximum:g}, got {raw.strip()}")
    return value


def _colour(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        ImageColor.getrgb(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be a colour (#rrggbb or a name), got {raw!r}") from None
    return raw.strip()


def _url(env: Mapping[str, str], name: str) -> str | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Never echo the value: it may carry credentials.
        raise SettingsError(f"{name} must be an http(s) URL with a host name")
    return raw


def _database_url(env: Mapping[str, str]) -> str | None:
    raw = (env.get(ENV_DATABASE_URL) or "").strip()
    if not raw:
        return None
    try:
        make_url(raw)
    except ArgumentError:
        # Never echo the value: it carries the password.
        raise SettingsError(f"{ENV_DATABASE_URL} is not a SQLAlchemy URL (dialect+driver://user:password@host/db)") from None
    return raw


def _cron(env: Mapping[str, str], name: str, default: str) -> str:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    fields = raw.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise SettingsError(f"{name} must be a five-field cron expression such as '0 * * * *', got {raw!r}")
    return raw


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


# What boto3 reads from the environment to build an S3 client (endpoint, credentials, region,
# profile, retries): a client cached by the resources is only reused while these are unchanged.
BOTO3_ENVIRONMENT = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
)


def boto3_environment_fingerprint(environ: Mapping[str, str] | None = None) -> str:
    """A digest (never the values: they include secrets) of the variables boto3 builds clients from."""
    env = os.environ if environ is None else environ
    joined = "\0".join(f"{name}={env.get(name, '')}" for name in BOTO3_ENVIRONMENT)
    return hashlib.sha256(joined.encode()).hexdigest()
