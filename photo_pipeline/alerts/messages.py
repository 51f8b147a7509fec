"""What an alert says: one message, whatever the destination (Apprise shapes it for Slack, e-mail,
a JSON webhook...). Pure: texts from facts, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class AlertKind(StrEnum):
    STARTED = "started"
    REMINDER = "reminder"
    RESOLVED = "resolved"
    RUN_FAILED = "run failed"
    TEST = "test"


class Level(StrEnum):
    """Apprise's notify types, by their values."""

    FAILURE = "failure"
    WARNING = "warning"
    SUCCESS = "success"
    INFO = "info"


LEVEL_OF: dict[AlertKind, Level] = {
    AlertKind.STARTED: Level.FAILURE,
    AlertKind.REMINDER: Level.WARNING,
    AlertKind.RESOLVED: Level.SUCCESS,
    AlertKind.RUN_FAILED: Level.FAILURE,
    AlertKind.TEST: Level.INFO,
}
TITLE_PREFIX = "photo_pipeline"


@dataclass(frozen=True)
class AlertMessage:
    """One message to every destination. `key` says what it is about (a condition, a run), so
    the log and the outbox can name it."""

    key: str
    kind: AlertKind
    title: str
    body: str

    @property
    def level(self) -> Level:
        return LEVEL_OF[self.kind]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlertMessage:
        return cls(key=str(data["key"]), kind=AlertKind(data["kind"]), title=str(data["title"]), body=str(data["body"]))


def duration_text(seconds: float) -> str:
    """A span as an operator says it: 45 s, 12 min, 3.5 h, 2.0 days."""
    seconds = max(seconds, 0.0)
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def moment_text(timestamp: float) -> str:
    return f"{datetime.fromtimestamp(timestamp, UTC):%Y-%m-%d %H:%M} UTC"


def check_message(now: float) -> AlertMessage:
    return AlertMessage(
        key="test",
        kind=AlertKind.TEST,
        title=f"{TITLE_PREFIX}: test message",
        body=f"A test message sent at {moment_text(now)}: this destination receives photo_pipeline's alerts.",
    )


# -- failed runs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFailure:
    """A failed run, as the alert names it."""

    run_id: str
    job: str
    error: str  # the error's first line, already free of secrets
    album_id: str | None = None  # the run's partition, when it is an album's run
    album_title: str | None = None
    partition: str | None = None  # any other partition key


def first_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of an error, shortened: the headline, not the traceback."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def run_link(dagster_url: str | None, run_id: str) -> str:
    if dagster_url is None:
        return f"run {run_id} (set PHOTO_DAGSTER_URL for a link to the Dagster UI)"
    return f"{dagster_url.rstrip('/')}/runs/{run_id}"


def run_failed_message(failure: RunFailure, dagster_url: str | None) -> AlertMessage:
    if failure.album_id is not None:
        album = f'album "{failure.album_title}" ({failure.album_id})' if failure.album_title else f"album {failure.album_id}"
        subject = f"{failure.job} failed for {album}"
    elif failure.partition is not None:
        subject = f"{failure.job} failed for partition {failure.partition}"
    else:
        subject = f"{failure.job} failed"
    body = "\n".join(
        [
            f"{subject}.",
            f"Error: {failure.error or 'no error message was recorded'}",
            f"Run: {run_link(dagster_url, failure.run_id)}",
        ]
    )
    return AlertMessage(key=f"run:{failure.run_id}", kind=AlertKind.RUN_FAILED, title=f"{TITLE_PREFIX}: {subject}", body=body)
