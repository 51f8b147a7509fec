from __future__ import annotations

from collections.abc import Iterator

import pytest

from photo_pipeline_tests.alerts.receivers import JsonReceiver, SmtpReceiver


@pytest.fixture
def webhook() -> Iterator[JsonReceiver]:
    receiver = JsonReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def second_webhook() -> Iterator[JsonReceiver]:
    receiver = JsonReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()
