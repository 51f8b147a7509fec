"""The state machine tick by tick, pure: start above the threshold, quiet while it lasts, a
reminder each repeat interval, resolved at or below the clear threshold, no flapping in between."""

from __future__ import annotations

from photo_pipeline.alerts.conditions import Observation, Threshold
from photo_pipeline.alerts.messages import AlertKind
from photo_pipeline.alerts.state import AlertCursor, ConditionState, advance, after_attempt, enqueue, MAX_OUTBOX
from photo_pipeline.alerts.messages import AlertMessage

THRESHOLD = Threshold.with_clear_fraction(10.0, 0.8)  # on above 10, resolved at 8
HOUR = 3600.0


def seen(value: float | None) -> Observation:
    return Observation("queue", "the queue is long", value, THRESHOLD, f"{value} waiting", "10", "look")


def run(values: list[float | None], step: float = 60.0, repeat: float = HOUR) -> list[tuple[int, AlertKind]]:
    states: dict[str, ConditionState] = {}
    sent = []
    for tick, value in enumerate(values):
        states, messages = advance(states, [seen(value)], tick * step, repeat)
        sent += [(tick, m.kind) for m in messages]
    return sent


def test_a_value_hovering_at_the_threshold_alerts_once_and_resolves_once() -> None:
    values = [5, 10, 10.5, 9.5, 10.2, 8.5, 11, 9, 8.1, 8.0, 7, 10, 10.0]
    assert run(values) == [(2, AlertKind.STARTED), (9, AlertKind.RESOLVED)]


def test_reminders_come_every_repeat_interval_while_it_lasts() -> None:
    # One tick a minute for three hours and a bit, above the threshold all along.
    sent = run([20.0] * 200, step=60.0, repeat=HOUR)
    assert sent == [(0, AlertKind.STARTED), (60, AlertKind.REMINDER), (120, AlertKind.REMINDER), (180, AlertKind.REMINDER)]


def test_a_figure_that_cannot_be_judged_keeps_the_state() -> None:
    assert run([None, 20, None, None, 3]) == [(1, AlertKind.STARTED), (4, AlertKind.RESOLVED)]


def test_the_cursor_round_trips_through_json() -> None:
    states, messages = advance({}, [seen(20.0)], 100.0, HOUR)
    outbox, _ = enqueue((), messages, ["aaaa", "bbbb"], 100.0)
    cursor = AlertCursor(conditions=states, outbox=outbox, events_after="42")
    assert AlertCursor.from_json(cursor.to_json()) == cursor
    assert AlertCursor.from_json(None) == AlertCursor()


def test_only_the_destinations_that_failed_still_owe_the_message() -> None:
    message = AlertMessage("k", AlertKind.STARTED, "t", "b")
    (pending,), _ = enqueue((), [message], ["a", "b", "c"], 0.0)
    after = after_attempt(pending, {"b": "HTTP 500"}, tried=["a", "b"])  # c not tried this tick
    assert after is not None and after.destinations == ("b", "c") and after.last_error == "HTTP 500"
    assert after_attempt(after, {}, tried=["b", "c"]) is None


def test_the_outbox_is_bounded() -> None:
    messages = [AlertMessage(f"k{i}", AlertKind.STARTED, f"t{i}", "b") for i in range(MAX_OUTBOX + 5)]
    outbox, dropped = enqueue((), messages, ["a"], 0.0)
    assert len(outbox) == MAX_OUTBOX and [p.message.key for p in dropped] == [f"k{i}" for i in range(5)]
