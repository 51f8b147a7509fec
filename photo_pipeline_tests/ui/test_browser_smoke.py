"""The operator's pages in headless Chromium against a real `photo-pipeline ui` on the demo's
data: the renditions' and the reconciliation's asset pages, an album's partition, the per-album
check, the resource and the launchpads of the three jobs an operator launches by hand. Each must
show its content, with no error toast, no Python error, no failed GraphQL answer and no script
error; the whole module takes well under a minute on a quiet machine."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from photo_pipeline.defs.renditions.assets import NO_FAILED_PHOTOS_IN_ALBUM
from photo_pipeline.reconcile.plan import ActionKind
from photo_pipeline.reconcile.report import ACTION_MEANING
from photo_pipeline_tests.processes import stop_process_tree
from photo_pipeline_tests.ui.local_ui import (
    FINISHED_RUN_STATUSES,
    LocalUI,
    album_with_failed_photos,
    drift_for_the_plan,
    run_demo,
    start_ui,
)
from photo_pipeline_tests.ui.pages import UIPage, ui_page

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("demo_ui") / "home"
    run_demo(home)
    return home


@pytest.fixture(scope="module")
def demo_ui(demo_home: Path) -> Iterator[tuple[LocalUI, uuid.UUID]]:
    ui = start_ui(demo_home, demo_home.parent / "ui.log", until_sensors_ticked=False)
    try:
        yield ui, album_with_failed_photos(demo_home)
    finally:
        # Stopping by the PID is test_ui's subject; this throwaway UI gets a short grace.
        stop_process_tree(ui.process, grace_seconds=5)


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


def test_applying_a_reconciliation_is_one_click_in_its_launchpad(page: UIPage, demo_ui: tuple[LocalUI, uuid.UUID]) -> None:
    """Issue 18 item 8: apply_reconciliation's launchpad opens on dry_run: false, Launch Run ready."""
    ui, _album = demo_ui
    check_page(page, f"{ui.url}/locations/photo_pipeline/jobs/apply_reconciliation/playground", ["apply_reconciliation", "dry_run: false"])
    launch = page.page.get_by_role("button", name="Launch Run").last
    deadline = time.monotonic() + 30  # the launchpad checks its config first
    while not launch.is_enabled():
        assert time.monotonic() < deadline, "Launch Run stayed disabled: the preset config is not valid"
        page.page.wait_for_timeout(200)


# How long a reconcile_storage dry run launched from the UI may take: queued, launched by the
# daemon, a new process, done.
RUN_SECONDS = 120
# How long the asset page may take to show the plan of a run that has ended (reloads included).
PAGE_SECONDS = 60
# Every cell of a metadata table that a person can see whole: the point just inside its right edge
# shows the cell itself, not whatever is beside the part the page cuts off.
CUT_OFF_CELLS = """(row) => {
  const cut = [];
  for (const cell of row.querySelectorAll(":scope table td")) {
    const box = cell.getBoundingClientRect();
    const found = document.elementFromPoint(box.right - 4, box.top + Math.min(box.height / 2, 10));
    if (!found || !cell.contains(found)) cut.push(cell.innerText.slice(0, 60));
  }
  return cut;
}"""


def test_a_reconciliation_plan_reads_at_a_glance_on_the_asset_page(
    page: UIPage, demo_ui: tuple[LocalUI, uuid.UUID], demo_home: Path
) -> None:
    """Issue 18 item 8: `actions_by_kind` used to show all twelve kinds, zeros included, and the
    UI cut its meaning column off. Now: the kinds the plan holds, every cell visible whole at the
    guide's 1280-pixel window, after a dry run started with the asset's Materialize button."""
    ui, album = demo_ui
    stray = drift_for_the_plan(demo_home, album)

    page.open(f"{ui.url}/assets/storage_reconciliation", expect=["Latest materialization"])
    runs_before = set(ui.runs())
    page.page.locator("button", has_text=re.compile(r"^Materialize$")).first.click()
    deadline = time.monotonic() + RUN_SECONDS
    # The run the click started, followed through the UI's GraphQL (polled every half second)
    # until it has ended: the page is reloaded then, not every few seconds while it runs.
    while not any(status in FINISHED_RUN_STATUSES for run_id, status in ui.runs().items() if run_id not in runs_before):
        assert time.monotonic() < deadline, f"the dry run started by Materialize did not end within {RUN_SECONDS}s"
        time.sleep(0.5)
    # The page gets its own deadline once the run has ended: under load the run may take most of its own.
    deadline = time.monotonic() + PAGE_SECONDS
    while not page.page.get_by_text("2 repair(s) planned").filter(visible=True).count():
        assert time.monotonic() < deadline, f"no plan on the page within {PAGE_SECONDS}s of the run's end"
        page.page.reload(wait_until="domcontentloaded")
        page.page.get_by_text("Latest materialization").first.wait_for()
        page.page.wait_for_timeout(200)

    by_kind = metadata_row(page, "actions_by_kind")
    assert [cell.inner_text().strip() for cell in by_kind.locator("table td").all()] == [
        "1", "", "delete_rendition (destructive): rendition no row points at: removed",
        "1", "", "rerender: " + ACTION_MEANING[ActionKind.RERENDER],
    ]  # fmt: skip
    assert by_kind.evaluate(CUT_OFF_CELLS) == []
    # Every value of the page shares one column as wide as the widest: the list of actions must
    # fit as well, or it would push every other value off the page.
    first_actions = metadata_row(page, "first_actions")
    assert first_actions.evaluate(CUT_OFF_CELLS) == []
    assert f"delete_rendition: no row points at this rendition: processed/thumbs/{album}/{stray.name}" in first_actions.inner_text()
    assert page.problems() == []


def metadata_row(page: UIPage, key: str) -> Any:
    """The row of the asset page's metadata table with this key, scrolled into view."""
    row = page.page.locator("tr", has=page.page.get_by_text(key, exact=True)).first
    row.scroll_into_view_if_needed()
    return row


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
