"""Why a photo failed, and whether an operator's re-run can help.

The kind is decided where the failure happens (the renderer knows a cut file from an oversized
one, the processing service an error of its own from the file's) and recorded in the photo's
`failure_kind` beside its `error`. Everything that tells someone what to do about a failed
photo reads it through `advice`: the API's `retryable` and `hint`, the uploader page, `status`,
and the re-run job. A re-run reads the same original again, so it helps only when the cause was
the server's, never when it was the file's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FailureKind(StrEnum):
    # The file itself: cut short, corrupt or empty.
    DAMAGED = "damaged"
    # Not an image in a format the pipeline accepts.
    UNSUPPORTED = "unsupported"
    # Over the pixel limit, the run's memory budget or the maximum original size.
    TOO_LARGE = "too_large"
    # Its runs stopped before finishing it (crashed, killed or hung) until its attempts ran out.
    INTERRUPTED = "interrupted"
    # An error of the renderer itself rather than of the file.
    UNEXPECTED = "unexpected"


RETRYABLE_KINDS = frozenset({FailureKind.INTERRUPTED, FailureKind.UNEXPECTED})


@dataclass(frozen=True)
class FailureAdvice:
    kind: FailureKind | None
    # Whether a re-run of the same original can succeed; None when the kind was not recorded
    # (a photo failed by hand or by a version that did not record it).
    retryable: bool | None
    # For the person who uploaded it (the uploader page shows it).
    hint: str
    # For the operator (`status`, the re-run job's summary).
    action: str


_ADVICE: dict[FailureKind | None, tuple[str, str]] = {
    FailureKind.DAMAGED: (
        "The file is damaged (cut short or corrupt), so it cannot be shown. Upload it again from the original; "
        "processing this copy again cannot help.",
        "the file itself is damaged: a re-run cannot help; replace the original, then re-run",
    ),
    FailureKind.UNSUPPORTED: (
        "This file is not a photo in a format the site accepts (JPEG, PNG, GIF, WebP, TIFF, BMP, HEIC, AVIF). "
        "Convert it and upload it again.",
        "not an accepted image format: a re-run cannot help; replace the original",
    ),
    FailureKind.TOO_LARGE: (
        "This photo is larger than the site accepts. Upload a smaller version of it.",
        "over a size limit: a re-run helps only after the limit is raised (or the original replaced)",
    ),
    FailureKind.INTERRUPTED: (
        "The server stopped before it finished this photo; the file itself may be fine. An operator can re-run it.",
        "its runs stopped before finishing it: a re-run can help",
    ),
    FailureKind.UNEXPECTED: (
        "The server hit an unexpected error on this photo. An operator can re-run it once the cause is fixed.",
        "an error of the pipeline, not the file: re-run it once the cause in the log is fixed",
    ),
    None: (
        "The photo could not be processed. The reason above says whether the file or the server was at fault.",
        "no failure kind recorded: read the error to judge whether a re-run can help",
    ),
}


def failure_kind(value: str | None) -> FailureKind | None:
    """The kind recorded in the table; None for none, or a value this version does not know."""
    try:
        return FailureKind(value) if value is not None else None
    except ValueError:
        return None


def advice(kind: FailureKind | str | None) -> FailureAdvice:
    """What to do about a failed photo of this kind."""
    known = kind if isinstance(kind, FailureKind) else failure_kind(kind)
    hint, action = _ADVICE[known]
    return FailureAdvice(kind=known, retryable=None if known is None else known in RETRYABLE_KINDS, hint=hint, action=action)
