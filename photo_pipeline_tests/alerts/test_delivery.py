"""Apprise to destinations the test owns: a JSON webhook and an SMTP server on 127.0.0.1. Each
destination's outcome on its own, the failure's reason without the URL's secrets, and the
outbox: a destination that refuses gets the message at the next attempt, one that took it never
gets it twice."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from photo_pipeline.alerts.delivery import Destination, destinations_from, send
from photo_pipeline.alerts.messages import AlertKind, AlertMessage, check_message
from photo_pipeline.alerts.state import AlertCursor
from photo_pipeline.redaction import destination_for_display, mask_destination
from photo_pipeline.services.alerts import queue_and_deliver, send_check
from photo_pipeline_tests.alerts.receivers import JsonReceiver, SmtpReceiver

MESSAGE = AlertMessage("test-key", AlertKind.STARTED, "photo_pipeline: photos are failing", "3 of 10 photos failed.")
SECRETS = ("pw-SECRET-1234", "Zq9xSECRET")


def test_a_json_webhook_takes_the_message(webhook: JsonReceiver) -> None:
    (destination,) = destinations_from([SecretStr(webhook.url())])

    assert send(MESSAGE, destination) is None

    (body,) = webhook.received
    assert body["title"] == MESSAGE.title and body["message"] == MESSAGE.body
    assert body["type"] == "failure"  # Apprise's notify type: Slack colours it, e-mail says it


def test_a_refusing_destination_says_why_without_its_secrets(webhook: JsonReceiver, caplog: pytest.LogCaptureFixture) -> None:
    webhook.statuses = [500]
    (destination,) = destinations_from([SecretStr(webhook.url())])

    with caplog.at_level(logging.DEBUG):
        reason = send(MESSAGE, destination)

    assert reason is not None and "500" in reason
    logged = caplog.text
    assert "hooks" in webhook.paths[0]  # it did reach the receiver, path and all
    for secret in SECRETS:
        assert secret not in reason and secret not in logged and secret not in destination.shown
        assert secret not in repr(destination)


def test_an_url_apprise_cannot_use_is_a_failure_not_a_crash() -> None:
    (destination,) = destinations_from([SecretStr("nosuchservice://token-SECRET-99/x")])
    reason = send(MESSAGE, destination)
    assert reason is not None and "not a URL Apprise can send to" in reason
    assert "token-SECRET-99" not in destination.shown


def test_an_email_reaches_the_smtp_server(smtp: SmtpReceiver) -> None:
    (destination,) = destinations_from([SecretStr(smtp.url())])

    assert send(MESSAGE, destination) is None

    (mail,) = smtp.messages
    assert mail["Subject"] == MESSAGE.title
    assert mail["To"] == "ops@example.com"
    assert "3 of 10 photos failed." in mail.get_body(("plain",)).get_content()


def test_destinations_are_shown_as_scheme_and_host_only() -> None:
    assert destination_for_display("json://user:pw@hooks.example.com:8443/a/TOKEN?x=SECRET") == "json://hooks.example.com:8443"
    assert destination_for_display("mailtos://alerts:app-password@smtp.gmail.com?to=ops@example.com") == "mailtos://smtp.gmail.com"
    # Services that keep a token where the host would be: hidden.
    assert destination_for_display("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#alerts") == "slack://…"
    assert destination_for_display("tgram://123456789:AAE-bot-token/12345") == "tgram://…"
    masked = mask_destination("failed posting to T1JJ3T3L2/TIiajkdnlazkcOXrIdevi7FQ", ["slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#alerts"])
    assert "T1JJ3T3L2" not in masked and "TIiajkdnlazkcOXrIdevi7FQ" not in masked


def test_a_refused_delivery_is_retried_at_the_next_attempt_and_never_repeated(
    webhook: JsonReceiver, second_webhook: JsonReceiver
) -> None:
    second_webhook.statuses = [500]
    destinations = destinations_from([SecretStr(webhook.url()), SecretStr(second_webhook.url())])

    cursor, first = queue_and_deliver(AlertCursor(), [MESSAGE], destinations, 1000.0, send)

    assert webhook.titles() == [MESSAGE.title] and second_webhook.titles() == []
    assert len(first.failed) == 1 and "#2 json://127.0.0.1" in first.failed[0]
    (pending,) = AlertCursor.from_json(cursor.to_json()).outbox  # as the sensor keeps it
    assert pending.destinations == (destinations[1].id,) and pending.attempts == 1

    cursor, second = queue_and_deliver(AlertCursor.from_json(cursor.to_json()), [], destinations, 1030.0, send)

    assert second_webhook.titles() == [MESSAGE.title]
    assert webhook.titles() == [MESSAGE.title]  # not sent twice
    assert cursor.outbox == () and second.failed == []
    for secret in SECRETS:
        assert secret not in cursor.to_json() and secret not in " ".join(first.failed)


def test_a_message_nobody_takes_for_a_day_is_dropped_and_said(webhook: JsonReceiver) -> None:
    webhook.statuses = [500] * 3
    destinations = destinations_from([SecretStr(webhook.url())])
    cursor, _ = queue_and_deliver(AlertCursor(), [MESSAGE], destinations, 0.0, send)
    cursor, _ = queue_and_deliver(cursor, [], destinations, 3600.0, send)
    assert len(cursor.outbox) == 1

    cursor, report = queue_and_deliver(cursor, [], destinations, 86400.0 + 1, send)

    assert cursor.outbox == ()
    assert len(report.dropped) == 1 and "gave up after 2 attempt(s)" in report.dropped[0]


def test_the_check_message_says_per_destination_whether_it_was_taken(webhook: JsonReceiver, second_webhook: JsonReceiver) -> None:
    second_webhook.statuses = [503]
    destinations = destinations_from([SecretStr(webhook.url()), SecretStr(second_webhook.url())])

    results = send_check(destinations, send, now=0.0)

    assert [r.ok for r in results] == [True, False]
    assert webhook.titles() == [check_message(0.0).title]


def test_a_destination_id_is_a_digest_not_the_url() -> None:
    destination = Destination(SecretStr("json://user:pw-SECRET-1234@127.0.0.1:9/x"), 1)
    assert len(destination.id) == 12 and "SECRET" not in destination.id


def test_a_message_for_a_destination_no_longer_configured_is_dropped_and_said(webhook: JsonReceiver) -> None:
    webhook.statuses = [500]
    cursor, _ = queue_and_deliver(AlertCursor(), [MESSAGE], destinations_from([SecretStr(webhook.url())]), 0.0, send)
    assert len(cursor.outbox) == 1

    other = destinations_from([SecretStr(webhook.url("/hooks/another"))])
    cursor, report = queue_and_deliver(cursor, [], other, 60.0, send)

    assert cursor.outbox == () and webhook.received == []
    assert report.dropped == [f"{MESSAGE.title}: its destinations are no longer in PHOTO_ALERT_URLS"]
