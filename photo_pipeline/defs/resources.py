"""Dagster resources: the thin shell that hands assets and sensors a repository, a store and the
rendering settings. No rule lives here.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore.loaders import Loader
from dagster import ConfigurableResource, Definitions, EnvVar, definitions
from dagster_aws.s3 import S3Resource
from pydantic import Field

from photo_pipeline.photos.database import DEFAULT_MAX_CONNECTIONS, connections_per_process, create_engine_for
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.rendering.render import RenderOptions, render_options_from_settings
from photo_pipeline.services.processing import PhotoProcessor, ProcessingLimits
from photo_pipeline.settings import (
    ENV_BUCKET,
    ENV_DATABASE_URL,
    ENV_HOME,
    ENV_PUBLIC_ENDPOINT_URL,
    Settings,
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

    database_url: str | None = Field(default=None, description="SQLAlchemy URL of the photo table.")
    bucket: str | None = Field(default=None, description="S3 bucket; unset = local folder store.")
    public_endpoint_url: str | None = Field(default=None, description="Endpoint presigned URLs are signed for.")
    home: str | None = Field(default=None, description="Folder of the embedded defaults.")
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
    return PhotoPipelineResource(
        database_url=_from_env(ENV_DATABASE_URL),
        bucket=_from_env(ENV_BUCKET),
        public_endpoint_url=_from_env(ENV_PUBLIC_ENDPOINT_URL),
        home=_from_env(ENV_HOME),
    )


# Built once, when the code location first imports this module: which variables are EnvVars is
# fixed by the environment the process started with, not by whatever a later load sees.
PHOTO_PIPELINE = photo_pipeline_resource()


@definitions
def resources() -> Definitions:
    return Definitions(resources={"photo_pipeline": PHOTO_PIPELINE})
