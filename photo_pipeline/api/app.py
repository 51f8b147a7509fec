"""The ASGI app: the endpoint table routed, the HTTP layers around it, the services' errors as
JSON answers, and the run requester held open for the app's life (its lifespan).

`photo-pipeline serve` runs it with uvicorn; tests build it with `create_app` on their own
settings and instance.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from photo_pipeline.api.http import (
    ApiError,
    BearerAuth,
    CatchAll,
    RequestLog,
    error_response,
    json_response,
    response_for,
)
from photo_pipeline.api.metrics import LatestPlan, Metrics, RequestMetrics
from photo_pipeline.api.health import HealthProbe
from photo_pipeline.api.openapi import openapi_document
from photo_pipeline.api.routes import (
    ENDPOINTS,
    LOCAL_OBJECTS_PATH,
    ApiContext,
    RunRequests,
    upload_page_html,
)
from photo_pipeline.defs.health.assets import latest_reconciliation
from photo_pipeline.instance.run_requests import AlbumRunRequester
from photo_pipeline.photos.errors import describe_database_error
from photo_pipeline.photos.repository import (
    CleanupRefused,
    PhotoNotFound,
    PhotoRepository,
)
from photo_pipeline.services.metrics import CachedFigures
from photo_pipeline.services.reachability import Probes
from photo_pipeline.photos.trash import AlbumErased, AlbumInTrash, AlbumNotFound, PhotoErased
from photo_pipeline.services.removal import RestoreRefused
from photo_pipeline.services.upload_requests import ArrivalRefused, UploadConflict
from photo_pipeline.services.uploads import (
    InvalidAlbumTitle,
    UnsupportedUpload,
    UploadRejected,
    UploadTooLarge,
)
from photo_pipeline.settings import ENV_API_PUBLIC_URL, ENV_API_TOKEN, Settings
from photo_pipeline.storage import (
    ObjectNotFound,
    ObjectStore,
    PresignedUploadRejected,
    S3Timeouts,
    StorageError,
    StorageUnavailable,
    UploadTargetExists,
    build_object_store,
)

log = logging.getLogger("photo_pipeline.api")

OpenRunRequester = Callable[[], AbstractContextManager[AlbumRunRequester]]


class ApiNotConfigured(RuntimeError):
    """The API cannot start as configured (no token): it refuses rather than run open."""


def protected(path: str) -> bool:
    """Paths that need the bearer token: the API, except the folder store's relay, whose URLs
    carry their own signatures (as S3's do)."""
    return path.startswith("/api/") and not path.startswith(LOCAL_OBJECTS_PATH)


def require_token(settings: Settings) -> SecretStr:
    if settings.api_token is None:
        raise ApiNotConfigured(
            f"{ENV_API_TOKEN} is not set: the API refuses to start without a bearer token. Generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` and give it to the API and its clients"
        )
    return settings.api_token


# Connecting to the bucket takes milliseconds when it is there: a request waits less for that
# than for an answer (PHOTO_API_BUCKET_TIMEOUT_SECONDS), and tries twice at most.
API_CONNECT_TIMEOUT_SECONDS = 3.0
API_BUCKET_ATTEMPTS = 2
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def api_s3_timeouts(settings: Settings) -> S3Timeouts:
    """The request path's bound on each call to the bucket: no request waits minutes on it."""
    read = float(settings.api_bucket_timeout_seconds)
    return S3Timeouts(connect=min(API_CONNECT_TIMEOUT_SECONDS, read), read=read, attempts=API_BUCKET_ATTEMPTS)


def public_base_url(settings: Settings, host: str, port: int) -> str:
    """Where browsers reach the API: PHOTO_API_PUBLIC_URL, else the address `serve` listens on.
    A wildcard address names no host a browser can use; with the folder store, whose upload URLs
    point at the API, that is a configuration error, not a guess."""
    if settings.api_public_url:
        return settings.api_public_url
    if host in _WILDCARD_HOSTS and settings.bucket is None:
        raise ApiNotConfigured(
            f"{ENV_API_PUBLIC_URL} is not set and serve listens on {host or 'every interface'}: with the folder store "
            f"(no PHOTO_BUCKET) upload URLs point at the API, so set {ENV_API_PUBLIC_URL} to the URL browsers reach it at"
        )
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def create_app(
    settings: Settings,
    open_run_requester: OpenRunRequester,
    *,
    public_url: str,
    repository: PhotoRepository | None = None,
    store: ObjectStore | None = None,
    probes: Probes | None = None,
) -> Starlette:
    """The app on these settings. ApiNotConfigured without PHOTO_API_TOKEN: no open default.

    public_url: where browsers reach the API (`public_base_url`). Without `store`, the bucket's
    client is the request path's, each call bounded (`api_s3_timeouts`). Without `probes`, /healthz
    gets its own connections with short timeouts, on `store` when one is given."""
    token = require_token(settings)
    if probes is None:
        # A caller's own store (tests with explicit credentials) is probed as it is.
        probes = Probes.from_settings(settings, store=store)
    api = ApiContext(
        settings=settings,
        repository=repository if repository is not None else PhotoRepository.from_url(settings.database_url),
        store=store if store is not None else build_object_store(settings, timeouts=api_s3_timeouts(settings)),
        health=HealthProbe(probes),
        public_url=public_url.rstrip("/"),
    )

    latest_plan = LatestPlan()
    metrics = Metrics(CachedFigures(api.repository.engine, settings.claim_lease_seconds, latest_plan), settings.metrics_token)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The code location is loaded once, here, not per request (see instance/run_requests.py).
        with open_run_requester() as requester:
            api.runs = RunRequests(requester)
            latest_plan.read = lambda: latest_reconciliation(requester.instance)
            log.info("API ready: runs are requested on the Dagster instance; objects in %s", api.store.describe())
            try:
                yield
            finally:
                api.runs = None
                latest_plan.read = None
                api.health.close()

    routes = [Route(e.path, e.handler, methods=[e.method], name=e.handler.__name__) for e in ENDPOINTS]
    routes.append(Route("/openapi.json", openapi_endpoint, methods=["GET"], name="openapi"))
    app = Starlette(
        routes=routes,
        middleware=[
            # Outermost first: CORS decorates every answer (401s too), the log sees final statuses.
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.api_allowed_origins),
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["Authorization", "Content-Type"],
                max_age=600,
            ),
            Middleware(RequestLog),
            Middleware(RequestMetrics, metrics=metrics, routes=routes),
            Middleware(BearerAuth, token=token, protected=protected),
            Middleware(CatchAll),
        ],
        exception_handlers=_exception_handlers(),
        lifespan=lifespan,
    )
    app.state.api = api
    app.state.metrics = metrics
    app.state.upload_page = upload_page_html()
    app.state.openapi = openapi_document(ENDPOINTS, version=_version())
    return app


async def openapi_endpoint(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


def _version() -> str:
    try:
        return version("photo_pipeline")
    except PackageNotFoundError:
        return "unknown"


# -- errors as answers ---------------------------------------------------------------------------

# The services' exceptions and the status each means. Their messages are written for the client
# (what failed, for which photo) and carry no secret; lookups go by the exception's class
# hierarchy, so the most specific entry wins.
STATUS_OF: dict[type[Exception], int] = {
    UploadRejected: 400,
    InvalidAlbumTitle: 400,
    UploadTooLarge: 413,
    UnsupportedUpload: 415,
    UploadConflict: 409,
    ArrivalRefused: 409,
    CleanupRefused: 409,
    RestoreRefused: 409,
    AlbumInTrash: 409,
    PhotoNotFound: 404,
    AlbumNotFound: 404,
    PhotoErased: 410,
    AlbumErased: 410,
    ObjectNotFound: 404,
    PresignedUploadRejected: 403,
    UploadTargetExists: 412,
    StorageUnavailable: 503,
    StorageError: 502,
}


def _exception_handlers() -> dict[type[Exception] | int, Callable[..., Response]]:
    handlers: dict[type[Exception] | int, Callable[..., Response]] = {cls: _service_error for cls in STATUS_OF}
    handlers[ApiError] = _api_error
    handlers[HTTPException] = _http_exception
    handlers[SQLAlchemyError] = _database_error
    return handlers


def _status_for(exc: Exception) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 500


def _service_error(request: Request, exc: Exception) -> Response:
    status = _status_for(exc)
    if status >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
    return error_response(request.scope, status, str(exc))


def _api_error(request: Request, exc: ApiError) -> Response:
    return response_for(request.scope, exc)


def _http_exception(request: Request, exc: HTTPException) -> Response:
    # Starlette's own: no route (404), wrong method (405).
    return error_response(request.scope, exc.status_code, str(exc.detail), dict(exc.headers or {}))


def _database_error(request: Request, exc: SQLAlchemyError) -> Response:
    # Never SQLAlchemy's message (the statement and its parameters) nor the driver's (hosts,
    # users): the summary, with the traceback in the server's log.
    log.error("%s %s: database error", request.method, request.url.path, exc_info=exc)
    return error_response(request.scope, 503, describe_database_error(exc).summary)


__all__ = ["ApiNotConfigured", "create_app", "json_response"]
