"""Trash, restore and erase through the HTTP API (issue 17): uvicorn on loopback, the photo table
on PostgreSQL, the bucket on moto's S3 server, runs and partitions on a Dagster instance with the
queued run coordinator."""

from __future__ import annotations

import uuid
from typing import Any

import requests
from dagster import DagsterInstance

from photo_pipeline.defs.renditions.assets import albums_partitions
from photo_pipeline.rendering.render import RenderOptions
from photo_pipeline.services.processing import PhotoProcessor, ProcessingLimits
from photo_pipeline_tests.api.conftest import ApiServer
from photo_pipeline_tests.api.test_api import JPEG, api, create, declare, put  # noqa: F401 - api: fixture

SMALL = RenderOptions(preview_long_side=160, thumb_long_side=48, sizes=(96,))


def uploaded(api: ApiServer, album: uuid.UUID, names: list[str]) -> list[dict[str, Any]]:
    """Uploads through the API (rows, presigned PUTs), verified."""
    # Each its own bytes (after the JPEG's end, which decoders ignore): copies of one original
    # would be completed as duplicates, unrendered.
    originals = [JPEG + b"\0" * (i + 1) for i in range(len(names))]
    uploads = create(api, album, *(declare(name, size=len(data)) for name, data in zip(names, originals, strict=True))).json()["uploads"]
    for upload, data in zip(uploads, originals, strict=True):
        assert put(upload, data).status_code == 200
        assert api.post(f"/api/photos/{upload['photo_id']}/complete").status_code == 200
    return uploads


def render(api: ApiServer, album: uuid.UUID) -> None:
    PhotoProcessor(api.repository, api.store, SMALL, ProcessingLimits(workers=1)).process_album(album, "test-run")


def objects_with(api: ApiServer, text: str) -> list[str]:
    return [o.key for o in api.store.iter_objects("") if text in o.key]


def test_a_photo_is_trashed_hidden_and_restored_through_the_api(api: ApiServer) -> None:
    album = uuid.uuid4()
    [shown, hidden] = uploaded(api, album, ["a.jpg", "b.jpg"])
    render(api, album)
    before = api.repository.get(uuid.UUID(hidden["photo_id"]))
    files = objects_with(api, hidden["photo_id"])

    deleted = api.delete(f"/api/photos/{hidden['photo_id']}")

    assert deleted.status_code == 200, deleted.text
    body = deleted.json()
    assert (body["outcome"], body["status"], body["removed_keys"], body["album_id"]) == ("trashed", "completed", [], str(album))
    assert body["trashed_at"] is not None
    view = api.get(f"/api/albums/{album}").json()
    assert [p["photo_id"] for p in view["photos"]] == [shown["photo_id"]]
    assert (view["counts"]["completed"], view["counts"]["trashed"], view["total"], view["trashed_at"]) == (1, 1, 1, None)
    assert api.get(f"/api/albums/{album}", params={"ids": hidden["photo_id"]}).json()["photos"] == []
    assert objects_with(api, hidden["photo_id"]) == files, "its files stay until the trash is emptied"
    assert api.delete(f"/api/photos/{hidden['photo_id']}").json()["outcome"] == "already_trashed"

    restored = api.post(f"/api/photos/{hidden['photo_id']}/restore")

    assert restored.status_code == 200 and restored.json() == {
        "photo_id": hidden["photo_id"], "album_id": str(album), "status": "completed", "processing": None
    }  # fmt: skip
    after = api.repository.get(uuid.UUID(hidden["photo_id"]))
    assert after is not None and before is not None
    assert (after.status, after.thumb_key, after.preview_key, after.completed_at) == (
        before.status, before.thumb_key, before.preview_key, before.completed_at
    )  # fmt: skip
    assert len(api.get(f"/api/albums/{album}").json()["photos"]) == 2
    again = api.post(f"/api/photos/{hidden['photo_id']}/restore")
    assert again.status_code == 409 and "not in the trash" in again.json()["error"]
    assert api.post(f"/api/photos/{uuid.uuid4()}/restore").status_code == 404
    bad = api.delete(f"/api/photos/{hidden['photo_id']}", params={"erase": "yes"})
    assert bad.status_code == 400 and "erase must be one of" in bad.json()["error"]


def test_erase_answers_with_the_keys_and_a_replayed_put_is_removed_not_adopted(api: ApiServer) -> None:
    album = uuid.uuid4()
    [upload] = uploaded(api, album, ["private.jpg"])
    render(api, album)
    photo = upload["photo_id"]
    files = objects_with(api, photo)
    assert len(files) == 4, "original, thumbnail, preview, one size"

    erased = api.delete(f"/api/photos/{photo}", params={"erase": "true"})

    assert erased.status_code == 200, erased.text
    assert (erased.json()["outcome"], erased.json()["status"]) == ("erased", "completed")
    assert sorted(erased.json()["removed_keys"]) == sorted(files)
    assert objects_with(api, photo) == []
    for gone in (
        api.post(f"/api/photos/{photo}/restore"),
        api.post(f"/api/photos/{photo}/complete"),
        api.delete(f"/api/photos/{photo}"),
        api.delete(f"/api/photos/{photo}", params={"erase": "true"}),
    ):
        assert gone.status_code == 410 and f"photo {photo} was erased" in gone.json()["error"]
    reused = create(api, album, declare("again.jpg", photo_id=photo))
    assert reused.status_code == 410, "its id is never registered again"

    # The same presigned PUT again (a replay, or a client's late retry): it lands...
    assert put(upload, JPEG).status_code == 200
    assert api.store.exists(upload["key"])
    # ...and the album's check removes it, never adopts it.
    plan = api.post(f"/api/albums/{album}/check").json()
    assert [(a["kind"], a["photo_id"]) for a in plan["planned"]] == [("delete_erased", photo)]
    applied = api.post(f"/api/albums/{album}/check", json={"apply": True})
    assert applied.status_code == 200 and applied.json()["applied"]["delete_erased"] == 1
    assert objects_with(api, photo) == [] and api.repository.get(uuid.UUID(photo)) is None


def test_an_album_is_trashed_refuses_uploads_is_restored_and_erased(api: ApiServer) -> None:
    instance: DagsterInstance = api.instance  # type: ignore[assignment]
    album = uuid.uuid4()
    uploads = uploaded(api, album, ["a.jpg", "b.jpg"])
    render(api, album)
    [waiting] = create(api, album, declare("c.jpg")).json()["uploads"]  # an upload still pending
    assert instance.has_dynamic_partition(albums_partitions.name, str(album)), "its runs were requested"

    trashed = api.delete(f"/api/albums/{album}")

    assert trashed.status_code == 200, trashed.text
    assert (trashed.json()["outcome"], trashed.json()["photos"]) == ("trashed", 3) and trashed.json()["trashed_at"]
    view = api.get(f"/api/albums/{album}").json()
    assert (view["photos"], view["counts"]["trashed"], view["total"]) == ([], 3, 0)
    assert view["trashed_at"] == trashed.json()["trashed_at"]
    refused = create(api, album, declare("d.jpg"))
    assert refused.status_code == 409 and "is in the trash" in refused.json()["error"] and "restore" in refused.json()["error"]
    alone = api.post(f"/api/photos/{uploads[0]['photo_id']}/restore")
    assert alone.status_code == 409 and "restore the album first" in alone.json()["error"]
    assert api.delete(f"/api/albums/{album}").json()["outcome"] == "already_trashed"

    restored = api.post(f"/api/albums/{album}/restore")

    assert restored.status_code == 200, restored.text
    assert (restored.json()["photos"], restored.json()["restored"]) == (3, {"completed": 2, "pending": 1})
    assert restored.json()["processing"] and str(album) in restored.json()["processing"], "its pending upload's run"
    assert api.post(f"/api/albums/{album}/restore").status_code == 409
    assert put(waiting, JPEG).status_code == 200, "the restored upload goes on"
    everything = objects_with(api, str(album))
    assert len(everything) == 2 * 4 + 1, "two rendered photos (original, thumbnail, preview, a size), one original"

    erased = api.delete(f"/api/albums/{album}", params={"erase": "true"})

    assert erased.status_code == 200, erased.text
    body = erased.json()
    assert (body["outcome"], body["photos"], body["partition"]) == ("erased", 3, "deleted")
    assert body["removed_objects"] == len(body["removed_keys"]) and sorted(body["removed_keys"]) == sorted(everything)
    assert objects_with(api, str(album)) == []
    assert not instance.has_dynamic_partition(albums_partitions.name, str(album))
    for gone in (api.get(f"/api/albums/{album}"), api.post(f"/api/albums/{album}/restore"), create(api, album, declare("e.jpg"))):
        assert gone.status_code == 410 and f"album {album} was erased" in gone.json()["error"]
    assert api.delete(f"/api/albums/{uuid.uuid4()}").status_code == 404
    assert api.post(f"/api/albums/{uuid.uuid4()}/restore").status_code == 404


def test_the_description_documents_trash_and_erase(api: ApiServer) -> None:
    description = requests.get(api.url("/openapi.json"), timeout=10).json()
    delete = description["paths"]["/api/photos/{photo_id}"]["delete"]
    assert {p["name"] for p in delete["parameters"]} == {"photo_id", "erase"}
    assert set(delete["responses"]) >= {"200", "404", "410"}
    assert set(description["paths"]["/api/albums/{album_id}/restore"]["post"]["responses"]) >= {"200", "404", "409", "410"}
    schemas = description["components"]["schemas"]
    assert {"DeletedOut", "RestoredOut", "AlbumDeletedOut", "AlbumRestoredOut"} <= set(schemas)
    assert "trashed_at" in schemas["AlbumOut"]["properties"]
