"""Sending one message to one destination with Apprise, and saying whether it took it.

One `Apprise` object per destination, so each destination's outcome is known on its own (Apprise
reports one result per call). Apprise URLs are secrets: a destination is shown as
`#position scheme://host` (`redaction.destination_for_display`), and what Apprise logs or
reports passes through `redaction.mask_destination` first.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import apprise
from pydantic import SecretStr

from photo_pipeline.alerts.messages import AlertMessage
from photo_pipeline.redaction import DestinationFilter, destination_for_display, mask_destination

# Apprise's own loggers, and the HTTP client's that quotes request paths at DEBUG.
LIBRARY_LOGGERS = ("apprise", "urllib3.connectionpool")
# One call to one destination, retries included: a tick sends a few of them at most.
SEND_TIMEOUT_SECONDS = 20.0
ASSET = apprise.AppriseAsset(
    app_id="photo_pipeline",
    app_desc="photo_pipeline alerts",
    app_url="https://dagster.io",
    # Nothing written under the user's home: the alerts keep their state in the sensor's cursor.
    storage_mode=apprise.PersistentStoreMode.MEMORY,
)


@dataclass(frozen=True)
class Destination:
    url: SecretStr = field(repr=False)
    position: int  # 1-based, in PHOTO_ALERT_URLS

    @property
    def id(self) -> str:
        """Names the destination in the cursor, which the UI shows: a digest, never the URL."""
        return hashlib.sha256(self.url.get_secret_value().encode()).hexdigest()[:12]

    @property
    def shown(self) -> str:
        return f"#{self.position} {destination_for_display(self.url.get_secret_value())}"


def destinations_from(urls: Sequence[SecretStr]) -> list[Destination]:
    return [Destination(url, position) for position, url in enumerate(urls, start=1)]


# What sending is, for the services: the failure's reason, or None when the destination took it.
Send = Callable[[AlertMessage, Destination], str | None]


def send(message: AlertMessage, destination: Destination) -> str | None:
    url = destination.url.get_secret_value()
    notifier = apprise.Apprise(asset=ASSET)
    with masked_library_logs([destination]):
        if not notifier.add(url):
            return "not a URL Apprise can send to (unknown scheme or missing parts)"
        result = notifier.notify(
            body=message.body,
            title=message.title,
            notify_type=apprise.NotifyType(message.level.value),
            timeout=SEND_TIMEOUT_SECONDS,
        )
    if result:
        return None
    reasons = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR")]
    reason = "; ".join(reasons[-2:]) or f"Apprise reported {getattr(result.status, 'name', result.status)}"
    return mask_destination(reason, [url])[:300]


@contextmanager
def masked_library_logs(destinations: Sequence[Destination]) -> Iterator[None]:
    """While sending: the destinations' secrets masked in Apprise's (and urllib3's) own log lines."""
    log_filter = DestinationFilter([d.url.get_secret_value() for d in destinations])
    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    for logger in loggers:
        logger.addFilter(log_filter)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(log_filter)
