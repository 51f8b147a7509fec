"""Opening a page of the Dagster UI in a real browser and saying what is wrong with it: an error
toast, a Python error, a failed GraphQL answer, a script error, or a page without its content.
Used by the browser smoke test and by scripts/ui_screenshots.py."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

VIEWPORT = {"width": 1280, "height": 800}
# Bounded waits (milliseconds): the page's own content, then the UI's first burst of queries.
CONTENT_TIMEOUT_MS = 20_000
SETTLE_TIMEOUT_MS = 10_000

# What the UI shows when a query or the code behind it failed: Dagster's error dialogs and the
# text of a Python traceback.
ERROR_TEXT = re.compile(
    r"Traceback \(most recent call last\)|PythonError|Unexpected GraphQL error|GraphQL error|"
    r"DagsterInvariantViolationError|CheckError|Something went wrong|An unexpected error"
)
LOADING = "Loading…"
# Dagster's toasts (the sonner library).
TOAST = "[data-sonner-toast]"


class UIPage:
    """A browser page recording what goes wrong while it shows a URL. One page serves many
    URLs (the browser then caches the UI's scripts: about 2 s a page instead of 5)."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.script_errors: list[str] = []
        self.graphql_answers: list[Any] = []
        page.on("pageerror", lambda error: self.script_errors.append(str(error)))
        page.on("response", self._remember_graphql)

    def _remember_graphql(self, response: Any) -> None:
        if response.url.split("?")[0].endswith("/graphql"):
            self.graphql_answers.append(response)

    def open(self, url: str, *, expect: list[str], timeout_ms: int = CONTENT_TIMEOUT_MS) -> None:
        """Go to `url` and wait until each text of `expect` is visible (no empty page), then
        for the queries it started to be answered (bounded: the UI also polls). What went wrong
        on the URL before is forgotten."""
        self.script_errors.clear()
        self.graphql_answers.clear()
        self.page.goto(url, wait_until="domcontentloaded", timeout=timeout_ms)
        for text in expect:
            self.page.get_by_text(text, exact=False).filter(visible=True).first.wait_for(timeout=timeout_ms)
        # Dagster's placeholders while a part of the page still waits for its data: a page stuck
        # on one is as broken as an empty one.
        self.page.get_by_text(LOADING).filter(visible=True).first.wait_for(state="hidden", timeout=timeout_ms)
        try:
            self.page.wait_for_load_state("networkidle", timeout=SETTLE_TIMEOUT_MS)
        except PlaywrightTimeoutError:
            pass  # the UI polls every 2 s, so the network may never idle: the wait is only a bound

    def problems(self) -> list[str]:
        """Everything wrong with the page as it is now; empty when it is fine."""
        found = [f"script error: {error}" for error in self.script_errors]
        for toast in self.page.locator(TOAST).all():
            found.append(f"toast: {toast.inner_text()[:300]}")
        body = self.page.inner_text("body")
        for match in ERROR_TEXT.finditer(body):
            start = max(0, match.start() - 150)
            found.append(f"error on the page: …{body[start:match.end() + 300]}…")
        for answer in self.graphql_answers:
            found.extend(graphql_problems(answer))
        return found


def graphql_problems(response: Any) -> list[str]:
    """A GraphQL answer's failures: an HTTP error, top-level `errors`, or a PythonError anywhere."""
    if response.status >= 400:
        return [f"GraphQL HTTP {response.status} for {response.request.post_data or ''}"[:500]]
    try:
        answer = response.json()
    except PlaywrightError:
        return []  # a request the page abandoned (navigation, closing): there is no answer to judge
    operation = _operation_name(response)
    found = [f"GraphQL errors in {operation}: {json.dumps(answer['errors'])[:500]}"] if answer.get("errors") else []
    found.extend(f"PythonError in {operation}: {message[:500]}" for message in _python_errors(answer.get("data")))
    return found


def _operation_name(response: Any) -> str:
    try:
        return str(json.loads(response.request.post_data or "{}").get("operationName"))
    except json.JSONDecodeError:
        return "?"


def _python_errors(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if value.get("__typename") == "PythonError":
            yield str(value.get("message"))
        for item in value.values():
            yield from _python_errors(item)
    elif isinstance(value, list):
        for item in value:
            yield from _python_errors(item)


@contextmanager
def ui_page(browser: Any) -> Iterator[UIPage]:
    """A page in a browser context of its own (no state from other tests)."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        yield UIPage(context.new_page())
    finally:
        context.close()
