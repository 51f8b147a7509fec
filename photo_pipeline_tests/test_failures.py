"""The one classification of failures (photo_pipeline/failures.py): a re-run is offered only for
the server's failures, never for the file's."""

from __future__ import annotations

import pytest

from photo_pipeline.failures import RETRYABLE_KINDS, FailureKind, advice, failure_kind


@pytest.mark.parametrize("kind", list(FailureKind))
def test_a_rerun_is_offered_only_where_it_can_help(kind: FailureKind) -> None:
    told = advice(kind)

    assert told.retryable is (kind in RETRYABLE_KINDS)
    assert told.kind is kind and advice(kind.value) == told, "the table's value reads the same"
    assert ("re-run it" in told.hint) is told.retryable, told.hint
    assert ("upload" in told.hint.lower()) is (not told.retryable), told.hint


def test_the_files_own_failures_are_not_retryable_the_servers_are() -> None:
    assert RETRYABLE_KINDS == {FailureKind.INTERRUPTED, FailureKind.UNEXPECTED}


@pytest.mark.parametrize("recorded", [None, "a kind of a later version"])
def test_an_unrecorded_or_unknown_kind_promises_nothing(recorded: str | None) -> None:
    assert failure_kind(recorded) is None
    told = advice(recorded)
    assert (told.kind, told.retryable) == (None, None)
    assert "re-run it" not in told.hint
