"""`photo-pipeline alert --test` and `doctor` send a test message to each destination and say,
per destination shown as scheme and host, whether it took it; no destination is an error for
`alert --test` and a warning for `doctor`. Nothing they print carries a destination's secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from photo_pipeline.cli.commands import main
from photo_pipeline_tests.alerts.receivers import JsonReceiver, SmtpReceiver

SECRETS = ("pw-SECRET-1234", "Zq9xSECRET")


@pytest.fixture
def embedded_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("PHOTO_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PHOTO_PIPELINE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_alert_test_says_which_destination_took_the_message(
    embedded_env: Path, monkeypatch: pytest.MonkeyPatch, webhook: JsonReceiver, second_webhook: JsonReceiver, smtp: SmtpReceiver
) -> None:
    second_webhook.statuses = [500]
    monkeypatch.setenv("PHOTO_ALERT_URLS", f"{webhook.url()}, {second_webhook.url()} {smtp.url()}")

    result = invoke("alert", "--test")

    assert result.exit_code == 1, result.output  # one destination refused
    lines = result.output.splitlines()
    assert lines[0] == f"  ok #1 json://127.0.0.1:{webhook.port}: took the test message"
    assert lines[1].startswith(f"fail #2 json://127.0.0.1:{second_webhook.port}: ") and "500" in lines[1]
    assert lines[2] == f"  ok #3 mailto://127.0.0.1:{smtp.port}: took the test message"
    assert webhook.titles() == ["photo_pipeline: test message"] and len(smtp.messages) == 1
    for secret in SECRETS:
        assert secret not in result.output


def test_alert_test_without_destinations_fails_and_says_so(embedded_env: Path) -> None:
    result = CliRunner().invoke(main, ["alert", "--test"])
    assert result.exit_code == 1
    assert "PHOTO_ALERT_URLS is not set" in result.stderr


def test_doctor_sends_the_test_message_and_warns_without_destinations(
    embedded_env: Path, monkeypatch: pytest.MonkeyPatch, webhook: JsonReceiver
) -> None:
    assert invoke("init-db").exit_code == 0
    without = invoke("doctor")
    assert without.exit_code == 0, without.output
    assert "warn alerts: PHOTO_ALERT_URLS is not set" in without.output

    monkeypatch.setenv("PHOTO_ALERT_URLS", webhook.url())
    with_one = invoke("doctor")
    assert with_one.exit_code == 0, with_one.output
    assert f"ok alert destination #1 json://127.0.0.1:{webhook.port}: took the test message" in with_one.output
    assert webhook.titles() == ["photo_pipeline: test message"]

    webhook.statuses = [500]
    refused = invoke("doctor")
    assert refused.exit_code == 1
    # Rich wraps the doctor's lines at the terminal's width.
    unwrapped = " ".join(refused.output.split())
    assert f"fail alert destination #1 json://127.0.0.1:{webhook.port}: did not take the test message" in unwrapped
    for secret in SECRETS:
        assert secret not in with_one.output + refused.output


def test_a_destination_that_is_no_url_is_refused_by_name_without_its_value(embedded_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOTO_ALERT_URLS", "json://127.0.0.1:9/x token-SECRET-77")
    result = CliRunner().invoke(main, ["alert", "--test"])
    assert result.exit_code == 2
    assert "PHOTO_ALERT_URLS destination 2 is not a URL" in result.stderr
    assert "token-SECRET-77" not in result.stderr + result.stdout
