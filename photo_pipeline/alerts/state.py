"""Once, then quiet: each condition's state machine (start, remind, resolve) and the deliveries
still owed, kept between ticks in the sensor's cursor (JSON). Pure: observations and a clock in,
the next state and the messages to send out.

- inactive, figure above its start threshold: STARTED, active since now;
- active, figure at or below its clear threshold: RESOLVED, inactive;
- active otherwise (including "cannot be judged now"): a REMINDER once `repeat` has passed since
  the last message about it.

Messages go into the outbox with the destinations that still owe them; a destination that fails
keeps its entry, retried on the next ticks, until it takes the message or the message is older
than GIVE_UP_SECONDS. A destination that took it is never sent it again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from photo_pipeline.alerts.conditions import Observation
from photo_pipeline.alerts.messages import AlertKind, AlertMessage, duration_text, moment_text

# A message no destination took for a day is dropped (and logged): what it said is stale.
GIVE_UP_SECONDS = 86400.0
# The outbox is bounded whatever happens to the destinations; the oldest messages go first.
MAX_OUTBOX = 200


@dataclass(frozen=True)
class ConditionState:
    active: bool = False
    since: float | None = None  # when it started
    last_sent: float | None = None  # when its latest message (start or reminder) was made
    value: float | None = None  # its figure at the latest tick


@dataclass(frozen=True)
class PendingDelivery:
    message: AlertMessage
    destinations: tuple[str, ...]  # ids of the destinations that have not taken it yet
    created_at: float
    attempts: int = 0
    last_error: str = ""


@dataclass(frozen=True)
class AlertCursor:
    conditions: Mapping[str, ConditionState] = field(default_factory=dict)
    outbox: tuple[PendingDelivery, ...] = ()
    # The run-failure sensor's place in the event log (Dagster's own cursor string).
    events_after: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "conditions": {key: vars(state) for key, state in self.conditions.items()},
                "outbox": [
                    {
                        "message": pending.message.to_json(),
                        "destinations": list(pending.destinations),
                        "created_at": pending.created_at,
                        "attempts": pending.attempts,
                        "last_error": pending.last_error,
                    }
                    for pending in self.outbox
                ],
                "events_after": self.events_after,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | None) -> AlertCursor:
        if not text:
            return cls()
        data: dict[str, Any] = json.loads(text)
        return cls(
            conditions={key: ConditionState(**state) for key, state in data.get("conditions", {}).items()},
            outbox=tuple(
                PendingDelivery(
                    message=AlertMessage.from_json(item["message"]),
                    destinations=tuple(item["destinations"]),
                    created_at=float(item["created_at"]),
                    attempts=int(item.get("attempts", 0)),
                    last_error=str(item.get("last_error", "")),
                )
                for item in data.get("outbox", [])
            ),
            events_after=data.get("events_after"),
        )


# -- conditions ----------------------------------------------------------------------------------


def advance(
    states: Mapping[str, ConditionState], observations: Iterable[Observation], now: float, repeat_seconds: float
) -> tuple[dict[str, ConditionState], list[AlertMessage]]:
    """The conditions' next states and the messages they call for, in the observations' order.
    Conditions no longer observed keep their state (an active one is not resolved by silence)."""
    after = dict(states)
    messages: list[AlertMessage] = []
    for observation in observations:
        state, message = step(after.get(observation.key, ConditionState()), observation, now, repeat_seconds)
        after[observation.key] = state
        if message is not None:
            messages.append(message)
    return after, messages


def step(
    state: ConditionState, observation: Observation, now: float, repeat_seconds: float
) -> tuple[ConditionState, AlertMessage | None]:
    value = observation.value if observation.value is not None else state.value
    if not state.active:
        if observation.above:
            return ConditionState(True, now, now, value), started(observation)
        return replace(state, value=value), None
    if observation.cleared:
        return ConditionState(False, None, None, value), resolved(observation, state, now)
    last = state.last_sent if state.last_sent is not None else now
    if now - last >= repeat_seconds:
        return replace(state, last_sent=now, value=value), reminder(observation, state, now)
    return replace(state, value=value), None


def started(observation: Observation) -> AlertMessage:
    return AlertMessage(
        key=observation.key,
        kind=AlertKind.STARTED,
        title=f"photo_pipeline: {observation.title}",
        body="\n".join(
            [f"{observation.detail}.", f"Threshold: {observation.limit}.", f"What to do: {observation.advice}"]
        ),
    )


def reminder(observation: Observation, state: ConditionState, now: float) -> AlertMessage:
    since = state.since if state.since is not None else now
    return AlertMessage(
        key=observation.key,
        kind=AlertKind.REMINDER,
        title=f"photo_pipeline: still {observation.title} (for {duration_text(now - since)})",
        body="\n".join(
            [
                f"Still the case since {moment_text(since)}: {observation.detail}.",
                f"Threshold: {observation.limit}.",
                f"What to do: {observation.advice}",
            ]
        ),
    )


def resolved(observation: Observation, state: ConditionState, now: float) -> AlertMessage:
    since = state.since if state.since is not None else now
    return AlertMessage(
        key=observation.key,
        kind=AlertKind.RESOLVED,
        title=f"photo_pipeline: resolved: {observation.title}",
        body=f"Resolved after {duration_text(now - since)}: {observation.detail}.",
    )


# -- the outbox ----------------------------------------------------------------------------------


def enqueue(
    outbox: Sequence[PendingDelivery], messages: Iterable[AlertMessage], destinations: Sequence[str], now: float
) -> tuple[tuple[PendingDelivery, ...], list[PendingDelivery]]:
    """The outbox with the messages added for every destination, and what had to be dropped to
    keep it within MAX_OUTBOX (the oldest)."""
    added = [PendingDelivery(message, tuple(destinations), now) for message in messages]
    queue = [*outbox, *(pending for pending in added if pending.destinations)]
    overflow = max(0, len(queue) - MAX_OUTBOX)
    return tuple(queue[overflow:]), queue[:overflow]


def after_attempt(pending: PendingDelivery, failures: Mapping[str, str], tried: Iterable[str]) -> PendingDelivery | None:
    """The delivery once `tried` destinations were attempted: those that failed (`failures`:
    id -> reason) still owe it; None once every destination took it."""
    tried = set(tried)
    left = tuple(d for d in pending.destinations if d not in tried or d in failures)
    if not left:
        return None
    errors = "; ".join(failures[d] for d in left if d in failures)
    return replace(pending, destinations=left, attempts=pending.attempts + 1, last_error=errors or pending.last_error)


def expired(pending: PendingDelivery, now: float) -> bool:
    return now - pending.created_at > GIVE_UP_SECONDS
