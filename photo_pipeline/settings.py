"""The one place that reads the environment.

Every `PHOTO_*` variable is declared once, in `EnvironmentSettings` (pydantic-settings): its
type, default, accepted range or choices and meaning. `Settings.from_env` reads them from the
mapping it is given, checks them there, and hands out `Settings` / `RenderSettings`, plain frozen
dataclasses, so tests can construct settings directly and nothing deep in the code depends on
process state. The operations guide's table is generated from the same declarations
(`python -m photo_pipeline.settings --update-docs`).
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from PIL import ImageColor
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from photo_pipeline.rendering.sizes import DEFAULT_SIZES, MAX_SIZES

DEFAULT_HOME = ".photo_pipeline"
MIB = 1024 * 1024
DAY = 86400
_CRON_FIELD = re.compile(r"^[0-9*/,\-A-Za-z?LW#]+$")
PREFIX = "PHOTO_"
# Variables under the prefix that are not settings: the test suite's own (conftest.py).
FOREIGN_PREFIXES: tuple[str, ...] = ("PHOTO_TEST_",)
# Settings that were renamed: setting the old name must fail, not be silently ignored.
RENAMED: dict[str, str] = {
    "PHOTO_RENDITION_WIDTHS": "PHOTO_RENDITION_SIZES (the responsive sizes are long sides, like the preview's)",
}

# Where the docs table lives, and the comments around the generated block.
DOCS_PATH = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
TABLE_START = "<!-- settings-table:start -->"
TABLE_END = "<!-- settings-table:end -->"
REGENERATE = "python -m photo_pipeline.settings --update-docs"


# An Apprise URL: a scheme, then anything (each service shapes the rest its own way).
_ALERT_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://\S+$")
# Destinations are separated by white space, or by a comma before the next scheme:// (a comma
# inside a URL, as in mailto's `to=a@x,b@y`, stays part of it).
_ALERT_URL_SEPARATOR = re.compile(r"\s+|,\s*(?=[A-Za-z][A-Za-z0-9+.\-]*://)")


def split_alert_urls(text: str) -> tuple[str, ...]:
    """PHOTO_ALERT_URLS' destinations, in order, duplicates dropped."""
    return tuple(dict.fromkeys(part.strip(" ,") for part in _ALERT_URL_SEPARATOR.split(text) if part.strip(" ,")))


class SettingsError(ValueError):
    """A configuration value is present but unusable."""


# A bearer token shorter than this is guessable; `secrets.token_urlsafe(32)` gives 43 characters.
MIN_API_TOKEN_LENGTH = 24
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(text: str) -> str:
    """An origin as browsers send it in the `Origin` header: scheme://host[:port], lower case, the
    default port dropped. PydanticCustomError for anything else (a path, a wildcard, credentials)."""
    raw = text.strip()
    parts = urlsplit(raw)
    shown = {"value": repr(raw)}
    if raw == "*":
        raise PydanticCustomError("setting", "must list the site's origins; '*' would let any page call the API")
    try:
        port = parts.port
    except ValueError:
        raise PydanticCustomError("setting", "has an origin with an unusable port: {value}", shown) from None
    if parts.username is not None or parts.password is not None:
        # Never echoed: user:password@ is a credential.
        raise PydanticCustomError("setting", "must be origins without user:password@")
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise PydanticCustomError("setting", "must be origins like https://www.example.com, got {value}", shown)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise PydanticCustomError("setting", "must be origins without a path, got {value}", shown)
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    suffix = f":{port}" if port is not None and port != _DEFAULT_PORTS[parts.scheme] else ""
    return f"{parts.scheme.lower()}://{host}{suffix}"


def default_workers() -> int:
    """Render threads when PHOTO_WORKERS is unset: the cores, and never fewer than two."""
    return max(2, os.cpu_count() or 2)


def _setting(
    default: Any = None,
    *,
    default_factory: Callable[[], Any] | None = None,
    description: str,
    shown_default: str | None = None,
    accepted: str | None = None,
    empty_is_a_value: bool = False,
    **constraints: Any,
) -> Any:
    """A declared variable: `Field` plus what the docs table shows that pydantic cannot derive.

    shown_default: the default as the docs say it, when it is derived (from the home, the lease,
    the cores) rather than a constant. accepted: what a value must look like, when no range or
    choice says it. empty_is_a_value: an empty string means something (no text watermark)
    instead of "unset, take the default".
    """
    extra: dict[str, Any] = {"empty_is_a_value": empty_is_a_value}
    if shown_default is not None:
        extra["shown_default"] = shown_default
    if accepted is not None:
        extra["accepted"] = accepted
    if default_factory is not None:
        return Field(default_factory=default_factory, description=description, json_schema_extra=extra, **constraints)
    return Field(default, description=description, json_schema_extra=extra, **constraints)


WatermarkPosition = Literal["bottom-right", "bottom-left", "top-right", "top-left", "center"]


class EnvironmentSettings(BaseSettings):
    """Every PHOTO_* variable: field `x` is the variable `PHOTO_X` (the `PHOTO_` prefix). The order
    of declaration is the order of the operations guide's table, and the first bad value in it is
    the one reported."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="forbid")

    # Where the table and the objects live.
    database_url: str | None = _setting(
        None,
        description="SQLAlchemy URL of the photo table (`postgresql+psycopg://…` in production); "
        "shown with its password masked",
        shown_default="SQLite file `photos.db` under `PHOTO_PIPELINE_HOME`",
        accepted="SQLAlchemy URL",
    )
    pipeline_home: Path = _setting(
        Path(DEFAULT_HOME),
        description="folder of the embedded defaults (SQLite table, local object store) and the local Dagster instance",
        shown_default="`./.photo_pipeline`",
        accepted="folder",
    )
    bucket: str | None = _setting(
        None,
        description="S3 bucket; endpoint and credentials from boto3's own variables (`AWS_ENDPOINT_URL_S3` / "
        "`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`)",
        shown_default="unset: local folder store",
        accepted="bucket name",
    )
    public_endpoint_url: str | None = _setting(
        None,
        description="endpoint presigned URLs are signed for (what browsers reach)",
        shown_default="the internal endpoint",
        accepted="http(s) URL",
    )

    # Rendering.
    preview_size: int = _setting(1600, description="long side of previews in pixels; never upscaled", ge=16, le=20_000)
    thumb_size: int = _setting(400, description="long side of thumbnails in pixels; never upscaled", ge=16, le=20_000)
    quality: int = _setting(82, description="encoder quality of the renditions (JPEG and WebP)", ge=1, le=100)
    avif_quality: int = _setting(
        50,
        description="encoder quality of the AVIF renditions (`PHOTO_RENDITION_FORMATS`): AVIF's scale is not JPEG's; "
        "50 (libvips's and sharp's default) gives about JPEG 82's SSIM in a quarter of its bytes, while 82 is larger "
        "than the JPEG (see [Renditions](#renditions))",
        ge=1,
        le=100,
    )
    format: Literal["JPEG", "WEBP"] = _setting("JPEG", description="format of the renditions (any case)")
    watermark_text: str | None = _setting(
        "© photo_pipeline",
        description="text of the watermark; empty string: no text watermark",
        accepted="text",
        empty_is_a_value=True,
    )
    watermark_logo: Path | None = _setting(
        None,
        description="path of a PNG logo (with alpha) for the watermark, placed before the text",
        shown_default="unset",
        accepted="path",
    )
    watermark_opacity: float = _setting(0.45, description="opacity of the watermark", ge=0.0, le=1.0, allow_inf_nan=False)
    watermark_position: WatermarkPosition = _setting("bottom-right", description="corner of the watermark (any case)")
    watermark_scale: float = _setting(
        0.05,
        description="height of the watermark as a share of the image's shorter side",
        ge=0.001,
        le=1.0,
        allow_inf_nan=False,
    )
    background: str = _setting(
        "#ffffff", description="colour transparency is flattened onto", accepted="`#rrggbb` or a colour name"
    )
    max_pixels: int = _setting(
        120_000_000,
        description="decompression-bomb limit: larger images are refused before decoding",
        ge=1,
        le=2_000_000_000,
    )
    rendition_sizes: tuple[int, ...] = _setting(
        DEFAULT_SIZES,
        description="responsive sizes (`processed/<size>/…`, for srcset), each a long side like the preview's "
        "(800: 800x600 landscape, 600x800 portrait), each made from the next larger one, from the decode the "
        "preview needs; never upscaled: the sizes that decode cannot fill get one rendition at its own size, filed "
        "under the smallest of them (the `renditions` table has each file's real width and height); empty string: "
        "none (the preview and thumbnail only); see [Renditions](#renditions)",
        shown_default="400,800,1600,2400",
        accepted=f"comma-separated long sides in pixels, 16-20000, at most {MAX_SIZES}",
        empty_is_a_value=True,
    )
    rendition_formats: tuple[Literal["WEBP", "AVIF"], ...] = _setting(
        (),
        description="formats of the responsive sizes beside JPEG (which they always have); each costs its "
        "encode (see [Renditions](#renditions))",
        shown_default="none: JPEG only",
        accepted="comma-separated `WEBP`, `AVIF` (any case)",
    )
    store_gps: bool = _setting(
        False,
        description="store the EXIF GPS position of each photo in the photo table (personal data: off unless "
        "wanted); renditions never carry it",
        accepted="true or false",
    )

    # Limits of one run (see the guide's Limits and The processing pipeline).
    memory_budget_mb: int = _setting(
        1536,
        description="decoded pixels one run may hold at once (width x height x bytes per sample x bands, reserved "
        "from the header before decoding); sized for a 2-core, 4 GB worker (see [Limits](#limits))",
        ge=64,
        le=1_048_576,
    )
    max_original_mb: int = _setting(
        200,
        description="largest original accepted: checked by HEAD before any GET, signed into presigned PUTs, "
        "refused by the CLI before a row is created",
        ge=1,
        le=5 * 1024 * 1024,
    )
    prefetch_mb: int = _setting(
        128,
        description="originals fetched ahead of the render threads and held at once (spooled), on top of the memory budget",
        ge=8,
        le=1_048_576,
    )
    workers: int = _setting(
        default_factory=default_workers,
        description="render threads per run",
        shown_default="cores (at least 2)",
        ge=1,
        le=256,
    )
    # A run's pool to the photo table is sized from this (database.connections_per_process:
    # the I/O threads of both stages, the heartbeat and the claim loop); at most 8 keeps it at 18.
    io_threads: int = _setting(
        4,
        description="threads that fetch originals, and as many that upload renditions and write rows "
        "(see [The processing pipeline](#the-processing-pipeline))",
        ge=1,
        le=8,
    )
    batch_size: int = _setting(32, description="photos claimed per batch", ge=1, le=10_000)
    max_photos_per_run: int = _setting(5000, description="photos one run processes at most", ge=1, le=10_000_000)
    max_attempts: int = _setting(
        5,
        description="a photo whose claim expired after this many attempts ends `failed` instead of being claimed again",
        ge=1,
        le=100,
    )

    # Leases (see the guide's Leases): renewed every heartbeat while the run works on the photo,
    # taken back by anyone once older than the lease, whatever the run record says.
    claim_lease_seconds: int = _setting(
        120,
        description="a `processing` claim not renewed for this long is expired and taken back "
        "(see [Leases](#leases-crashed-and-killed-runs))",
        ge=10,
        le=7 * DAY,
    )
    claim_heartbeat_seconds: int = _setting(
        30,
        description="how often a run renews the claims it holds; must be at most half the lease",
        shown_default="30, or a quarter of the lease if less",
        ge=1,
        le=3600,
    )
    # SigV4 presigned URLs live at most 7 days.
    presign_expires_seconds: int = _setting(900, description="lifetime of presigned PUT URLs", ge=10, le=7 * DAY)

    # Reconciliation (see the guide's Reconciliation).
    missing_grace_seconds: int = _setting(
        900, description='a missing original younger than this is "not arrived yet", never "lost"', ge=0, le=30 * DAY
    )
    orphan_grace_seconds: int = _setting(
        300,
        description="a raw object without a row younger than this may still be getting its row: reconciliation leaves it alone",
        ge=0,
        le=30 * DAY,
    )
    missing_retention_days: int = _setting(30, description="a `missing` row older than this is purged", ge=1, le=3650)
    reconcile_cron: str = _setting(
        "0 * * * *", description="schedule of `reconcile_storage`", accepted="five-field cron expression"
    )
    reconcile_max_change_fraction: float = _setting(
        0.2,
        description="a plan that would flag or delete more than this share of an album's (or the whole table's) "
        "rows or objects is refused",
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
    )
    reconcile_min_changes: int = _setting(
        10,
        description="a plan with at most this many destructive changes passes whatever their share",
        ge=0,
        le=10_000_000,
    )
    reconcile_rerender_limit: int = _setting(
        500,
        description="completed photos rendered again per run by reconciliation (renditions vanished, original "
        "replaced, or a duplicate whose photo is gone or changed)",
        ge=0,
        le=1_000_000,
    )

    # The trash (see the guide's Trash and erase).
    trash_retention_days: int = _setting(
        30,
        description="a photo or album in the trash longer than this (from its trash time in the table) is erased "
        "by `empty_trash`; until then it can be restored",
        ge=1,
        le=3650,
    )
    empty_trash_cron: str = _setting(
        "30 3 * * *", description="schedule of `empty_trash` (daily by default)", accepted="five-field cron expression"
    )
    empty_trash_max_fraction: float = _setting(
        0.1,
        description="an `empty_trash` plan that would erase more than this share of the photo table is refused",
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
    )
    empty_trash_min_erases: int = _setting(
        100,
        description="an `empty_trash` plan erasing at most this many photos passes whatever their share",
        ge=0,
        le=10_000_000,
    )

    # Sensors: the safety net behind the fast path (`photo-pipeline arrived`).
    sensor_interval_seconds: int = _setting(
        10,
        description="`raw_object_sensor` runs this often, `pending_photo_sensor` twice as often (never under 5 s); "
        "the fast path (see [Latency](#latency)) does not wait for them",
        ge=1,
        le=DAY,
    )
    sensor_max_keys_per_tick: int = _setting(
        5000,
        description="raw keys one `raw_object_sensor` tick lists at most; its cursor carries on at the next tick",
        ge=1,
        le=1_000_000,
    )

    # The HTTP API (`photo-pipeline serve`; see the guide's The HTTP API).
    api_token: SecretStr | None = _setting(
        None,
        description="bearer token the API's clients send (`Authorization: Bearer …`); a secret: never shown, "
        "logged or echoed; generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`",
        shown_default="unset: `serve` refuses to start",
        accepted=f"{MIN_API_TOKEN_LENGTH}+ printable ASCII characters, no spaces",
    )
    api_allowed_origins: tuple[str, ...] = _setting(
        (),
        description="origins of the site's pages that call the API and PUT to the bucket from browsers (CORS); "
        "`doctor` checks the bucket's CORS rule for each",
        shown_default="none: same origin only",
        accepted="comma-separated `scheme://host[:port]`",
    )
    api_max_files: int = _setting(100, description="files one upload request may declare", ge=1, le=10_000)
    api_max_request_kb: int = _setting(
        256, description="largest request body the API reads (JSON); larger ones are refused with 413", ge=1, le=65_536
    )
    api_view_url_seconds: int = _setting(
        300,
        description="lifetime of the thumbnail, preview and responsive-size URLs `GET /api/albums/{id}` hands out",
        ge=10,
        le=7 * DAY,
    )
    api_public_url: str | None = _setting(
        None,
        description="URL browsers reach the API at (behind a proxy: the proxy's, with any path prefix); the embedded "
        "mode's upload and rendition URLs (`/api/local-objects/…`) are built on it, never on a request's `Host` header",
        shown_default="`http://<serve --host>:<--port>`; required with the folder store when `--host` is 0.0.0.0 or ::",
        accepted="http(s) URL",
    )
    api_bucket_timeout_seconds: int = _setting(
        10,
        description="how long the API waits for each answer of the bucket (`complete`'s HEAD, the album check's listing), "
        "two attempts at most: past it the request answers 503 naming the bucket and the timeout. `/healthz` has "
        "its own 2 s",
        ge=1,
        le=300,
    )

    # Alerts and metrics (see the guide's Alerts and metrics).
    alert_urls: SecretStr | None = _setting(
        None,
        description="where alerts go: one or more Apprise URLs (`slack://…`, `mailtos://…`, `json://…`), separated by "
        "spaces or commas; secrets: shown as scheme and host only; set, the alert sensors start on their own",
        shown_default="unset: no alerts (the alert sensors stay stopped)",
        accepted="Apprise URLs",
    )
    dagster_url: str | None = _setting(
        None,
        description="address of the Dagster UI as operators reach it: alerts about a failed run link to "
        "`<PHOTO_DAGSTER_URL>/runs/<run id>`",
        shown_default="unset: alerts name the run id only",
        accepted="http(s) URL",
    )
    alert_repeat_hours: float = _setting(
        4.0,
        description="an alert still active is sent again this often, until it is resolved",
        ge=0.01,
        le=720.0,
        allow_inf_nan=False,
    )
    alert_clear_fraction: float = _setting(
        0.8,
        description="an alert is resolved once its figure is at or below this share of its threshold, so a figure "
        "hovering at the threshold does not alert again and again",
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
    )
    alert_failure_rate: float = _setting(
        0.1,
        description="alert when more than this share of the photos finished in the last hour failed",
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
    )
    alert_failure_rate_min_photos: int = _setting(
        10,
        description="the failure rate is judged only over at least this many photos finished in the hour "
        "(1 failure of 2 photos is no outage)",
        ge=1,
        le=1_000_000,
    )
    alert_pending_age_minutes: int = _setting(
        60, description="alert when the oldest pending photo was uploaded longer ago than this", ge=1, le=43_200
    )
    alert_expired_claims: int = _setting(
        0,
        description="alert when more photos than this are `processing` under an expired claim (stuck: their run died)",
        ge=0,
        le=10_000_000,
    )
    alert_orphan_objects: int = _setting(
        100,
        description="alert when the latest reconciliation plan found more objects without a row than this",
        ge=0,
        le=10_000_000,
    )
    alert_missing_rows: int = _setting(
        10,
        description="alert when the latest reconciliation plan found more rows without their original than this",
        ge=0,
        le=10_000_000,
    )
    metrics_token: SecretStr | None = _setting(
        None,
        description="bearer token Prometheus sends to `GET /metrics` on `photo-pipeline serve` (its own: not "
        "`PHOTO_API_TOKEN`, which can upload and delete); a secret",
        shown_default="unset: `/metrics` answers 404",
        accepted=f"{MIN_API_TOKEN_LENGTH}+ printable ASCII characters, no spaces",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only the arguments: never os.environ, a .env file or a secrets folder behind the
        # caller's back (tests pass their own environment), should anyone call the class itself.
        return (init_settings,)

    @classmethod
    def variable(cls, field_name: str) -> str:
        return PREFIX + field_name.upper()

    @classmethod
    def read(cls, env: Mapping[str, str]) -> EnvironmentSettings:
        """The declared variables from `env`; a bad value raises one SettingsError naming it, and so
        does a PHOTO_ variable that is no setting (a typo would otherwise leave the default on)."""
        _check_names(env)
        try:
            # Validated as they are: BaseSettings.__init__ would also build the default sources
            # (parsing os.environ) only for settings_customise_sources to drop them.
            return cls.model_validate(_MappingSource(cls, env)())
        except ValidationError as error:
            # `from None`: the ValidationError carries the raw input, which may be a password.
            raise _settings_error(error, env) from None

    @property
    def heartbeat_seconds(self) -> int:
        """The heartbeat asked for; by default capped at a quarter of the lease, so a short lease
        still gets several renewals."""
        if "claim_heartbeat_seconds" in self.model_fields_set:
            return self.claim_heartbeat_seconds
        return min(self.claim_heartbeat_seconds, self.claim_lease_seconds // 4)

    @field_validator("format", "watermark_position", mode="before")
    @classmethod
    def _normalise_choice(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        return value.strip().upper() if info.field_name == "format" else value.strip().lower()

    @field_validator("watermark_text")
    @classmethod
    def _empty_text_is_no_text(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("database_url")
    @classmethod
    def _sqlalchemy_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            make_url(value.strip())
        except ArgumentError:
            # Never echo the value: it carries the password.
            raise PydanticCustomError(
                "setting", "is not a SQLAlchemy URL (dialect+driver://user:password@host/db)"
            ) from None
        return value.strip()

    @field_validator("public_endpoint_url", "api_public_url", "dagster_url")
    @classmethod
    def _http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # Never echo the value: it may carry credentials.
            raise PydanticCustomError("setting", "must be an http(s) URL with a host name")
        if info.field_name == "api_public_url":
            if parts.username is not None or parts.query or parts.fragment:
                raise PydanticCustomError("setting", "must be a base URL: no user:password@, query or fragment")
            # URLs are built by appending /api/…: one slash, whatever was typed.
            return value.strip().rstrip("/")
        return value.strip()

    @field_validator("api_token", "metrics_token")
    @classmethod
    def _usable_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        token = value.get_secret_value().strip()
        # Never echo the value: it is the secret itself.
        if len(token) < MIN_API_TOKEN_LENGTH:
            raise PydanticCustomError(
                "setting", "must be at least {length} characters long", {"length": MIN_API_TOKEN_LENGTH}
            )
        if not all(33 <= ord(character) <= 126 for character in token):
            raise PydanticCustomError("setting", "must be printable ASCII without spaces (it travels in an HTTP header)")
        return SecretStr(token)

    @field_validator("alert_urls")
    @classmethod
    def _alert_urls(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        urls = split_alert_urls(value.get_secret_value())
        if not urls:
            return None
        for position, url in enumerate(urls, start=1):
            if not _ALERT_URL.match(url):
                # Never echo the value: it carries tokens and passwords.
                raise PydanticCustomError(
                    "setting", "destination {position} is not a URL (scheme://...)", {"position": position}
                )
        return SecretStr(" ".join(urls))

    @field_validator("rendition_sizes", mode="before")
    @classmethod
    def _sizes(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            sizes = tuple(sorted({int(item) for item in value.split(",") if item.strip()}))
        except ValueError:
            raise PydanticCustomError("setting", "must be comma-separated whole pixel sizes, got {value}", {"value": repr(value)}) from None
        if any(not 16 <= size <= 20_000 for size in sizes):
            raise PydanticCustomError("setting", "sizes must be between 16 and 20000 pixels, got {value}", {"value": repr(value)})
        if len(sizes) > MAX_SIZES:
            raise PydanticCustomError(
                "setting", "may list at most {most} sizes, got {count}", {"most": MAX_SIZES, "count": len(sizes)}
            )
        return sizes

    @field_validator("rendition_formats", mode="before")
    @classmethod
    def _formats(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return tuple(dict.fromkeys(item.strip().upper() for item in value.split(",") if item.strip()))

    @field_validator("api_allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return tuple(normalise_origin(item) for item in value.split(",") if item.strip())

    @field_validator("background")
    @classmethod
    def _colour(cls, value: str) -> str:
        try:
            ImageColor.getrgb(value.strip())
        except ValueError:
            raise PydanticCustomError(
                "setting", "must be a colour (#rrggbb or a name), got {value}", {"value": repr(value)}
            ) from None
        return value.strip()

    @field_validator("reconcile_cron", "empty_trash_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
            raise PydanticCustomError(
                "setting",
                "must be a five-field cron expression such as '0 * * * *', got {value}",
                {"value": repr(value.strip())},
            )
        return value.strip()

    @model_validator(mode="after")
    def _heartbeat_fits_twice_in_the_lease(self) -> EnvironmentSettings:
        heartbeat, lease = self.heartbeat_seconds, self.claim_lease_seconds
        if heartbeat * 2 > lease:
            raise PydanticCustomError(
                "setting",
                "PHOTO_CLAIM_HEARTBEAT_SECONDS ({heartbeat}) must be at most half of PHOTO_CLAIM_LEASE_SECONDS "
                "({lease}), or a live claim could expire between two renewals",
                {"heartbeat": heartbeat, "lease": lease},
            )
        return self


def _check_names(env: Mapping[str, str]) -> None:
    declared = {EnvironmentSettings.variable(name) for name in EnvironmentSettings.model_fields}
    for variable in sorted(env):
        if not variable.startswith(PREFIX) or variable in declared or variable.startswith(FOREIGN_PREFIXES):
            continue
        if variable in RENAMED:
            raise SettingsError(f"{variable} was renamed {RENAMED[variable]}")
        close = difflib.get_close_matches(variable, sorted(declared), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise SettingsError(f"{variable} is not a setting{hint}; the settings are listed in docs/operations.md#configuration")


class _MappingSource(PydanticBaseSettingsSource):
    """The declared variables found in one mapping (the environment `from_env` was given).

    Names are matched exactly, upper case, as on Linux. A value that is empty or blank counts as
    unset (the default applies), except where the declaration says empty means something.
    """

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raw = self._env.get(EnvironmentSettings.variable(field_name))
        if raw is not None and not raw.strip() and not _extra(field).get("empty_is_a_value"):
            raw = None
        return raw, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, info in self.settings_cls.model_fields.items():
            raw, key, _ = self.get_field_value(info, name)
            if raw is not None:
                values[key] = raw
        return values


def _extra(info: FieldInfo) -> dict[str, Any]:
    return info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}


# The declared defaults (from an empty environment), so that the dataclasses below repeat no value.
_DECLARED = EnvironmentSettings.read({})


# Names of the variables, so that Dagster's EnvVar and the docs use the very same strings.
ENV_DATABASE_URL = EnvironmentSettings.variable("database_url")
ENV_HOME = EnvironmentSettings.variable("pipeline_home")
ENV_BUCKET = EnvironmentSettings.variable("bucket")
ENV_PUBLIC_ENDPOINT_URL = EnvironmentSettings.variable("public_endpoint_url")
ENV_API_TOKEN = EnvironmentSettings.variable("api_token")
ENV_API_ALLOWED_ORIGINS = EnvironmentSettings.variable("api_allowed_origins")
ENV_API_PUBLIC_URL = EnvironmentSettings.variable("api_public_url")
ENV_ALERT_URLS = EnvironmentSettings.variable("alert_urls")
ENV_METRICS_TOKEN = EnvironmentSettings.variable("metrics_token")


# --- What a bad value reads as: one sentence naming the variable, never pydantic's report. ---

_WHOLE_NUMBER_ERRORS = {"int_parsing", "int_from_float", "int_type"}
_NUMBER_ERRORS = {"float_parsing", "float_type"}
_RANGE_ERRORS = {"greater_than_equal", "less_than_equal", "greater_than", "less_than", "finite_number"}


def _settings_error(error: ValidationError, env: Mapping[str, str]) -> SettingsError:
    # The first problem in declaration order, as the hand-written parser reported it: one clear
    # line for the operator, who fixes it and runs again.
    first = error.errors(include_url=False, include_input=False)[0]
    return SettingsError(_explain(first, env))


def _explain(detail: ErrorDetails, env: Mapping[str, str]) -> str:
    if not detail["loc"]:
        return detail["msg"]  # a cross-field check: its message names its variables
    name = str(detail["loc"][0])
    variable = EnvironmentSettings.variable(name)
    raw = env.get(variable, "")
    kind = detail["type"]
    if kind in _WHOLE_NUMBER_ERRORS:
        return f"{variable} must be a whole number, got {raw!r}"
    if kind in _NUMBER_ERRORS:
        return f"{variable} must be a number, got {raw!r}"
    if kind in _RANGE_ERRORS:
        low, high = _bounds(name)
        return f"{variable} must be between {_number(low)} and {_number(high)}, got {_as_given(raw)}"
    if kind == "literal_error":
        return f"{variable} must be one of {', '.join(_choices(name))}, got {raw!r}"
    return f"{variable} {detail['msg']}"  # our own validators' messages read on from the name


def _bounds(name: str) -> tuple[Any, Any]:
    low = high = None
    for constraint in EnvironmentSettings.model_fields[name].metadata:
        low = getattr(constraint, "ge", low)
        high = getattr(constraint, "le", high)
    return low, high


def _choices(name: str) -> tuple[str, ...]:
    return get_args(EnvironmentSettings.model_fields[name].annotation)


def _number(value: Any) -> str:
    # 2000000000, not 2e+09; 0.001 and 1, not 0.0010 and 1.0.
    return str(value) if isinstance(value, int) else f"{value:g}"


def _as_given(raw: str) -> str:
    """A number out of range as the operator wrote it (a whole number as parsed: 007 -> 7)."""
    try:
        return str(int(raw))
    except ValueError:
        return raw.strip()


# --- The values the rest of the code receives. ---


@dataclass(frozen=True)
class RenderSettings:
    preview_long_side: int = _DECLARED.preview_size
    thumb_long_side: int = _DECLARED.thumb_size
    quality: int = _DECLARED.quality
    avif_quality: int = _DECLARED.avif_quality
    format: str = _DECLARED.format  # or "WEBP"
    watermark_text: str | None = _DECLARED.watermark_text
    watermark_logo_path: Path | None = _DECLARED.watermark_logo
    watermark_opacity: float = _DECLARED.watermark_opacity
    watermark_position: str = _DECLARED.watermark_position
    # Height of the watermark as a share of the image's shorter side.
    watermark_scale: float = _DECLARED.watermark_scale
    background: str = _DECLARED.background
    max_pixels: int = _DECLARED.max_pixels
    store_gps: bool = _DECLARED.store_gps
    sizes: tuple[int, ...] = _DECLARED.rendition_sizes
    extra_formats: tuple[str, ...] = _DECLARED.rendition_formats


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go and when they start; what each value means is on its declaration."""

    # Secrets: kept out of repr (and so out of tracebacks' locals and logs).
    urls: tuple[SecretStr, ...] = field(default=(), repr=False)
    dagster_url: str | None = _DECLARED.dagster_url
    repeat_hours: float = _DECLARED.alert_repeat_hours
    clear_fraction: float = _DECLARED.alert_clear_fraction
    failure_rate: float = _DECLARED.alert_failure_rate
    failure_rate_min_photos: int = _DECLARED.alert_failure_rate_min_photos
    pending_age_minutes: int = _DECLARED.alert_pending_age_minutes
    expired_claims: int = _DECLARED.alert_expired_claims
    orphan_objects: int = _DECLARED.alert_orphan_objects
    missing_rows: int = _DECLARED.alert_missing_rows


@dataclass(frozen=True)
class Settings:
    """What the code receives. `from_env` checks every value; constructed directly (as tests do),
    nothing is checked. What each value means is on its declaration in `EnvironmentSettings`."""

    home: Path = _DECLARED.pipeline_home
    database_url: str = ""
    bucket: str | None = _DECLARED.bucket
    public_endpoint_url: str | None = _DECLARED.public_endpoint_url
    render: RenderSettings = field(default_factory=RenderSettings)
    missing_grace_seconds: int = _DECLARED.missing_grace_seconds
    orphan_grace_seconds: int = _DECLARED.orphan_grace_seconds
    claim_lease_seconds: int = _DECLARED.claim_lease_seconds
    claim_heartbeat_seconds: int = _DECLARED.claim_heartbeat_seconds
    missing_retention_days: int = _DECLARED.missing_retention_days
    max_attempts: int = _DECLARED.max_attempts
    presign_expires_seconds: int = _DECLARED.presign_expires_seconds
    batch_size: int = _DECLARED.batch_size
    max_photos_per_run: int = _DECLARED.max_photos_per_run
    workers: int = field(default_factory=default_workers)
    io_threads: int = _DECLARED.io_threads
    prefetch_mb: int = _DECLARED.prefetch_mb
    memory_budget_mb: int = _DECLARED.memory_budget_mb
    max_original_mb: int = _DECLARED.max_original_mb
    sensor_interval_seconds: int = _DECLARED.sensor_interval_seconds
    sensor_max_keys_per_tick: int = _DECLARED.sensor_max_keys_per_tick
    reconcile_max_change_fraction: float = _DECLARED.reconcile_max_change_fraction
    reconcile_min_changes: int = _DECLARED.reconcile_min_changes
    reconcile_cron: str = _DECLARED.reconcile_cron
    reconcile_rerender_limit: int = _DECLARED.reconcile_rerender_limit
    trash_retention_days: int = _DECLARED.trash_retention_days
    empty_trash_cron: str = _DECLARED.empty_trash_cron
    empty_trash_max_fraction: float = _DECLARED.empty_trash_max_fraction
    empty_trash_min_erases: int = _DECLARED.empty_trash_min_erases
    # A secret: kept out of repr (and so out of tracebacks' locals and logs) twice over.
    api_token: SecretStr | None = field(default=_DECLARED.api_token, repr=False)
    api_allowed_origins: tuple[str, ...] = _DECLARED.api_allowed_origins
    api_max_files: int = _DECLARED.api_max_files
    api_max_request_kb: int = _DECLARED.api_max_request_kb
    api_view_url_seconds: int = _DECLARED.api_view_url_seconds
    api_public_url: str | None = _DECLARED.api_public_url
    api_bucket_timeout_seconds: int = _DECLARED.api_bucket_timeout_seconds
    alerts: AlertSettings = field(default_factory=AlertSettings)
    metrics_token: SecretStr | None = field(default=_DECLARED.metrics_token, repr=False)

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

    @property
    def api_max_request_bytes(self) -> int:
        return self.api_max_request_kb * 1024

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from the environment, every value checked here: a bad one raises one
        SettingsError naming the variable, before anything has been touched."""
        env = os.environ if environ is None else environ
        return _settings_from(EnvironmentSettings.read(env))


def _settings_from(declared: EnvironmentSettings) -> Settings:
    """The checked variables as the dataclasses the code receives, derived defaults filled in."""
    home = declared.pipeline_home.expanduser().absolute()
    return Settings(
        home=home,
        database_url=declared.database_url or default_database_url(home),
        bucket=declared.bucket,
        public_endpoint_url=declared.public_endpoint_url,
        render=_render_settings_from(declared),
        missing_grace_seconds=declared.missing_grace_seconds,
        orphan_grace_seconds=declared.orphan_grace_seconds,
        claim_lease_seconds=declared.claim_lease_seconds,
        claim_heartbeat_seconds=declared.heartbeat_seconds,
        missing_retention_days=declared.missing_retention_days,
        max_attempts=declared.max_attempts,
        presign_expires_seconds=declared.presign_expires_seconds,
        batch_size=declared.batch_size,
        max_photos_per_run=declared.max_photos_per_run,
        workers=declared.workers,
        io_threads=declared.io_threads,
        prefetch_mb=declared.prefetch_mb,
        memory_budget_mb=declared.memory_budget_mb,
        max_original_mb=declared.max_original_mb,
        sensor_interval_seconds=declared.sensor_interval_seconds,
        sensor_max_keys_per_tick=declared.sensor_max_keys_per_tick,
        reconcile_max_change_fraction=declared.reconcile_max_change_fraction,
        reconcile_min_changes=declared.reconcile_min_changes,
        reconcile_cron=declared.reconcile_cron,
        reconcile_rerender_limit=declared.reconcile_rerender_limit,
        trash_retention_days=declared.trash_retention_days,
        empty_trash_cron=declared.empty_trash_cron,
        empty_trash_max_fraction=declared.empty_trash_max_fraction,
        empty_trash_min_erases=declared.empty_trash_min_erases,
        api_token=declared.api_token,
        api_allowed_origins=declared.api_allowed_origins,
        api_max_files=declared.api_max_files,
        api_max_request_kb=declared.api_max_request_kb,
        api_view_url_seconds=declared.api_view_url_seconds,
        api_public_url=declared.api_public_url,
        api_bucket_timeout_seconds=declared.api_bucket_timeout_seconds,
        alerts=_alert_settings_from(declared),
        metrics_token=declared.metrics_token,
    )


def _alert_settings_from(declared: EnvironmentSettings) -> AlertSettings:
    urls = split_alert_urls(declared.alert_urls.get_secret_value()) if declared.alert_urls is not None else ()
    return AlertSettings(
        urls=tuple(SecretStr(url) for url in urls),
        dagster_url=declared.dagster_url.rstrip("/") if declared.dagster_url else None,
        repeat_hours=declared.alert_repeat_hours,
        clear_fraction=declared.alert_clear_fraction,
        failure_rate=declared.alert_failure_rate,
        failure_rate_min_photos=declared.alert_failure_rate_min_photos,
        pending_age_minutes=declared.alert_pending_age_minutes,
        expired_claims=declared.alert_expired_claims,
        orphan_objects=declared.alert_orphan_objects,
        missing_rows=declared.alert_missing_rows,
    )


def _render_settings_from(declared: EnvironmentSettings) -> RenderSettings:
    logo = declared.watermark_logo
    return RenderSettings(
        preview_long_side=declared.preview_size,
        thumb_long_side=declared.thumb_size,
        quality=declared.quality,
        avif_quality=declared.avif_quality,
        format=declared.format,
        watermark_text=declared.watermark_text,
        watermark_logo_path=logo.expanduser() if logo is not None else None,
        watermark_opacity=declared.watermark_opacity,
        watermark_position=declared.watermark_position,
        watermark_scale=declared.watermark_scale,
        background=declared.background,
        max_pixels=declared.max_pixels,
        store_gps=declared.store_gps,
        sizes=declared.rendition_sizes,
        extra_formats=declared.rendition_formats,
    )


def default_database_url(home: Path) -> str:
    return f"sqlite:///{(home / 'photos.db').absolute()}"


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


# --- The operations guide's table, generated from the declarations. ---


def settings_reference_markdown() -> str:
    """The Configuration table of docs/operations.md: one row per declared variable, in order."""
    rows = [
        f"<!-- generated from photo_pipeline/settings.py; edit the declarations there, then run `{REGENERATE}` -->",
        "| variable | default | accepted | meaning |",
        "|---|---|---|---|",
    ]
    for name, info in EnvironmentSettings.model_fields.items():
        cells = (f"`{EnvironmentSettings.variable(name)}`", _shown_default(info), _accepted(name, info), info.description or "")
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows) + "\n"


def _shown_default(info: FieldInfo) -> str:
    shown = _extra(info).get("shown_default")
    if shown is not None:
        return str(shown)
    default = info.get_default(call_default_factory=False)
    if default is None:
        return "unset"
    if isinstance(default, bool | int):
        return str(default)
    if isinstance(default, float):
        return f"{default:g}"
    return f"`{default}`"


def _accepted(name: str, info: FieldInfo) -> str:
    accepted = _extra(info).get("accepted")
    if accepted is not None:
        return str(accepted)
    choices = _choices(name)
    if choices:
        return ", ".join(f"`{choice}`" for choice in choices)
    low, high = _bounds(name)
    kind = "whole number" if info.annotation is int else "number"
    return f"{kind}, {_number(low)} to {_number(high)}"


def _cell(text: str) -> str:
    # A pipe would end the cell early.
    return text.replace("|", "\\|").replace("\n", " ")


def replace_settings_table(document: str) -> str:
    """`document` with the block between the settings-table markers regenerated."""
    start = document.find(TABLE_START)
    end = document.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"no {TABLE_START} ... {TABLE_END} block to regenerate")
    head = document[: start + len(TABLE_START)]
    return f"{head}\n{settings_reference_markdown()}{document[end:]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m photo_pipeline.settings", description="The PHOTO_* variables, as the operations guide lists them."
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--markdown", action="store_true", help="print the Configuration table")
    action.add_argument(
        "--update-docs", nargs="?", const=DOCS_PATH, type=Path, metavar="PATH", help=f"rewrite the table in PATH ({DOCS_PATH})"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(settings_reference_markdown())
        return 0
    path: Path = args.update_docs
    before = path.read_text(encoding="utf-8")
    after = replace_settings_table(before)
    if after != before:
        path.write_text(after, encoding="utf-8")
    print(f"{path}: settings table {'rewritten' if after != before else 'already up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
