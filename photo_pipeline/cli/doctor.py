"""`photo-pipeline doctor`: is this deployment wired correctly? Each check says what it found."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

import requests
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy.exc import SQLAlchemyError

from photo_pipeline.photos.database import create_engine_for, current_revision, head_revision
from photo_pipeline.photos.errors import describe_database_error
from photo_pipeline.photos.permissions import REQUIRED_PRIVILEGES, WritePermission, check_write_permission
from photo_pipeline.redaction import redact, s3_error_summary, url_for_display
from photo_pipeline.settings import Settings, SettingsError
from photo_pipeline.storage import (
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    S3Timeouts,
    StorageAccessDenied,
    StorageError,
    build_object_store,
)

Level = Literal["ok", "warn", "fail"]
# Probe objects live here: reconciliation looks only under raw/ and processed/, so one left behind
# by a refused DELETE is never adopted as a photo.
PROBE_PREFIX = "doctor/"
# An operator waits at the terminal: each call to the bucket is bounded (no three-minute retries).
DOCTOR_S3_TIMEOUTS = S3Timeouts(connect=5, read=15, attempts=2)


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    detail: str


def check_database(settings: Settings) -> Check:
    name = f"database {settings.database_url_for_display()}"
    try:
        current = current_revision(settings.database_url)
    except SQLAlchemyError as exc:
        return Check(name, "fail", describe_database_error(exc).for_operator())
    head = head_revision()
    if current != head:
        return Check(name, "fail", f"schema at {current or 'nothing'}, code expects {head}: run `photo-pipeline init-db`")
    return Check(name, "ok", f"reachable, schema at {head}")


def check_database_writes(settings: Settings) -> Check:
    """The user's grants on every table of the schema and a rolled-back write to each table
    (photos/permissions.py): reachable is not enough, the pipeline writes."""
    name = "database writes"
    engine = create_engine_for(settings.database_url)
    try:
        permission = check_write_permission(engine)
    except SQLAlchemyError as exc:
        return Check(name, "fail", describe_database_error(exc).for_operator())
    finally:
        engine.dispose()
    if permission.ok:
        return Check(name, "ok", "a probe row inserted, updated and deleted in every table, rolled back" + _grants_note(permission))
    return Check(name, "fail", _write_problems(permission))


def _grants_note(permission: WritePermission) -> str:
    return f"; {permission.user} holds {', '.join(REQUIRED_PRIVILEGES)} on every table of {permission.schema}" if permission.schema else ""


def _write_problems(permission: WritePermission) -> str:
    """What is missing, and the statement that grants it."""
    problems = [f"{table} lacks {', '.join(privileges)}" for table, privileges in permission.missing_grants.items()]
    # A write that fails where the grants are there has another cause (a read-only standby or file).
    problems += [f"{table}: {why}" for table, why in permission.failed_writes.items() if table not in permission.missing_grants]
    text = f"the database user {permission.user} cannot do what the pipeline does: " + "; ".join(problems)
    if permission.missing_grants and permission.schema:
        text += (
            f". Grant it: GRANT {', '.join(REQUIRED_PRIVILEGES)} ON ALL TABLES IN SCHEMA {permission.schema} TO {permission.user}"
        )
    return text


def check_bucket(store: ObjectStore) -> Check:
    try:
        store.check()
    except StorageError as exc:
        return Check(f"bucket {store.describe()}", "fail", str(exc))
    return Check(f"bucket {store.describe()}", "ok", "reachable")


# What each step of the write probe needs, in S3's (and MinIO's) policy names.
S3_GRANTS = {"write": "s3:PutObject", "read back": "s3:GetObject", "delete": "s3:DeleteObject"}


def check_bucket_writes(store: ObjectStore) -> Check:
    """PUT a small probe object under doctor/, read it back, DELETE it, with the pipeline's own
    credentials (uploads land, renditions are written, cleanup and reconciliation delete), and
    name the grant a refusal means."""
    name = "bucket writes"
    key = f"{PROBE_PREFIX}write-probe-{uuid.uuid4()}.txt"
    body = b"photo-pipeline doctor write probe"
    steps = (
        ("write", lambda: store.put(key, body, "text/plain")),
        ("read back", lambda: _same_bytes(store.get(key), body)),
        ("delete", lambda: store.delete(key)),
    )
    for done, (step, run) in enumerate(steps):
        left = f"; the probe object {key} stays behind (reconciliation ignores {PROBE_PREFIX})" if done else ""
        try:
            run()
        except StorageAccessDenied as exc:
            return Check(name, "fail", f"{_denied(store, step, key)}: {redact(str(exc))}{left}")
        except StorageError as exc:
            return Check(name, "fail", f"{step} of the probe object failed: {redact(str(exc))}{left}")
    if store.exists(key):
        return Check(name, "fail", f"DELETE of {key} answered, yet the object is still there")
    granted = f" ({', '.join(S3_GRANTS.values())} granted)" if isinstance(store, S3ObjectStore) else ""
    return Check(name, "ok", f"wrote, read back and deleted a probe object under {PROBE_PREFIX}{granted}")


def _same_bytes(got: bytes, expected: bytes) -> None:
    if got != expected:
        raise StorageError(f"the probe object came back with {len(got)} bytes instead of its {len(expected)}")


def _denied(store: ObjectStore, step: str, key: str) -> str:
    if isinstance(store, S3ObjectStore):
        return f"the credentials may not {step} objects: grant {S3_GRANTS[step]} on arn:aws:s3:::{store.bucket}/*"
    return f"this user may not {step} files in {store.describe()}: fix the folder's permissions"


def check_presigned_put(store: ObjectStore, settings: Settings) -> Check:
    """A real presigned PUT, signed for the public endpoint, as a browser would send it."""
    key = f"{PROBE_PREFIX}probe-{uuid.uuid4()}.txt"
    body = b"photo-pipeline doctor probe"
    name = "presigned PUT" + (f" via {settings.public_endpoint_url}" if settings.public_endpoint_url else "")
    try:
        upload = store.presign_put(key, "text/plain", 120)
        if isinstance(store, LocalObjectStore):
            store.accept_presigned_put(upload.url, body, upload.headers)
        else:
            response = requests.put(upload.url, data=body, headers=upload.headers, timeout=15)
            if response.status_code not in (200, 201, 204):
                return Check(
                    name, "fail", f"HTTP {response.status_code} from {url_for_display(upload.url)}: {s3_error_summary(response.text)}"
                )
        info = store.head(key)
        store.delete(key)
    except requests.RequestException as exc:
        # requests quotes the signed URL in its message.
        return Check(name, "fail", f"PUT {url_for_display(upload.url)} failed: {redact(str(exc))}")
    except StorageError as exc:
        return Check(name, "fail", redact(str(exc)))
    if info.size != len(body):
        return Check(name, "fail", f"object landed with {info.size} bytes instead of {len(body)}")
    return Check(name, "ok", "uploaded, verified with HEAD and removed")


# Headers a browser sends with a presigned PUT that CORS must allow (Content-Length is set by the
# browser itself and needs no rule).
BROWSER_PUT_HEADERS = frozenset({"content-type", "if-none-match"})


def _allows_browser_put(rule: dict[str, Any]) -> bool:
    methods = {m.upper() for m in rule.get("AllowedMethods", [])}
    headers = {h.lower() for h in rule.get("AllowedHeaders", [])}
    return "PUT" in methods and ("*" in headers or BROWSER_PUT_HEADERS <= headers)


def check_cors(store: ObjectStore) -> Check:
    if not isinstance(store, S3ObjectStore):
        return Check("CORS", "ok", "not needed for the local folder store")
    try:
        rules = store.client.get_bucket_cors(Bucket=store.bucket).get("CORSRules", [])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchCORSConfiguration":
            return Check("CORS", "warn", "the bucket has no CORS rules: browsers cannot PUT to presigned URLs")
        return Check("CORS", "fail", f"cannot read CORS rules: {exc}")
    except BotoCoreError as exc:
        return Check("CORS", "fail", f"cannot read CORS rules: {exc}")
    if any(_allows_browser_put(rule) for rule in rules):
        return Check("CORS", "ok", "a rule allows browser PUTs with the Content-Type and If-None-Match headers")
    return Check(
        "CORS", "warn", "no CORS rule allows PUT with the Content-Type and If-None-Match headers: browser uploads will fail"
    )


# What a browser asks before its presigned PUT (Content-Length needs no permission).
PREFLIGHT_HEADERS = "content-type,if-none-match"


def check_cors_for_origins(store: ObjectStore, settings: Settings) -> list[Check]:
    """For each origin in PHOTO_API_ALLOWED_ORIGINS, the preflight a browser on that origin sends
    before its presigned PUT, sent through the public endpoint: the bucket's CORS rule (or
    MinIO's server-wide setting, or a proxy in front of it) answers exactly as it will answer
    the browser. Without configured origins: whether any rule allows browser PUTs at all."""
    if not isinstance(store, S3ObjectStore):
        return [Check("CORS", "ok", "not needed for the local folder store (the API relays uploads itself)")]
    if not settings.api_allowed_origins:
        generic = check_cors(store)
        hint = "; set PHOTO_API_ALLOWED_ORIGINS to check each site origin with a real preflight"
        return [Check(generic.name, generic.level, generic.detail + hint)]
    try:
        upload = store.presign_put(f"{PROBE_PREFIX}cors-probe-{uuid.uuid4()}.jpg", "image/jpeg", 120)
    except StorageError as exc:
        return [Check("CORS", "fail", f"cannot sign a probe URL: {redact(str(exc))}")]
    return [_preflight(upload.url, origin) for origin in settings.api_allowed_origins]


def _preflight(url: str, origin: str) -> Check:
    name = f"CORS for {origin}"
    where = url_for_display(url)
    try:
        response = requests.options(
            url,
            headers={"Origin": origin, "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": PREFLIGHT_HEADERS},
            timeout=15,
        )
    except requests.RequestException as exc:
        return Check(name, "fail", f"the preflight to {where} got no answer: {redact(str(exc))}")
    problems = preflight_problems(response.headers, origin)
    if not problems:
        return Check(name, "ok", "the bucket lets pages of this origin PUT to presigned URLs (preflight answered)")
    return Check(
        name,
        "fail",
        f"browsers on {origin} cannot upload: the preflight to {where} answered HTTP {response.status_code} "
        f"{'; '.join(problems)}. Add a CORS rule to the bucket allowing the origin {origin}, the methods PUT and GET "
        "and the headers Content-Type and If-None-Match (see docs/operations.md, The HTTP API)",
    )


def preflight_problems(headers: Any, origin: str) -> list[str]:
    """What a preflight answer lacks for a browser's presigned PUT from `origin` (empty: nothing)."""
    allowed_origin = headers.get("Access-Control-Allow-Origin")
    if allowed_origin not in (origin, "*"):
        return ["without allowing this origin (no matching Access-Control-Allow-Origin)"]
    problems = []
    methods = {m.strip().upper() for m in headers.get("Access-Control-Allow-Methods", "").split(",") if m.strip()}
    if "PUT" not in methods and "*" not in methods:
        problems.append(f"allowing the methods {', '.join(sorted(methods)) or 'none'}, not PUT")
    allowed = {h.strip().lower() for h in headers.get("Access-Control-Allow-Headers", "").split(",") if h.strip()}
    missing = [h for h in PREFLIGHT_HEADERS.split(",") if h not in allowed and "*" not in allowed]
    if missing:
        problems.append(f"not allowing the headers {', '.join(missing)}")
    return problems


def check_api(settings: Settings) -> Check:
    """The API's settings, never the token's value."""
    origins = ", ".join(settings.api_allowed_origins) or "none (same-origin pages only)"
    if settings.api_token is None:
        return Check("API", "ok", "PHOTO_API_TOKEN is unset: `photo-pipeline serve` refuses to start (set it where the API runs)")
    return Check("API", "ok", f"PHOTO_API_TOKEN is set (not shown); allowed origins: {origins}")


def check_alerts(settings: Settings) -> list[Check]:
    """A test message to each alert destination (shown masked); none set is a warning: the
    pipeline works, but nobody is told when it stops."""
    from photo_pipeline.alerts.delivery import destinations_from, send
    from photo_pipeline.services.alerts import send_check

    destinations = destinations_from(settings.alerts.urls)
    if not destinations:
        return [Check("alerts", "warn", "PHOTO_ALERT_URLS is not set: nobody is told when the pipeline needs attention")]
    link = "" if settings.alerts.dagster_url else " (PHOTO_DAGSTER_URL unset: alerts name runs without a link)"
    return [
        Check(f"alert destination {r.destination.shown}", "ok" if r.ok else "fail", ("took the test message" + link) if r.ok else f"did not take the test message: {r.error}")
        for r in send_check(destinations, send)
    ]


def check_settings() -> tuple[Check, Settings | None]:
    """Every PHOTO_* variable parsed and range-checked; a bad one fails the doctor by name."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        return Check("settings", "fail", str(exc)), None
    return Check("settings", "ok", "every PHOTO_* variable is valid"), settings


def run_all_checks() -> list[Check]:
    settings_check, settings = check_settings()
    if settings is None:
        return [settings_check]
    return [settings_check, *run_checks(settings)]


def run_checks(settings: Settings) -> list[Check]:
    database = check_database(settings)
    checks = [database]
    if database.level == "ok":
        checks.append(check_database_writes(settings))
    checks.append(check_api(settings))
    checks.extend(check_alerts(settings))
    try:
        store = build_object_store(settings, timeouts=DOCTOR_S3_TIMEOUTS)
    except (StorageError, ValueError) as exc:
        return [*checks, Check("bucket", "fail", str(exc))]
    bucket = check_bucket(store)
    checks.append(bucket)
    if bucket.level == "fail":
        return checks
    checks.append(check_bucket_writes(store))
    checks.append(check_presigned_put(store, settings))
    checks.extend(check_cors_for_origins(store, settings))
    return checks
