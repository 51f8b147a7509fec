"""The API's HTTP plumbing, free of any photo rule: the bearer check, the request log, JSON
errors, bounded bodies validated by pydantic.

Order of the layers (outermost first, see app.py): CORS answers preflights and decorates every
answer, 401s included, so a page on an allowed origin can read why it was refused; the request
log sees the final status of everything; the bearer check guards `/api/`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr, ValidationError
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from photo_pipeline.redaction import redact
from photo_pipeline.storage import SPOOL_MEMORY_BYTES

log = logging.getLogger("photo_pipeline.api")

Model = TypeVar("Model", bound=BaseModel)

# What a client may keep of an answer: nothing (presigned URLs are credentials).
NO_STORE = {"Cache-Control": "no-store"}
OUTCOME = "photo_pipeline.outcome"  # key in the request's scope["state"]: why it ended as it did


class ApiError(Exception):
    """An answer other than success, with the sentence the client reads in `{"error": ...}`."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def json_response(payload: BaseModel | dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    content = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
    return JSONResponse(content, status_code=status, headers={**NO_STORE, **(headers or {})})


def error_response(scope: Scope, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """`{"error": message}`, with the message noted for the request log. Every message passes
    through `redact`: a signed URL quoted by a library never reaches a client."""
    cleaned = redact(message)
    scope.setdefault("state", {})[OUTCOME] = cleaned
    return json_response({"error": cleaned}, status, headers)


# -- the bearer token ---------------------------------------------------------------------------


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def token_matches(authorization: str | None, expected: SecretStr) -> bool:
    """Whether an Authorization header carries the expected bearer token. Digests of equal
    length are compared with `hmac.compare_digest`, so the time taken says nothing about how
    much of the token was right, nor about its length."""
    if not authorization:
        return False
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return False
    return hmac.compare_digest(_digest(presented.strip()), _digest(expected.get_secret_value()))


class BearerAuth:
    """401 for requests to protected paths without the right bearer token."""

    def __init__(self, app: ASGIApp, token: SecretStr, protected: Callable[[str], bool]) -> None:
        self.app = app
        self.token = token
        self.protected = protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        authorization = Headers(scope=scope).get("authorization")
        if token_matches(authorization, self.token):
            await self.app(scope, receive, send)
            return
        reason = "wrong bearer token" if authorization else "missing bearer token (Authorization: Bearer <PHOTO_API_TOKEN>)"
        response = error_response(scope, 401, reason, {"WWW-Authenticate": 'Bearer realm="photo_pipeline"'})
        await response(scope, receive, send)


# -- the request log ----------------------------------------------------------------------------


class RequestLog:
    """One line per request: method, path (never the query string: signatures travel there),
    status, duration, client, and the reason of a refusal or failure. Headers are never logged,
    so neither is the token."""

    def __init__(self, app: ASGIApp, logger: logging.Logger = log) -> None:
        self.app = app
        self.logger = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app fails before answering, the server answers 500
        logged = False

        async def send_and_note(message: Message) -> None:
            nonlocal status, logged
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # Before the last bytes leave: a client holding the whole answer finds the line written.
                self._log(scope, status, time.perf_counter() - started)
                logged = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            if not logged:
                self._log(scope, status, time.perf_counter() - started)

    def _log(self, scope: Scope, status: int, seconds: float) -> None:
        client = scope.get("client")
        where = f"{client[0]}" if client else "-"
        outcome = scope.get("state", {}).get(OUTCOME)
        level = logging.INFO if status < 500 else logging.ERROR
        suffix = f": {outcome}" if outcome and status >= 400 else ""
        self.logger.log(
            level, "%s %s -> %d (%.0f ms, %s)%s", scope["method"], scope["path"], status, seconds * 1000, where, suffix
        )


class CatchAll:
    """An unexpected exception becomes a JSON 500 with the exception's class only (its message
    and traceback go to the server's log, redacted), inside the CORS and log layers, so the
    client can read it and the log line has it."""

    def __init__(self, app: ASGIApp, logger: logging.Logger = log) -> None:
        self.app = app
        self.logger = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_note(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception as exc:
            self.logger.error("%s %s: unexpected error", scope["method"], scope["path"], exc_info=exc)
            if started:
                raise  # half an answer is out: only dropping the connection can say it failed
            message = f"internal error ({type(exc).__name__}); the server's log has the details"
            await error_response(scope, 500, message)(scope, receive, send)


# -- request bodies -----------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 beyond `limit` bytes whether or not Content-Length says so
    (it is read in chunks and never held past the limit)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body has {int(declared)} bytes; at most {limit} are accepted (PHOTO_API_MAX_REQUEST_KB)")
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise ApiError(413, f"the request body is over {limit} bytes (PHOTO_API_MAX_REQUEST_KB)")
        chunks.append(chunk)
    return b"".join(chunks)


async def spool_body(request: Request, limit: int) -> tempfile.SpooledTemporaryFile[bytes]:
    """The body in a spooled temporary file (memory up to SPOOL_MEMORY_BYTES, disk beyond),
    rewound; 413 beyond `limit` bytes. The caller closes it (a context manager)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the body has {int(declared)} bytes; at most {limit} are accepted")
    spool: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES, prefix="upload-")  # noqa: SIM115 (the caller closes it)
    try:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise ApiError(413, f"the body is over {limit} bytes")
            spool.write(chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


async def read_json(request: Request, model: type[Model], limit: int, *, empty_is: Model | None = None) -> Model:
    """The body validated as `model`; 400 with every problem named (never the values sent)."""
    body = await read_body(request, limit)
    if not body.strip() and empty_is is not None:
        return empty_is
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise ApiError(400, describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError, limit: int = 5) -> str:
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False)[:limit]:
        where = ".".join(str(part) for part in error["loc"]) or "body"
        problems.append(f"{where}: {error['msg']}")
    more = f" (and {exc.error_count() - limit} more)" if exc.error_count() > limit else ""
    return "invalid request: " + "; ".join(problems) + more


def parse_id(value: str, what: str) -> uuid.UUID:
    """A path parameter as a UUID, or 400 naming it (albums and photos are named by UUID)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        shown = json.dumps(value[:80])
        raise ApiError(400, f"{what} must be a UUID, got {shown}") from None


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}")
    return value


def query_choice(request: Request, name: str, choices: Sequence[str], default: str) -> str:
    """A query parameter that takes one of a few words; 400 naming them all otherwise (an absent
    or empty parameter is the default, as for `query_int`)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        accepted = ", ".join(json.dumps(choice) for choice in choices)
        raise ApiError(400, f"{name} must be one of {accepted}, got {json.dumps(raw[:80])}")
    return raw


def response_for(scope: Scope, exc: ApiError) -> Response:
    return error_response(scope, exc.status, exc.message, exc.headers)
