"""Jobs: one per kind of work."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from photo_pipeline.assets import PREVIEWS, THUMBNAILS

process_album = define_asset_job(
    name="process_album",
    selection=AssetSelection.assets(THUMBNAILS, PREVIEWS),
    description="Render the thumbnails and previews of one album's pending photos.",
    tags={"photo_pipeline/kind": "render"},
)
