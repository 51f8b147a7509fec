"""Everything Dagster loads, assembled in one place (`workspace.yaml` points here)."""

from __future__ import annotations

from dagster import Definitions, EnvVar

from photo_pipeline.defs.health.assets import (
    HEALTH_ASSETS,
    HEALTH_JOBS,
    HEALTH_SCHEDULES,
)
from photo_pipeline.defs.reconcile.job import reconcile_schedule, reconcile_storage
from photo_pipeline.defs.renditions.assets import album_renditions
from photo_pipeline.defs.renditions.jobs import (
    process_album,
    reprocess_failed_photos,
    rerender_albums,
)
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.defs.sensors.sensors import pending_photo_sensor, raw_object_sensor
from photo_pipeline.settings import (
    ENV_BUCKET,
    ENV_DATABASE_URL,
    ENV_HOME,
    ENV_PUBLIC_ENDPOINT_URL,
    env_is_set,
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


defs = Definitions(
    assets=[album_renditions, *HEALTH_ASSETS],
    jobs=[process_album, rerender_albums, reprocess_failed_photos, reconcile_storage, *HEALTH_JOBS],
    schedules=[reconcile_schedule, *HEALTH_SCHEDULES],
    sensors=[raw_object_sensor, pending_photo_sensor],
    resources={"photo_pipeline": photo_pipeline_resource()},
)
