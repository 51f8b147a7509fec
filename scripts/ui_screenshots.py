"""Screenshots of the Dagster UI for the operations guide, taken from the real UI.

    PYTHONPATH=. .venv/bin/python scripts/ui_screenshots.py [--out docs/ui]

Runs `photo-pipeline demo` on a throwaway home folder, starts `photo-pipeline ui` on it
(127.0.0.1, a free port), opens each page the guide shows in headless Chromium (Debian's, as the
browser tests use), checks it the way the browser smoke test does (its content shown, no error
toast, no Python error, no failed GraphQL answer) and writes docs/ui/<name>.png. Re-run it after
assets, jobs, their descriptions or the Dagster release change; the guide refers to the files by
name. Nothing else is written: the home folder and the UI go away at the end.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import Page, sync_playwright  # noqa: E402
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError  # noqa: E402

from photo_pipeline.defs.renditions.assets import NO_FAILED_PHOTOS_IN_ALBUM  # noqa: E402
from photo_pipeline_tests.processes import stop_process_tree  # noqa: E402
from photo_pipeline_tests.ui.local_ui import (  # noqa: E402
    album_with_failed_photos,
    drift_for_the_plan,
    run_demo,
    start_ui,
)
from photo_pipeline_tests.ui.pages import CONTENT_TIMEOUT_MS, UIPage, ui_page  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# A run started from the UI: queued, launched by the daemon, a new Python process, done.
RUN_SECONDS = 120


def click(role: str, name: str, then_expect: str, *, exact: bool = False) -> Callable[[Page], None]:
    """An action: click the element with this role whose accessible name holds `name` (is it,
    with `exact`), then wait for a text."""

    def act(page: Page) -> None:
        page.get_by_role(role, name=name, exact=exact).first.click(timeout=CONTENT_TIMEOUT_MS)  # type: ignore[arg-type]
        page.get_by_text(then_expect).filter(visible=True).first.wait_for(timeout=CONTENT_TIMEOUT_MS)

    return act


def enabled(role: str, name: str) -> Callable[[Page], None]:
    """An action: wait until the element is enabled (the launchpad checks its config first)."""

    def act(page: Page) -> None:
        element = page.get_by_role(role, name=name).last  # a dialog's, over the page's  # type: ignore[arg-type]
        deadline = time.monotonic() + CONTENT_TIMEOUT_MS / 1000
        while not element.is_enabled():
            if time.monotonic() > deadline:
                raise SystemExit(f"{name!r} stayed disabled for {CONTENT_TIMEOUT_MS / 1000:.0f}s")
            page.wait_for_timeout(200)

    return act


def choose_album(page: Page, album: uuid.UUID) -> None:
    """In the Materialize dialog: Custom partition selection, the album by (the start of) its id."""
    page.get_by_text("Select a partition or create one").first.click(timeout=CONTENT_TIMEOUT_MS)
    page.keyboard.type(str(album)[:8])
    # The option in the list, not the same id on the page behind the dialog.
    page.get_by_role("menuitem").filter(has_text=str(album)).first.click(timeout=CONTENT_TIMEOUT_MS)
    page.keyboard.press("Escape")  # closes the list, not the dialog
    page.get_by_text("Launch 1 run").filter(visible=True).first.wait_for(timeout=CONTENT_TIMEOUT_MS)


def open_asset_launchpad(page: Page) -> None:
    """An unpartitioned asset's launchpad: Shift+click on "Materialize" (the UI's own shortcut;
    the arrow beside it → "Open launchpad" does the same but leaves its menu drawn behind)."""
    materialize = page.locator("button", has_text=re.compile(r"^Materialize$")).first
    materialize.click(modifiers=["Shift"], timeout=CONTENT_TIMEOUT_MS)
    page.get_by_text("dry_run").filter(visible=True).first.wait_for(timeout=CONTENT_TIMEOUT_MS)
    enabled("button", "Materialize")(page)


def pick_partition(page: Page, album: uuid.UUID) -> None:
    """In a partitioned job's launchpad: the album in the partition picker (fills album_id)."""
    page.get_by_placeholder("Partition").first.click(timeout=CONTENT_TIMEOUT_MS)
    page.keyboard.type(str(album)[:8])
    page.get_by_role("menuitem").filter(has_text=str(album)).first.click(timeout=CONTENT_TIMEOUT_MS)
    page.get_by_text(f"album_id: '{album}'").filter(visible=True).first.wait_for(timeout=CONTENT_TIMEOUT_MS)


# The `plan` entry's value, which only a recorded plan has (the word "outcome" is in the
# asset's description too, so it cannot tell a recorded plan from none).
RECORDED_PLAN = re.compile(r"^(nothing to repair|\d+ repair\(s\) planned)")


def reconcile_dry_run(page: Page, base_url: str) -> None:
    """The asset's Materialize button (a dry run by default), then wait for its plan on the page:
    the screenshot of storage_reconciliation shows a recorded plan, not "Never materialized"."""
    page.goto(f"{base_url}/assets/storage_reconciliation", wait_until="domcontentloaded", timeout=CONTENT_TIMEOUT_MS)
    # Its text is exactly "Materialize" (the partitioned assets' reads "Materialize…").
    page.locator("button", has_text=re.compile(r"^Materialize$")).first.click(timeout=CONTENT_TIMEOUT_MS)
    deadline = time.monotonic() + RUN_SECONDS
    while time.monotonic() < deadline:
        page.wait_for_timeout(3_000)
        page.reload(wait_until="domcontentloaded", timeout=CONTENT_TIMEOUT_MS)
        try:
            page.get_by_text(RECORDED_PLAN).filter(visible=True).first.wait_for(timeout=5_000)
            return
        except PlaywrightTimeoutError:
            continue
    raise SystemExit(f"the reconcile_storage dry run recorded no plan within {RUN_SECONDS}s")


def scroll_to_metadata(key: str) -> Callable[[Page], None]:
    """An action: bring the asset page's metadata row with this key into view."""

    def act(page: Page) -> None:
        page.locator("tr", has=page.get_by_text(key, exact=True)).first.scroll_into_view_if_needed(timeout=CONTENT_TIMEOUT_MS)

    return act


@dataclass(frozen=True)
class Shot:
    name: str
    path: str  # under the UI's URL; {album} is the demo album with a failed photo
    expect: list[str]
    actions: list[Callable[[Page], None]] = field(default_factory=list)
    # Actions that need the demo album with a failed photo.
    album_actions: list[Callable[[Page, uuid.UUID], None]] = field(default_factory=list)


SHOTS = [
    Shot("catalog", "/assets", ["thumbnails", "pipeline_health", "2 partitions"]),
    Shot("runs", "/runs", ["process_album"]),
    Shot("thumbnails", "/assets/thumbnails", ["Materialize…", "Latest materialization"]),
    Shot("album-partition", "/assets/thumbnails?view=partitions&partition={album}", ["{album}", "photos_failed"]),
    Shot(
        "no-failed-photos-check",
        f"/assets/thumbnails?view=checks&checkDetail={NO_FAILED_PHOTOS_IN_ALBUM}",
        [NO_FAILED_PHOTOS_IN_ALBUM, "Latest execution"],
    ),
    Shot(
        "materialize-notice",
        "/assets/thumbnails",
        ["Materialize…"],
        [click("button", "Materialize…", "Additional assets will be materialized")],
    ),
    Shot(
        "materialize-albums",
        "/assets/thumbnails",
        ["Materialize…"],
        [
            click("button", "Materialize…", "Additional assets will be materialized"),
            click("button", "Confirm", "Partition selection"),
        ],
        [choose_album],
    ),
    Shot(
        "rerender-backfill",
        "/locations/photo_pipeline/jobs/rerender_albums/partitions",
        ["Materialize…"],
        [click("button", "Materialize…", "Partition selection"), click("button", "All", "Launch backfill", exact=True)],
    ),
    Shot(
        "reprocess-launchpad",
        "/locations/photo_pipeline/jobs/reprocess_failed_photos/playground",
        ["Launch Run"],
        [],
        [pick_partition, lambda page, _album: enabled("button", "Launch Run")(page)],
    ),
    Shot("reconcile-launchpad", "/assets/storage_reconciliation", ["Latest materialization"], [open_asset_launchpad]),
    Shot("resource", "/locations/photo_pipeline/resources/photo_pipeline", ["photo table: "]),
    Shot("storage-reconciliation", "/assets/storage_reconciliation", ["outcome", "actions_by_kind"]),
    Shot("reconciliation-plan", "/assets/storage_reconciliation", ["repair(s) planned"], [scroll_to_metadata("actions_by_kind")]),
    Shot(
        "apply-launchpad",
        "/locations/photo_pipeline/jobs/apply_reconciliation/playground",
        ["dry_run: false"],
        [enabled("button", "Launch Run")],
    ),
    Shot("sensor", "/locations/photo_pipeline/sensors/pending_photo_sensor", ["Latest tick", "View logs"]),
]


def take(page: UIPage, base_url: str, album: uuid.UUID, shot: Shot, out: Path) -> Path:
    page.open(base_url + shot.path.format(album=album), expect=[text.format(album=album) for text in shot.expect])
    for action in shot.actions:
        action(page.page)
    for album_action in shot.album_actions:
        album_action(page.page, album)
    # Off any element, and a moment for a hover tooltip to fade: none in the picture.
    page.page.mouse.move(1000, 110)
    page.page.wait_for_timeout(600)
    problems = page.problems()
    if problems:
        raise SystemExit(f"{shot.name}: the UI shows a problem, no screenshot taken:\n" + "\n".join(problems))
    target = out / f"{shot.name}.png"
    page.page.screenshot(path=str(target))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "ui", help="folder for the PNG files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ui-screenshots-") as folder:
        home = Path(folder) / ".photo_pipeline"
        print("running the demo…", flush=True)
        run_demo(home)
        album = album_with_failed_photos(home)
        drift_for_the_plan(home, album)  # something for the reconciliation plan to show
        print("starting photo-pipeline ui…", flush=True)
        ui = start_ui(home, Path(folder) / "ui.log")  # the sensors' first ticks show on the sensor's page
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
                try:
                    with ui_page(browser) as page:
                        print("  a reconcile_storage dry run from the UI…", flush=True)
                        reconcile_dry_run(page.page, ui.url)
                    for shot in SHOTS:
                        # A page of its own for each shot: no dialog or scroll position carried over.
                        with ui_page(browser) as page:
                            target = take(page, ui.url, album, shot, args.out)
                            print(f"  {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}", flush=True)
                finally:
                    browser.close()
        finally:
            stop_process_tree(ui.process, grace_seconds=5)
    print(f"{len(SHOTS)} screenshots in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
