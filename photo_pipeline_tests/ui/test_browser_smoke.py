"""The operator's pages in headless Chromium against a real `photo-pipeline ui` on the demo's
data: the renditions' and the reconciliation's asset pages, an album's partition, the per-album
check, the resource and the launchpads of the three jobs an operator launches by hand. Each must
show its content, with no error toast, no Python error, no failed GraphQL answer and no script
error; the whole module takes well under a minute on a quiet machine."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from photo_pipeline.defs.renditions.assets import NO_FAILED_PHOTOS_IN_ALBUM
from photo_pipeline_tests.ui.local_ui import LocalUI, album_with_failed_photos, run_demo, start_ui, stop_process_group
from photo_pipeline_tests.ui.pages import UIPage, ui_page

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalUI, uuid.UUID]]:
    folder = tmp_path_factory.mktemp("demo_ui")
    run_demo(folder / "home")
    ui = start_ui(folder / "home", folder / "ui.log", until_sensors_ticked=False)
    try:
        yield ui, album_with_failed_photos(folder / "home")
    finally:
        # Stopping by the PID is test_ui's subject; this throwaway UI gets a short grace.
        stop_process_group(ui.process, grace_seconds=5)


@pytest.fixture(scope="module")
def page(browser: Any) -> Iterator[UIPage]:
    with ui_page(browser) as opened:
        yield opened


def check_page(page: UIPage, url: str, expect: list[str]) -> None:
    page.open(url, expect=expect)
    assert page.problems() == [], url


def test_asset_page(page: UIPage, demo_ui: tuple[LocalUI, uuid.UUID]) -> None:
    ui, _album = demo_ui
    check_page(page, f"{ui.url}/assets/thumbnails", ["Materialize…", "Latest materialization", "Watermarked thumbnails"])


def test_reconciliation_asset_page(page: UIPage, demo_ui: tuple[LocalUI, uuid.UUID]) -> None:
    ui, _album = demo_ui
    check_page(page, f"{ui.url}/assets/storage_reconciliation", ["Latest materialization", "Freshness policy"])


def test_album_partition_page(page: UIPage, demo_ui: tuple[LocalUI, uuid.UUID]) -> None:
    ui, album = demo_ui
    check_page(page, f"{ui.url}/assets/thumbnails?view=partitions&partition={album}", [str(album), "Latest materialization", "photos_failed"])


def test_asset_check_page(page: UIPage, demo_ui: tuple[LocalUI, uuid.UUID]) -> None:
    ui, album = demo_ui
    check_page(
        page, f"{ui.url}/assets/thumbnails?view=checks&checkDetail={NO_FAILED_PHOTOS_IN_ALBUM}", [NO_FAILED_PHOTOS_IN_ALBUM, "Latest execution"]
    )


def test_resource_page_names_the_table_and_store_in_use(page: UIPage, demo_ui: tuple[LocalUI, uuid.UUID]) -> None:
    ui, _album = demo_ui
    check_page(page, f"{ui.url}/locations/photo_pipeline/resources/photo_pipeline", ["photo table: ", "objects: folder"])


@pytest.mark.parametrize("job", ["process_album", "reprocess_failed_photos", "reconcile_storage"])
def test_launchpad(page: UIPage, demo_ui: tuple[LocalUI, uuid.UUID], job: str) -> None:
    ui, _album = demo_ui
    check_page(page, f"{ui.url}/locations/photo_pipeline/jobs/{job}/playground", [job, "Launch Run"])


def test_the_checks_catch_what_they_look_for(page: UIPage, demo_ui: tuple[LocalUI, uuid.UUID]) -> None:
    """The checks above can fail: a GraphQL error, a toast, an error text and a page without its
    content are each reported."""
    ui, _album = demo_ui
    page.open(f"{ui.url}/assets/thumbnails", expect=["Materialize…"])
    assert page.problems() == []
    page.page.evaluate(
        "() => fetch('/graphql', {method: 'POST', headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify({operationName: null, query: '{ noSuchField }'})}).then(answer => answer.text())"
    )
    page.page.evaluate(
        "() => { const toast = document.createElement('div'); toast.setAttribute('data-sonner-toast', '');"
        " toast.textContent = 'Unexpected GraphQL error'; document.body.appendChild(toast); }"
    )
    problems = page.problems()
    assert any(problem.startswith("GraphQL") for problem in problems), problems
    assert any(problem.startswith("toast: Unexpected GraphQL error") for problem in problems), problems
    assert any(problem.startswith("error on the page") for problem in problems), problems
    with pytest.raises(PlaywrightTimeoutError):
        page.open(f"{ui.url}/assets/no_such_asset", expect=["Latest materialization"], timeout_ms=3_000)
