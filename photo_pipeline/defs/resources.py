"""Dagster resources: the thin shell that hands assets and sensors a repository, a store and the
rendering settings. No rule lives here.
"""

from __future__ import annotations

import logging
import threading
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore.exceptions import BotoCoreError
from botocore.loaders import Loader
from dagster import ConfigurableResource, Definitions, EnvVar, definitions
from dagster_aws.s3 import S3Resource
from pydantic import Field

from photo_pipeline.photos.database import DEFAULT_MAX_CONNECTIONS, connections_per_process, create_engine_for
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.redaction import redact, url_for_display
from photo_pipeline.rendering.render import RenderOptions, render_options_from_settings
from photo_pipeline.services.processing import PhotoProcessor, ProcessingLimits
from photo_pipeline.settings import (
    ENV_BUCKET,
    ENV_DATABASE_URL,
    ENV_HOME,
    ENV_PUBLIC_ENDPOINT_URL,
    Settings,
    SettingsError,
    boto3_environment_fingerprint,
    env_is_set,
)
from photo_pipeline.storage import (
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    s3_client_config,
)

_engine_lock = threading.Lock()
_repositories: dict[str, PhotoRepository] = {}
_client_lock = threading.Lock()
_s3_clients: dict[tuple[str, str | None, str], tuple[Any, Any]] = {}


def repository_for(url: str, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> PhotoRepository:
    """One engine (and connection pool) per database per process: sensors tick every few
    seconds in a long-lived code server and must not open a new pool each time. The pool holds
    what a run's threads can use at once (`connections_per_process`), no more."""
    with _engine_lock:
        repository = _repositories.get(url)
        if repository is None:
            repository = PhotoRepository(create_engine_for(url, max_connections=max_connections))
            _repositories[url] = repository
        return repository


_loader_lock = threading.Lock()
_shared_loader: Loader | None = None


def _botocore_session() -> botocore.session.Session:
    """A fresh botocore session (credentials and endpoint read anew, as before) that shares one
    data loader with the others: the loader parses S3's service model, about 0.1-0.3 s a client
    otherwise, paid by every run before its first claim and by every sensor tick."""
    global _shared_loader
    session = botocore.session.get_session()
    with _loader_lock:
        if _shared_loader is None:
            _shared_loader = session.get_component("data_loader")
        else:
            session.register_component("data_loader", _shared_loader)
    return session


class S3StorageResource(S3Resource):
    """dagster-aws's S3 resource with what MinIO needs: path-style addressing and timeouts.

    Unset fields fall through to boto3's own configuration (AWS_ENDPOINT_URL_S3,
    AWS_ACCESS_KEY_ID, ...), so credentials never pass through Dagster config at all.
    """

    addressing_style: str = Field(default="path", description="'path' for MinIO, 'virtual' or 'auto' for AWS.")
    connect_timeout: float = Field(default=5.0, description="Seconds to wait for a connection.")
    read_timeout: float = Field(default=30.0, description="Seconds to wait for a response.")

    def get_client(self, endpoint_url: str | None = None) -> Any:
        config = s3_client_config(
            max_attempts=self.max_attempts,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            addressing_style=self.addressing_style,
        )
        session = boto3.session.Session(botocore_session=_botocore_session(), profile_name=self.profile_name)
        return session.client(
            "s3",
            region_name=self.region_name,
            endpoint_url=endpoint_url or self.endpoint_url,
            use_ssl=self.use_ssl,
            verify=self.verify,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
            config=config,
        )


class PhotoPipelineResource(ConfigurableResource):
    """Where the photo table and the objects live. Every field may be left unset: the value then
    comes from the environment (see settings.py) or the embedded defaults."""

    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the photo table. Shown as the variable PHOTO_DATABASE_URL when set there "
            "(it carries the password); unset (null): the SQLite file under the home."
        ),
    )
    bucket: str | None = Field(
        default=None,
        description="S3 bucket (PHOTO_BUCKET); unset (null): the folder store under the home.",
    )
    public_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint presigned URLs are signed for (PHOTO_PUBLIC_ENDPOINT_URL); unset (null): the bucket's own.",
    )
    home: str | None = Field(
        default=None,
        description="Folder of the embedded defaults (PHOTO_PIPELINE_HOME); unset (null): ./.photo_pipeline.",
    )
    s3: S3StorageResource = Field(default_factory=S3StorageResource)

    def settings(self) -> Settings:
        settings = Settings.from_env()
        if self.home:
            settings = settings.with_home(Path(self.home).absolute())
        return replace(
            settings,
            database_url=self.database_url or settings.database_url,
            bucket=self.bucket or settings.bucket,
            public_endpoint_url=self.public_endpoint_url or settings.public_endpoint_url,
        )

    def repository(self) -> PhotoRepository:
        settings = self.settings()
        return repository_for(settings.database_url, connections_per_process(settings.io_threads))

    def store(self) -> ObjectStore:
        settings = self.settings()
        if settings.bucket is None:
            return LocalObjectStore(settings.objects_dir)
        client, presign_client = self._s3_clients(settings.public_endpoint_url)
        return S3ObjectStore(client, settings.bucket, presign_client=presign_client)

    def _s3_clients(self, public_endpoint_url: str | None) -> tuple[Any, Any]:
        """The S3 clients, built once per configuration per process (building one costs 50-300 ms,
        and sensors call store() every tick); boto3 clients are thread-safe."""
        key = (self.s3.model_dump_json(), public_endpoint_url, boto3_environment_fingerprint())
        with _client_lock:
            clients = _s3_clients.get(key)
            if clients is None:
                client = self.s3.get_client()
                presign_client = self.s3.get_client(public_endpoint_url) if public_endpoint_url else client
                clients = _s3_clients[key] = (client, presign_client)
            return clients

    def render_options(self) -> RenderOptions:
        return render_options_from_settings(self.settings().render)

    def limits(self) -> ProcessingLimits:
        settings = self.settings()
        return ProcessingLimits(
            batch_size=settings.batch_size,
            max_photos=settings.max_photos_per_run,
            workers=settings.workers,
            missing_grace_seconds=settings.missing_grace_seconds,
            memory_budget_bytes=settings.memory_budget_bytes,
            max_original_bytes=settings.max_original_bytes,
            claim_lease_seconds=settings.claim_lease_seconds,
            claim_heartbeat_seconds=settings.claim_heartbeat_seconds,
            max_attempts=settings.max_attempts,
            io_threads=settings.io_threads,
            prefetch_bytes=settings.prefetch_bytes,
        )

    def processor(self, logger: logging.Logger, *, store: ObjectStore | None = None) -> PhotoProcessor:
        return PhotoProcessor(
            self.repository(), store if store is not None else self.store(), self.render_options(), self.limits(), logger=logger
        )


def _from_env(name: str) -> EnvVar | None:
    # EnvVar is resolved at run time and shown in the UI by name only, so a database password
    # never reaches the launchpad or the run's config; unset variables keep the embedded default.
    return EnvVar(name) if env_is_set(name) else None


def photo_pipeline_resource() -> PhotoPipelineResource:
    """The resource the code location serves, described with the table and store it reaches.

    Its fields are EnvVars or unset, which the resource page can only show as variable names or
    "null"; Dagster shows a resource's description beside them, and takes it from the class's
    docstring. So the resource is an instance of a subclass made here whose docstring also says
    what is in use, from this process's settings (the runs it launches inherit them)."""
    described = types.new_class(
        PhotoPipelineResource.__name__,
        (PhotoPipelineResource,),
        exec_body=lambda namespace: namespace.update(
            {"__doc__": described_resource_doc(), "__module__": __name__, "__qualname__": PhotoPipelineResource.__qualname__}
        ),
    )
    return described(
        database_url=_from_env(ENV_DATABASE_URL),
        bucket=_from_env(ENV_BUCKET),
        public_endpoint_url=_from_env(ENV_PUBLIC_ENDPOINT_URL),
        home=_from_env(ENV_HOME),
    )


def described_resource_doc() -> str:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        # Loading goes on (the runs fail with the same message before claiming anything); the
        # resource page says why.
        return in_use_markdown(None, None, problem=f"the settings are invalid: {exc}")
    return in_use_markdown(settings, s3_endpoint_for_display(settings) if settings.uses_s3 else None)


def s3_endpoint_for_display(settings: Settings) -> str:
    """The endpoint boto3 resolves from its own variables (AWS_ENDPOINT_URL_S3, ..., else AWS's),
    without credentials. The client is the one the resource caches for its runs and sensors, so
    building it here costs nothing later; it makes no request."""
    try:
        client, _presign_client = PhotoPipelineResource()._s3_clients(settings.public_endpoint_url)
    except BotoCoreError as exc:
        return f"(unknown: boto3 cannot build an S3 client: {redact(str(exc))})"
    return url_for_display(client.meta.endpoint_url)


def in_use_markdown(settings: Settings | None, s3_endpoint: str | None, *, problem: str | None = None) -> str:
    """The resource's description: what it is, then the photo table and the object store in use,
    with the database password masked and no credential or query string anywhere."""
    lines = [
        "Where the photo table and the objects live. Every field may be left unset (null): its value "
        "then comes from the environment (see settings.py) or the embedded defaults.",
        "",
        "**In use** (this code location's environment, which its runs inherit):",
        "",
    ]
    if settings is None:
        return "\n".join([*lines, f"- {problem}"])
    lines.append(f"- photo table: `{settings.database_url_for_display()}`")
    if settings.bucket is None:
        lines.append(f"- objects: folder `{settings.objects_dir}` (no PHOTO_BUCKET set)")
    else:
        lines.append(f"- objects: S3 bucket `{settings.bucket}` at {s3_endpoint}")
        signed_for = url_for_display(settings.public_endpoint_url) if settings.public_endpoint_url else "the same endpoint"
        lines.append(f"- upload URLs signed for: {signed_for}")
    return "\n".join(lines)


# Built once, when the code location first imports this module: which variables are EnvVars is
# fixed by the environment the process started with, not by whatever a later load sees.
PHOTO_PIPELINE = photo_pipeline_resource()


@definitions
def resources() -> Definitions:
    return Definitions(resources={"photo_pipeline": PHOTO_PIPELINE})
