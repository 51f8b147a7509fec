"""`photo-pipeline demo`: the whole pipeline on sample photos made in code, on the embedded defaults.

Uploads through the real client flow (row, presigned PUT, verification), then runs
`process_album` for each album on the persistent local Dagster instance, so the runs are there in
`photo-pipeline ui` afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dagster import DagsterInstance, ExecuteInProcessResult

from photo_pipeline.cli import samples
from photo_pipeline.photos.repository import PhotoRecord, PhotoRepository
from photo_pipeline.services.uploads import (
    UploadPolicy,
    UploadResult,
    title_album,
    upload_photo,
)
from photo_pipeline.storage import ObjectStore


@dataclass(frozen=True)
class SamplePhoto:
    name: str
    make: Callable[[], bytes]


HOLIDAY = (
    SamplePhoto("beach.jpg", lambda: samples.photo_jpeg(4000, 3000, seed=1, with_gps=True)),
    SamplePhoto("rotated-portrait.jpg", lambda: samples.photo_jpeg(3000, 2000, seed=2, orientation=6)),
    SamplePhoto("sunset.jpg", lambda: samples.photo_jpeg(2400, 1600, seed=3)),
    SamplePhoto("harbour.jpg", lambda: samples.photo_jpeg(3200, 2400, seed=4)),
    SamplePhoto("market.jpg", lambda: samples.photo_jpeg(2048, 1536, seed=5)),
    SamplePhoto("logo.png", lambda: samples.photo_png(900, 600, seed=6, mode="RGBA")),
)
STUDIO = (
    SamplePhoto("print-proof-cmyk.jpg", lambda: samples.cmyk_jpeg(1800, 1200, seed=7)),
    SamplePhoto("scan-16bit.png", lambda: samples.photo_png(1200, 900, seed=8, mode="I;16")),
    SamplePhoto("phone.heic", lambda: samples.heic(1600, 1200, seed=9)),
    SamplePhoto("small.jpg", lambda: samples.photo_jpeg(320, 240, seed=10)),
    SamplePhoto("corrupt.jpg", samples.corrupt_jpeg),
)
DEMO_ALBUMS: tuple[tuple[str, tuple[SamplePhoto, ...]], ...] = (("Holiday", HOLIDAY), ("Studio", STUDIO))


@dataclass(frozen=True)
class DemoAlbum:
    name: str
    album_id: uuid.UUID
    uploads: list[UploadResult]
    run_id: str
    run_success: bool
    seconds: float
    photos_per_second: float


def write_samples(folder: Path, photos: tuple[SamplePhoto, ...]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for photo in photos:
        path = folder / photo.name
        path.write_bytes(photo.make())
        paths.append(path)
    return paths


def run_album(instance: DagsterInstance, album_id: uuid.UUID) -> ExecuteInProcessResult:
    # Imported here: loading the definitions reads the environment and builds resources, which
    # the upload half of the demo does not need.
    from photo_pipeline.definitions import defs
    from photo_pipeline.defs.renditions.assets import albums_partitions

    instance.add_dynamic_partitions(albums_partitions.name, [str(album_id)])
    job = defs().resolve_job_def("process_album")
    return job.execute_in_process(
        partition_key=str(album_id),
        instance=instance,
        tags={"photo_pipeline/trigger": "demo"},
        raise_on_error=False,
        # The full event log is in the UI; the terminal gets warnings only, then the summary.
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )


def metadata_float(result: ExecuteInProcessResult, name: str) -> float:
    for event in result.get_asset_materialization_events():
        entry = event.materialization.metadata.get(name)
        if entry is not None and isinstance(entry.value, int | float):
            return float(entry.value)
    return 0.0


def run_demo(
    repository: PhotoRepository,
    store: ObjectStore,
    instance: DagsterInstance,
    samples_dir: Path,
    *,
    on_upload: Callable[[str, Path, UploadResult | Exception], None] | None = None,
) -> list[DemoAlbum]:
    albums = []
    for name, photos in DEMO_ALBUMS:
        album_id = uuid.uuid4()
        # Titled as an uploader would (--title): status and the UI show "Studio", not only a UUID.
        title_album(repository, album_id, name)
        uploads = []
        for path in write_samples(samples_dir / name.lower(), photos):
            result = upload_photo(repository, store, album_id, path, policy=UploadPolicy(attempts=2))
            uploads.append(result)
            if on_upload is not None:
                on_upload(name, path, result)
        run = run_album(instance, album_id)
        albums.append(
            DemoAlbum(
                name=name,
                album_id=album_id,
                uploads=uploads,
                run_id=run.run_id,
                run_success=run.success,
                seconds=metadata_float(run, "seconds"),
                photos_per_second=metadata_float(run, "photos_per_second"),
            )
        )
    return albums


def album_rows(repository: PhotoRepository, album: DemoAlbum) -> list[PhotoRecord]:
    found = repository.get_many([u.photo_id for u in album.uploads])
    return [found[u.photo_id] for u in album.uploads if u.photo_id in found]
