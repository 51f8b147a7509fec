"""The endpoints: each reads and checks its request, calls the services the CLI calls (in a worker
thread: they block on the database and the bucket), and shapes the answer. No photo rule lives
here; services/ holds them.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from photo_pipeline.api import schemas
from photo_pipeline.api.health import Health, HealthProbe
from photo_pipeline.api.http import (
    OUTCOME,
    ApiError,
    json_response,
    parse_id,
    query_choice,
    query_int,
    read_json,
    spool_body,
)
from photo_pipeline.api.metrics import METRICS_PATH, metrics_endpoint
from photo_pipeline.failures import advice
from photo_pipeline.instance.run_requests import RUN_REQUEST_ERRORS, AlbumRunRequester
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.ordering import AlbumOrder
from photo_pipeline.photos.repository import PhotoRecord, PhotoRepository
from photo_pipeline.reconcile.apply import SafetyLimitExceeded
from photo_pipeline.redaction import redact
from photo_pipeline.services import removal
from photo_pipeline.services.album_check import AlbumCheck, check_album
from photo_pipeline.services.albums import AlbumView, PhotoView, album_view
from photo_pipeline.services.upload_requests import (
    DeclaredFile,
    IssuedUpload,
    issue_uploads,
    verify_arrival,
)
from photo_pipeline.services.uploads import UploadPolicy
from photo_pipeline.settings import Settings
from photo_pipeline.storage import (
    LocalObjectStore,
    ObjectStore,
    PresignedDownload,
    StorageError,
)

log = logging.getLogger("photo_pipeline.api")

# Where the embedded folder store's presigned URLs are relayed (see `browser_url`).
LOCAL_OBJECTS_PATH = "/api/local-objects/"
ALBUM_PAGE_DEFAULT, ALBUM_PAGE_MAX = 200, 1000
ALBUM_ORDERS = tuple(order.value for order in AlbumOrder)


class RunRequests:
    """The app's AlbumRunRequester, held open for the app's life (the code location is loaded
    once), used by one request at a time: its workspace context is not shared across threads."""

    def __init__(self, requester: AlbumRunRequester) -> None:
        self._requester = requester
        self._lock = threading.Lock()

    def request(self, album_id: uuid.UUID) -> tuple[str, str | None]:
        """(what became of the request, run id). A failure is not the client's error: the photo
        is pending, and the sensors request its run within their interval (the CLI's rule too)."""
        try:
            with self._lock:
                outcome = self._requester.request(album_id)
        except RUN_REQUEST_ERRORS as exc:
            # The details stay in the server's log: a database error's text is not the client's business.
            log.warning("album %s: the run could not be requested now; the sensors will", album_id, exc_info=True)
            return f"not requested now ({type(exc).__name__}); the sensors pick the photo up", None
        return outcome.decision.value, outcome.run_id

    def forget_album(self, album_id: uuid.UUID) -> str:
        """Delete an erased album's partition. A failure is not the client's error: empty_trash
        deletes the partitions of erased albums it finds."""
        try:
            with self._lock:
                removed = self._requester.forget_album(album_id)
        except RUN_REQUEST_ERRORS as exc:
            log.warning("album %s: its partition could not be deleted now; empty_trash will", album_id, exc_info=True)
            return f"not deleted now ({type(exc).__name__}); empty_trash deletes it"
        return "deleted" if removed else "none"


@dataclass
class ApiContext:
    settings: Settings
    repository: PhotoRepository
    store: ObjectStore  # the request path's: each call to the bucket bounded (PHOTO_API_BUCKET_TIMEOUT_SECONDS)
    health: HealthProbe
    # Where browsers reach this API (PHOTO_API_PUBLIC_URL, or serve's address): the relay's URLs
    # are built on it, never on the request's Host header, which any client can forge.
    public_url: str
    runs: RunRequests | None = None  # set while the app runs (its lifespan)

    @property
    def policy(self) -> UploadPolicy:
        return UploadPolicy.from_settings(self.settings)

    def run_requests(self) -> RunRequests:
        if self.runs is None:
            raise RuntimeError("the API's run requester is not open (the app was not started through its lifespan)")
        return self.runs


def context(request: Request) -> ApiContext:
    return request.app.state.api


async def in_thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await run_in_threadpool(function, *args, **kwargs)


# -- uploads ------------------------------------------------------------------------------------


async def create_uploads(request: Request) -> Response:
    """Register pending rows for the declared files, then hand out presigned PUT URLs."""
    api = context(request)
    album_id = parse_id(request.path_params["album_id"], "album id")
    body = await read_json(request, schemas.UploadsIn, api.settings.api_max_request_bytes)
    files = [DeclaredFile(f.name, f.size, f.content_type, f.photo_id) for f in body.files]
    issued: list[IssuedUpload] = await in_thread(
        issue_uploads,
        api.repository,
        api.store,
        album_id,
        files,
        api.policy,
        max_files=api.settings.api_max_files,
        title=body.title,
    )
    uploads = [
        schemas.UploadOut(
            photo_id=item.photo_id,
            key=item.key,
            filename=item.filename,
            url=browser_url(api, item.presigned.url),
            method="PUT",
            headers=item.presigned.headers,
            expires_at=item.presigned.expires_at,
        )
        for item in issued
    ]
    return json_response(schemas.UploadsOut(uploads=uploads), 201)


async def complete_upload(request: Request) -> Response:
    """Verify the object (HEAD: present, declared size), then request the album's run at once."""
    api = context(request)
    photo_id = parse_id(request.path_params["photo_id"], "photo id")
    row: PhotoRecord = await in_thread(verify_arrival, api.repository, api.store, photo_id)
    processing, run_id = "nothing to do: the photo is past pending", None
    if row.status is PhotoStatus.PENDING:
        processing, run_id = await in_thread(api.run_requests().request, row.album_id)
    return json_response(
        schemas.CompleteOut(
            photo_id=row.id,
            album_id=row.album_id,
            status=row.status.value,
            error=row.error,
            processing=processing,
            run_id=run_id,
            **failure_fields(row),
        )
    )


async def delete_photo(request: Request) -> Response:
    """A pending or failed upload is cleaned up (its tombstone makes reconciliation remove a late
    PUT's object instead of adopting it); any other photo goes to the trash; `?erase=true` erases
    any photo at once (services/removal.py holds the rules)."""
    api = context(request)
    photo_id = parse_id(request.path_params["photo_id"], "photo id")
    erase = _erase_parameter(request)
    removed: removal.PhotoRemoval = await in_thread(removal.delete_photo, api.repository, api.store, photo_id, erase=erase)
    out = schemas.DeletedOut(
        photo_id=photo_id,
        album_id=removed.album_id,
        outcome=removed.outcome.value,
        status=removed.status.value,
        removed_keys=list(removed.removed_keys),
        trashed_at=removed.trashed_at,
        note=removed.note,
        processing=await _request_runs(api, removed.albums_to_render),
    )
    return json_response(out)


async def restore_photo(request: Request) -> Response:
    """Bring a photo back from the trash as it was."""
    api = context(request)
    photo_id = parse_id(request.path_params["photo_id"], "photo id")
    restored: removal.PhotoRestoral = await in_thread(removal.restore_photo, api.repository, photo_id)
    out = schemas.RestoredOut(
        photo_id=photo_id,
        album_id=restored.album_id,
        status=restored.status.value,
        processing=await _request_runs(api, restored.albums_to_render),
    )
    return json_response(out)


def _erase_parameter(request: Request) -> bool:
    return query_choice(request, "erase", ("true", "false"), "false") == "true"


async def _request_runs(api: ApiContext, album_ids: frozenset[uuid.UUID]) -> str | None:
    """The runs of albums with photos back in `pending`, requested now (the sensors would too)."""
    outcomes = []
    for album_id in sorted(album_ids, key=str):
        decision, _run_id = await in_thread(api.run_requests().request, album_id)
        outcomes.append(f"album {album_id}: {decision}")
    return "; ".join(outcomes) or None


def failure_fields(photo: PhotoRecord) -> dict[str, Any]:
    """A failed photo's kind, whether a re-run can help and the hint to show (failures.py); the
    API decides none of it itself."""
    if photo.status is not PhotoStatus.FAILED:
        return {}
    told = advice(photo.failure_kind)
    return {"failure_kind": told.kind.value if told.kind else None, "retryable": told.retryable, "hint": told.hint}


# -- albums -------------------------------------------------------------------------------------


async def get_album(request: Request) -> Response:
    """Counts per status and the album's photos in upload or capture order (`order`), a page at
    a time (`limit`, `after`), or only the photos named in `ids` (a page watching its own uploads)."""
    api = context(request)
    album_id = parse_id(request.path_params["album_id"], "album id")
    limit = query_int(request, "limit", ALBUM_PAGE_DEFAULT, 1, ALBUM_PAGE_MAX)
    after_text = request.query_params.get("after")
    after = parse_id(after_text, "after") if after_text else None
    ids = _ids_parameter(request, api.settings.api_max_files)
    order = AlbumOrder(query_choice(request, "order", ALBUM_ORDERS, AlbumOrder.UPLOAD.value))
    view: AlbumView = await in_thread(
        album_view,
        api.repository,
        api.store,
        album_id,
        limit=limit,
        after=after,
        url_seconds=api.settings.api_view_url_seconds,
        only=ids,
        order=order,
    )
    photos = [
        schemas.PhotoOut(
            photo_id=item.photo.id,
            filename=item.photo.filename,
            status=item.photo.status.value,
            error=item.photo.error,
            **failure_fields(item.photo),
            width=item.photo.width,
            height=item.photo.height,
            created_at=item.photo.created_at,
            completed_at=item.photo.completed_at,
            thumbnail_url=_download_url(api, item.thumbnail),
            preview_url=_download_url(api, item.preview),
            urls_expire_at=item.urls_expire_at,
            thumbhash=item.thumbhash,
            taken_at=item.taken_at,
            duplicate_of=item.duplicate_of,
            renditions=_renditions_out(api, item),
        )
        for item in view.photos
    ]
    return json_response(
        schemas.AlbumOut(
            album_id=album_id,
            counts={status.value: count for status, count in view.counts.items()},
            total=view.total,
            trashed_at=view.trashed_at,
            photos=photos,
            next_after=view.next_after,
        )
    )


async def delete_album(request: Request) -> Response:
    """Trash the album and every photo of it; `?erase=true` erases them all and the album, and
    deletes its Dagster partition."""
    api = context(request)
    album_id = parse_id(request.path_params["album_id"], "album id")
    erase = _erase_parameter(request)
    removed: removal.AlbumRemoval = await in_thread(removal.delete_album, api.repository, api.store, album_id, erase=erase)
    partition = await in_thread(api.run_requests().forget_album, album_id) if removed.erased else None
    out = schemas.AlbumDeletedOut(
        album_id=album_id,
        outcome=removed.outcome.value,
        photos=removed.photos,
        trashed_at=removed.trashed_at,
        removed_objects=removed.removed_objects,
        removed_keys=list(removed.removed_keys),
        note=removed.note,
        partition=partition,
    )
    return json_response(out)


async def restore_album(request: Request) -> Response:
    """Take the album out of the trash with the photos its deletion trashed."""
    api = context(request)
    album_id = parse_id(request.path_params["album_id"], "album id")
    restored: removal.AlbumRestoral = await in_thread(removal.restore_album, api.repository, album_id)
    out = schemas.AlbumRestoredOut(
        album_id=album_id,
        photos=restored.photos,
        restored={status.value: count for status, count in restored.restored.items()},
        processing=await _request_runs(api, restored.albums_to_render),
    )
    return json_response(out)


def _ids_parameter(request: Request, max_ids: int) -> list[uuid.UUID] | None:
    raw = request.query_params.get("ids")
    if raw is None:
        return None
    parts = [part for part in raw.split(",") if part.strip()]
    if len(parts) > max_ids:
        raise ApiError(400, f"ids names {len(parts)} photos; at most {max_ids} (PHOTO_API_MAX_FILES)")
    return [parse_id(part.strip(), "ids") for part in parts]


def _download_url(api: ApiContext, download: PresignedDownload | None) -> str | None:
    return browser_url(api, download.url) if download is not None else None


def _renditions_out(api: ApiContext, item: PhotoView) -> list[schemas.RenditionOut]:
    return [
        schemas.RenditionOut(
            size=sized.file.size,
            format=sized.file.format,
            content_type=sized.content_type,
            width=sized.file.width,
            height=sized.file.height,
            bytes=sized.file.bytes,
            url=browser_url(api, sized.download.url),
        )
        for sized in item.sizes
    ]


async def check_album_endpoint(request: Request) -> Response:
    """The album's reconciliation: a dry-run plan, or applied with {"apply": true} behind the
    safety limit (409 with the plan when it refuses)."""
    api = context(request)
    album_id = parse_id(request.path_params["album_id"], "album id")
    body = await read_json(request, schemas.CheckIn, api.settings.api_max_request_bytes, empty_is=schemas.CheckIn())
    try:
        check: AlbumCheck = await in_thread(check_album, api.repository, api.store, api.settings, album_id, apply=body.apply)
    except SafetyLimitExceeded as exc:
        refused = AlbumCheck(album_id, exc.plan, None)
        message = "the safety limit refuses this plan: " + "; ".join(exc.plan.violations)
        request.scope.setdefault("state", {})[OUTCOME] = message
        return json_response(schemas.CheckRefusedOut(error=message, plan=_check_out(refused, dry_run=False)), 409)
    out = _check_out(check, dry_run=not body.apply)
    if check.report is not None and check.report.albums_to_render:
        processing, _run_id = await in_thread(api.run_requests().request, album_id)
        out = out.model_copy(update={"processing": processing})
    if check.report is not None and not check.report.ok:
        # Applied in part: the other kinds of repair ran; a retry finishes the rest.
        message = f"applied only in part; failed: {check.report.describe_errors()}"
        request.scope.setdefault("state", {})[OUTCOME] = message
        return json_response(out.model_copy(update={"error": message}), 503)
    return json_response(out)


def _check_out(check: AlbumCheck, *, dry_run: bool) -> schemas.CheckOut:
    plan, report = check.plan, check.report
    return schemas.CheckOut(
        album_id=check.album_id,
        dry_run=dry_run,
        taken_at=plan.taken_at,
        rows_seen=plan.rows_seen,
        objects_seen=plan.objects_seen,
        actions=plan.counts(),
        planned=[schemas.PlannedActionOut(**action.as_dict()) for action in plan.actions],
        violations=list(plan.violations),
        applied=dict(report.applied) if report is not None else None,
        deferred=check.deferred or None,
        errors=dict(report.errors) if report is not None and report.errors else None,
    )


# -- health and the page ------------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    """Database and bucket reachable (no token: for load balancers and monitors), answered within
    seconds whatever hangs, on the probes' own threads (see api/health.py)."""
    health: Health = await context(request).health.health()
    states = (("database", health.database), ("bucket", health.bucket))
    out = schemas.HealthOut(
        status="ok" if health.ok else "unavailable",
        database=health.database,
        bucket=health.bucket,
        error=None if health.ok else "; ".join(f"{part}: {state}" for part, state in states if state != "ok"),
    )
    return json_response(out, 200 if health.ok else 503)


UPLOAD_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    # The page talks to this API and PUTs to the bucket, wherever that is; nothing else.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self' http: https:; img-src 'self' http: https: data:; form-action 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}


def upload_page_html() -> str:
    return resources.files("photo_pipeline.api").joinpath("static/upload.html").read_text(encoding="utf-8")


async def upload_page(request: Request) -> Response:
    """The uploader: one static page (plain HTML and JavaScript) that calls this API."""
    return HTMLResponse(request.app.state.upload_page, headers=UPLOAD_PAGE_HEADERS)


# -- the embedded folder store over HTTP --------------------------------------------------------


def browser_url(api: ApiContext, url: str) -> str:
    """A presigned URL a browser can use. The S3 store's are (signed for the public endpoint);
    the folder store's are file:// URLs, relayed through this API (LOCAL_OBJECTS_PATH) at its
    configured public URL, where the store itself checks their signatures as S3 would."""
    parts = urlsplit(url)
    if parts.scheme != "file" or not isinstance(api.store, LocalObjectStore):
        return url
    key = _local_key(api.store, parts.path)
    return f"{api.public_url}{LOCAL_OBJECTS_PATH}{quote(key)}?{parts.query}"


def _local_key(store: LocalObjectStore, path: str) -> str:
    root = store.root.as_posix().rstrip("/") + "/"
    local = unquote(path)
    if not local.startswith(root):
        raise StorageError("the folder store signed a URL outside its folder")
    return local[len(root) :]


def _file_url(store: LocalObjectStore, request: Request) -> str:
    key = request.path_params["key"]
    return f"{(store.root / key).as_uri()}?{request.url.query}"


async def put_local_object(request: Request) -> Response:
    """A presigned PUT into the folder store (embedded mode): the signature in the query string
    authorizes it, as S3's does, so no bearer token is asked for."""
    api = context(request)
    store = api.store
    if not isinstance(store, LocalObjectStore):
        raise ApiError(404, "no such route: objects live in an S3 bucket, PUT to the presigned URL")
    with await spool_body(request, api.settings.max_original_bytes) as body:
        await in_thread(store.accept_presigned_put, _file_url(store, request), body, dict(request.headers))
    return Response(status_code=200)


async def get_local_object(request: Request) -> Response:
    """A presigned GET from the folder store (a thumbnail in an <img>)."""
    api = context(request)
    store = api.store
    if not isinstance(store, LocalObjectStore):
        raise ApiError(404, "no such route: objects live in an S3 bucket")
    key = await in_thread(store.verify_presigned_get, _file_url(store, request))
    info = await in_thread(store.head, key)
    data = await in_thread(store.get, key)
    return Response(data, media_type=info.content_type or "application/octet-stream", headers={"Cache-Control": "private, max-age=60"})


# -- the table: routing and the OpenAPI description from one list --------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Callable[[Request], Any]
    summary: str
    request: type[schemas.BaseModel] | None = None
    # Status -> (description, model of the JSON body or None).
    responses: tuple[tuple[int, str, type[schemas.BaseModel] | None], ...] = ()
    authenticated: bool = True
    listed: bool = True  # in /openapi.json
    # Query parameters: (name, JSON schema, description).
    query: tuple[tuple[str, dict[str, Any], str], ...] = ()


_ERROR = schemas.ErrorOut
_AUTH = ((401, "missing or wrong bearer token", _ERROR),)
_BAD_ID = (400, "an id is not a UUID, or the request is invalid", _ERROR)
_UNAVAILABLE = (503, "the database or the bucket cannot be reached", _ERROR)
_ERASE = (
    (
        "erase",
        {"type": "boolean", "default": False},
        "true: erase at once (row, original, every rendition; an id-only erase record stays), whatever the state; "
        "false (the default): to the trash",
    ),
)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/api/albums/{album_id}/uploads",
        create_uploads,
        "Register pending rows for the files, then hand out presigned PUT URLs (size and type signed in)",
        schemas.UploadsIn,
        (
            (201, "the rows exist; PUT each file to its URL with its headers", schemas.UploadsOut),
            (400, "bad album id, no files, too many files, an empty file, a bad album title or a bad body", _ERROR),
            (409, "a chosen photo_id belongs to another upload, or the album is in the trash (restore it first)", _ERROR),
            (410, "the album, or a chosen photo_id, was erased", _ERROR),
            (413, "a file is over PHOTO_MAX_ORIGINAL_MB, or the body over PHOTO_API_MAX_REQUEST_KB", _ERROR),
            (415, "a file is not an image type we accept", _ERROR),
            *_AUTH,
            _UNAVAILABLE,
        ),
    ),
    Endpoint(
        "POST",
        "/api/photos/{photo_id}/complete",
        complete_upload,
        "Verify the uploaded object (present, declared size) and request its album's run now",
        None,
        (
            (200, "verified (or already past pending): the photo's status and the run request", schemas.CompleteOut),
            _BAD_ID,
            (404, "no such photo", _ERROR),
            (409, "the object is missing or differs from what was declared", _ERROR),
            *_AUTH,
            _UNAVAILABLE,
        ),
    ),
    Endpoint(
        "DELETE",
        "/api/photos/{photo_id}",
        delete_photo,
        "A pending or failed upload: cleaned up (row tombstoned, so a late PUT is removed, never adopted, and its object); "
        "any other photo: to the trash (files kept, restorable). `erase=true`: erased at once, any photo",
        None,
        (
            (200, "cleaned up, trashed (or in the trash already) or erased: see `outcome`", schemas.DeletedOut),
            _BAD_ID,
            (404, "no such photo", _ERROR),
            (410, "the photo was erased", _ERROR),
            *_AUTH,
            _UNAVAILABLE,
        ),
        query=_ERASE,
    ),
    Endpoint(
        "POST",
        "/api/photos/{photo_id}/restore",
        restore_photo,
        "Bring a photo back from the trash as it was (same row, keys and renditions)",
        None,
        (
            (200, "restored", schemas.RestoredOut),
            _BAD_ID,
            (404, "no such photo", _ERROR),
            (409, "the photo is not in the trash, or its album is (restore the album)", _ERROR),
            (410, "the photo was erased", _ERROR),
            *_AUTH,
            _UNAVAILABLE,
        ),
    ),
    Endpoint(
        "DELETE",
        "/api/albums/{album_id}",
        delete_album,
        "Trash the album and every photo of it (uploads into it are refused until it is restored); `erase=true`: "
        "erase them all and the album",
        None,
        (
            (200, "trashed (or in the trash already) or erased: see `outcome`", schemas.AlbumDeletedOut),
            _BAD_ID,
            (404, "no such album", _ERROR),
            (410, "the album was erased", _ERROR),
            *_AUTH,
            _UNAVAILABLE,
        ),
        query=_ERASE,
    ),
    Endpoint(
        "POST",
        "/api/albums/{album_id}/restore",
        restore_album,
        "Take the album out of the trash with the photos its deletion trashed (photos trashed on their own stay)",
        None,
        (
            (200, "restored", schemas.AlbumRestoredOut),
            _BAD_ID,
            (404, "no such album", _ERROR),
            (409, "the album is not in the trash", _ERROR),
            (410, "the album was erased", _ERROR),
            *_AUTH,
            _UNAVAILABLE,
        ),
    ),
    Endpoint(
        "GET",
        "/api/albums/{album_id}",
        get_album,
        "Counts per status and the album's photos in upload or capture order (query: order, limit, after, or ids=a,b,c), "
        "with short-lived URLs of their thumbnail, preview and responsive sizes",
        None,
        (
            (200, "the album (in the trash: `trashed_at` set, no photo listed)", schemas.AlbumOut),
            _BAD_ID,
            (410, "the album was erased", _ERROR),
            *_AUTH,
            _UNAVAILABLE,
        ),
        query=(
            ("limit", {"type": "integer", "minimum": 1, "maximum": ALBUM_PAGE_MAX, "default": ALBUM_PAGE_DEFAULT}, "photos per page"),
            ("after", {"type": "string", "format": "uuid"}, "the previous page's next_after (asked with the same order)"),
            (
                "order",
                {"type": "string", "enum": list(ALBUM_ORDERS), "default": AlbumOrder.UPLOAD.value},
                "upload: in the order the photos were uploaded; taken: in the order they were taken (EXIF local time), "
                "photos without a capture time last in upload order. Pages and ids= lists alike",
            ),
            ("ids", {"type": "string"}, "comma-separated photo ids: only these photos of the album"),
        ),
    ),
    Endpoint(
        "POST",
        "/api/albums/{album_id}/check",
        check_album_endpoint,
        "The album's reconciliation: a dry-run plan, or applied with {\"apply\": true} behind the safety limit",
        schemas.CheckIn,
        (
            (200, "the plan (and what was applied)", schemas.CheckOut),
            _BAD_ID,
            (409, "the safety limit refuses the plan; nothing changed", schemas.CheckRefusedOut),
            *_AUTH,
            _UNAVAILABLE,
        ),
    ),
    Endpoint(
        "GET",
        "/healthz",
        healthz,
        "Database and bucket reachable",
        None,
        ((200, "both reachable", schemas.HealthOut), (503, "one is not", schemas.HealthOut)),
        authenticated=False,
    ),
    Endpoint(
        "GET",
        METRICS_PATH,
        metrics_endpoint,
        "The pipeline's and the API's figures in Prometheus' text format (bearer token: PHOTO_METRICS_TOKEN)",
        None,
        (
            (200, "text/plain; version=0.0.4: the metrics", None),
            (401, "missing or wrong PHOTO_METRICS_TOKEN", _ERROR),
            (404, "PHOTO_METRICS_TOKEN is not set: metrics are off", _ERROR),
            _UNAVAILABLE,
        ),
        authenticated=False,
        # For Prometheus, not the site's clients: described in the operations guide instead.
        listed=False,
    ),
    Endpoint("GET", "/upload", upload_page, "The uploader page", authenticated=False, listed=False),
    Endpoint("PUT", LOCAL_OBJECTS_PATH + "{key:path}", put_local_object, "embedded mode: presigned PUT", authenticated=False, listed=False),
    Endpoint("GET", LOCAL_OBJECTS_PATH + "{key:path}", get_local_object, "embedded mode: presigned GET", authenticated=False, listed=False),
)
