"""The run log's progress line, as a pure function of counts and a clock."""

from __future__ import annotations

import pytest

from photo_pipeline.services.progress import Progress, album_total, format_duration


def test_mid_run_line_gives_done_total_rate_and_time_left() -> None:
    progress = Progress(done=40, total=200, elapsed=10.0)
    assert progress.photos_per_second == 4.0
    assert progress.seconds_left == 40.0
    assert progress.describe() == "40 of 200 photos done (20 %), 4.0 photos/s, about 40 s left"


def test_before_the_first_outcome_there_is_no_rate_to_guess_from() -> None:
    progress = Progress(done=0, total=32, elapsed=0.4)
    assert progress.photos_per_second is None and progress.seconds_left is None
    assert progress.describe() == "0 of 32 photos done (0 %)"


def test_the_last_line_has_no_time_left() -> None:
    assert Progress(done=7, total=7, elapsed=2.0).describe() == "7 of 7 photos done (100 %), 3.5 photos/s"


def test_the_total_is_what_the_run_claimed_and_what_waits_within_its_limit() -> None:
    assert album_total(32, 100, limit=5000) == 132
    assert album_total(32, 10_000, limit=5000) == 5000


@pytest.mark.parametrize(
    ("seconds", "text"), [(4.4, "4 s"), (59.6, "1 min 00 s"), (125, "2 min 05 s"), (3 * 3600 + 7 * 60, "3 h 07 min")]
)
def test_durations_read_like_a_clock(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
