"""The alerts' rules of delivery: queue the messages a tick produced, send what is owed, keep what
failed for the next tick, drop what is too old, and say which destination did what. No Dagster
here (the sensors in `defs/alerts/` wire it) and no Apprise (`send` is handed in:
`alerts/delivery.send` in production)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from photo_pipeline.alerts.conditions import Observation
from photo_pipeline.alerts.delivery import Destination, Send
from photo_pipeline.alerts.messages import AlertMessage, check_message
from photo_pipeline.alerts.state import AlertCursor, PendingDelivery, advance, after_attempt, enqueue, expired

# Sends one tick makes at most (message x destination): a tick must end well within Dagster's
# 60 s sensor timeout even when every destination times out; the rest waits for the next tick.
MAX_SENDS_PER_TICK = 12


@dataclass
class DeliveryReport:
    """What a tick's deliveries did, as lines for the tick's log (destinations shown masked)."""

    delivered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    waiting: int = 0  # deliveries left for the next tick by the per-tick bound


def queue_and_deliver(
    cursor: AlertCursor,
    messages: Iterable[AlertMessage],
    destinations: Sequence[Destination],
    now: float,
    send: Send,
    *,
    max_sends: int = MAX_SENDS_PER_TICK,
) -> tuple[AlertCursor, DeliveryReport]:
    """The cursor with the new messages queued for every destination and the outbox delivered
    as far as the tick's bound allows."""
    report = DeliveryReport()
    outbox, overflow = enqueue(cursor.outbox, messages, [d.id for d in destinations], now)
    report.dropped += [f"{p.message.title}: dropped unsent, the outbox is full" for p in overflow]
    outbox = deliver(outbox, destinations, now, send, report, max_sends)
    return replace(cursor, outbox=outbox), report


def deliver(
    outbox: Sequence[PendingDelivery],
    destinations: Sequence[Destination],
    now: float,
    send: Send,
    report: DeliveryReport,
    max_sends: int,
) -> tuple[PendingDelivery, ...]:
    by_id = {d.id: d for d in destinations}
    left: list[PendingDelivery] = []
    budget = max_sends
    for pending in outbox:
        if expired(pending, now):
            report.dropped.append(f"{pending.message.title}: gave up after {pending.attempts} attempt(s): {pending.last_error}")
            continue
        # A destination removed from PHOTO_ALERT_URLS since: nobody to send it to any more.
        pending = replace(pending, destinations=tuple(d for d in pending.destinations if d in by_id))
        if not pending.destinations:
            report.dropped.append(f"{pending.message.title}: its destinations are no longer in PHOTO_ALERT_URLS")
            continue
        targets = [by_id[d] for d in pending.destinations][: max(budget, 0)]
        budget -= len(targets)
        failures: dict[str, str] = {}
        for destination in targets:
            reason = send(pending.message, destination)
            if reason is None:
                report.delivered.append(f"{pending.message.title} -> {destination.shown}")
            else:
                failures[destination.id] = f"{destination.shown}: {reason}"
                report.failed.append(
                    f"{pending.message.title} -> {destination.shown} failed ({reason}); retried at the next tick"
                )
        after = after_attempt(pending, failures, [t.id for t in targets])
        if after is not None:
            report.waiting += len(after.destinations) - len(failures)
            left.append(after)
    return tuple(left)


def condition_tick(
    cursor: AlertCursor,
    observations: Iterable[Observation],
    destinations: Sequence[Destination],
    now: float,
    repeat_seconds: float,
    send: Send,
) -> tuple[AlertCursor, list[AlertMessage], DeliveryReport]:
    """One tick of the condition alerts: the state machine, then the deliveries."""
    conditions, messages = advance(cursor.conditions, observations, now, repeat_seconds)
    after, report = queue_and_deliver(replace(cursor, conditions=conditions), messages, destinations, now, send)
    return after, messages, report


@dataclass(frozen=True)
class CheckResult:
    destination: Destination
    error: str | None  # None: it took the test message

    @property
    def ok(self) -> bool:
        return self.error is None


def send_check(destinations: Sequence[Destination], send: Send, now: float | None = None) -> list[CheckResult]:
    """A test message to each destination (`alert --test`, `doctor`), each outcome on its own."""
    message = check_message(time.time() if now is None else now)
    return [CheckResult(destination, send(message, destination)) for destination in destinations]
