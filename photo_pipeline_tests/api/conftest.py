"""Fixtures of the API tests: the API served over real HTTP on loopback, S3 that enforces CORS.

`s3_server` is overridden here: moto's server in its own process with its global CORS switched
off (`MOTO_DISABLE_GLOBAL_CORS`), so the bucket's own CORS rule decides what a browser may do,
as on S3 and MinIO. (The suite's in-process moto answers every preflight with `*`.) Every fixture
of conftest.py that asks for `s3_server` (s3_env, pipeline_env, the daemon) gets this one in
this folder.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
import uvicorn
from botocore.config import Config
from dagster import DagsterInstance
from pydantic import SecretStr

from photo_pipeline.api.app import create_app, public_base_url
from photo_pipeline.instance.run_requests import AlbumRunRequester
from photo_pipeline.photos.database import migrate
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.settings import Settings
from photo_pipeline.storage import S3ObjectStore
from photo_pipeline_tests.conftest import S3_TEST_CREDENTIALS, PostgresServer, S3Server

TOKEN = "test-token-" + "x" * 30
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STARTUP_SECONDS = 30


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(port: int, process: subprocess.Popen[bytes] | None, what: str, seconds: float = STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {seconds} s")


@dataclass(frozen=True)
class S3Process(S3Server):
    """moto's S3 server in a process of its own: a test may stop it (SIGSTOP) like a hung server."""

    process: subprocess.Popen[bytes] | None = None


@contextmanager
def moto_process(log_dir: Path) -> Iterator[S3Process]:
    """moto's S3 server over HTTP, in its own process, enforcing each bucket's CORS rule."""
    port = free_port()
    env = {**os.environ, "MOTO_DISABLE_GLOBAL_CORS": "true"}
    with (log_dir / "moto.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_listening(port, process, "moto's server")
        yield S3Process(endpoint_url=f"http://127.0.0.1:{port}", process=process)
    finally:
        process.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server for the API tests (see the module's docstring)."""
    with moto_process(tmp_path_factory.mktemp("moto")) as server:
        yield server


def s3_client(endpoint_url: str) -> Any:
    """A client with the test credentials given explicitly (no process environment needed)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=S3_TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_TEST_CREDENTIALS["AWS_DEFAULT_REGION"],
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )


def allow_browser_puts(s3: S3Server, bucket: str, origins: list[str]) -> None:
    """The CORS rule the operations guide prescribes for a bucket browsers upload to."""
    s3.client().put_bucket_cors(
        Bucket=bucket,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": origins,
                    "AllowedMethods": ["PUT", "GET"],
                    "AllowedHeaders": ["Content-Type", "If-None-Match"],
                    "ExposeHeaders": ["ETag"],
                    "MaxAgeSeconds": 600,
                }
            ]
        },
    )


@dataclass
class ApiServer:
    """The app, served by uvicorn in a thread of the test process, on a loopback port."""

    base_url: str
    settings: Settings
    repository: PhotoRepository
    store: Any
    server: uvicorn.Server
    thread: threading.Thread
    instance: DagsterInstance | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    sock: socket.socket | None = None

    def stop(self) -> None:
        """Stop serving (uvicorn's graceful shutdown) and free the port: the API goes away."""
        self.server.should_exit = True
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "the API server thread did not stop"
        if self.sock is not None:
            self.sock.close()

    def url(self, path: str) -> str:
        return self.base_url + path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url(path), timeout=30, **{"headers": AUTH, **kwargs})

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.url(path), timeout=60, **{"headers": AUTH, **kwargs})

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.delete(self.url(path), timeout=30, **{"headers": AUTH, **kwargs})


@contextmanager
def serve_in_thread(
    settings: Settings,
    open_run_requester: Callable[[], AbstractContextManager[AlbumRunRequester]],
    *,
    store: Any,
    port: int | None = None,
) -> Iterator[ApiServer]:
    """`store=None`: the app builds its stores from the settings and boto3's environment, as
    `photo-pipeline serve` does."""
    repository = PhotoRepository.from_url(settings.database_url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port or 0))
    bound = sock.getsockname()[1]
    public_url = public_base_url(settings, "127.0.0.1", bound)
    app = create_app(settings, open_run_requester, public_url=public_url, repository=repository, store=store)
    store = app.state.api.store
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="api-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API did not start (see the log above)")
        time.sleep(0.05)
    try:
        yield ApiServer(f"http://127.0.0.1:{bound}", settings, repository, store, server, thread, sock=sock)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        repository.engine.dispose()
        assert not thread.is_alive(), "the API server thread did not stop"


@pytest.fixture(params=["moto", "s3rver"])
def bucket_server(request: pytest.FixtureRequest) -> S3Server:
    """Each S3 server the page's tests run against: moto (which honours If-None-Match) and s3rver
    (which checks the signatures, so a header the page sends differently from the signed one
    fails there as on S3). Both enforce each bucket's CORS rule."""
    return request.getfixturevalue("s3_server" if request.param == "moto" else "s3rver_server")


def api_settings(home: Path, database_url: str, bucket: str | None, **overrides: Any) -> Settings:
    settings = Settings(
        home=home,
        database_url=database_url,
        bucket=bucket,
        api_token=SecretStr(TOKEN),
        orphan_grace_seconds=0,
        reconcile_min_changes=2,
    )
    return replace(settings, **overrides)


def s3_store(s3: S3Server, bucket: str, public_endpoint_url: str | None = None) -> S3ObjectStore:
    client = s3_client(s3.endpoint_url)
    presign = s3_client(public_endpoint_url) if public_endpoint_url else client
    return S3ObjectStore(client, bucket, presign_client=presign)


@pytest.fixture(scope="module")
def photo_database(postgres_server: PostgresServer) -> str:
    url = postgres_server.new_database()
    migrate(url)
    return url


@pytest.fixture(scope="module")
def queued_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterInstance]:
    """A Dagster instance of its own (SQLite in a temporary folder) with the queued run
    coordinator, as in production: runs the API requests wait in its queue (no daemon here)."""
    with DagsterInstance.local_temp(str(tmp_path_factory.mktemp("dagster"))) as instance:
        yield instance


def requester_on(instance: DagsterInstance) -> Callable[[], AbstractContextManager[AlbumRunRequester]]:
    return lambda: AlbumRunRequester(instance)


def new_album() -> uuid.UUID:
    return uuid.uuid4()
