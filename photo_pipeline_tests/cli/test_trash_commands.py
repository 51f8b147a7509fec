"""`photo-pipeline delete | restore` and the trash in `status`, on the embedded defaults (SQLite,
the folder store, the local Dagster instance)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from photo_pipeline.cli import samples
from photo_pipeline.instance.local import local_instance
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.settings import Settings
from photo_pipeline.storage import LocalObjectStore
from photo_pipeline_tests.cli.test_commands import embedded_env, invoke, render_pending, write  # noqa: F401 - fixture


def flat(output: str) -> str:
    return " ".join(output.split())  # rich folds long lines


def objects_with(store: LocalObjectStore, text: str) -> list[str]:
    return [o.key for o in store.iter_objects("") if text in o.key]


def test_delete_restore_and_erase_photos_and_albums(embedded_env: dict[str, str], tmp_path: Path) -> None:
    album = uuid.uuid4()
    files = [write(tmp_path / f"p{i}.jpg", samples.photo_jpeg(400, 300, seed=i)) for i in range(3)]
    assert invoke("init-db").exit_code == 0
    assert invoke("upload", str(album), *map(str, files), "--title", "Holiday").exit_code == 0
    render_pending(album)
    settings = Settings.from_env()
    repository, store = PhotoRepository.from_url(settings.database_url), LocalObjectStore(settings.objects_dir)
    first, second, third = (r.id for r in repository.photos_in_album(album))

    trashed = invoke("delete", str(first))
    assert trashed.exit_code == 0 and f"trashed photo {first} (was completed)" in flat(trashed.output)
    assert f"photo-pipeline restore {first}" in flat(trashed.output)
    human = flat(invoke("status").output)
    assert "1 photo(s) in the trash" in human and f"{album} 1 in the trash Holiday" in human
    payload = json.loads(invoke("status", "--json").output)
    assert payload["albums"][str(album)]["trashed"] == 1 and payload["albums"][str(album)]["completed"] == 2
    assert payload["totals"]["trashed"] == 1

    restored = invoke("restore", str(first))
    assert restored.exit_code == 0 and f"restored photo {first} (completed)" in restored.output
    refused = invoke("restore", str(first), str(uuid.uuid4()))
    assert refused.exit_code == 1 and "not in the trash" in flat(refused.output) and "no photo" in flat(refused.output)

    kept = objects_with(store, str(first))
    erased = invoke("delete", "--erase", str(first))
    assert erased.exit_code == 0 and f"erased photo {first} (was completed)" in flat(erased.output)
    assert all(key in flat(erased.output).replace(" ", "") for key in kept) and objects_with(store, str(first)) == []
    gone = invoke("restore", str(first))
    assert gone.exit_code == 1 and f"photo {first} was erased" in flat(gone.output)

    whole = invoke("delete", "--album", str(album))
    assert whole.exit_code == 0 and f"trashed album {album}: 2 photo(s)" in flat(whole.output)
    late = invoke("upload", str(album), str(files[0]))
    assert late.exit_code == 1 and "is in the trash" in flat(late.output)
    alone = invoke("restore", str(second))
    assert alone.exit_code == 1 and "restore the album first" in flat(alone.output)
    back = invoke("restore", "--album", str(album))
    assert back.exit_code == 0 and f"restored album {album}: 2 completed" in flat(back.output)
    assert repository.status_counts(album)[PhotoStatus.COMPLETED] == 2

    with local_instance(settings) as instance:
        instance.add_dynamic_partitions("albums", [str(album)])
    erased_album = invoke("delete", "--album", str(album), "--erase")
    assert erased_album.exit_code == 0, erased_album.output
    assert f"erased album {album}: 2 photo(s)" in flat(erased_album.output) and "partition was deleted" in erased_album.output
    assert objects_with(store, str(album)) == [] and repository.get_many([second, third]) == {}
    with local_instance(settings) as instance:
        assert not instance.has_dynamic_partition("albums", str(album))
    assert invoke("delete", "--album", str(album)).exit_code == 1

    both = invoke("delete", str(second), "--album", str(album))
    assert both.exit_code == 2 and "one of the two" in both.output
    assert invoke("restore").exit_code == 2
    assert invoke("delete", "not-a-uuid").exit_code == 2
