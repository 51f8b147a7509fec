"""Completed rows written in batches: a group commit for the pipeline's store threads.

Each store thread hands its photo's completion to `CompletionRecorder.complete` and waits for the
answer (was the row written, or had its claim been lost). The first thread to find no write under
way writes every completion waiting at that moment in one transaction
(`PhotoRepository.complete_many`); completions arriving meanwhile wait for the next. Before
writing, it lingers (at most `linger_seconds`) while photos it was told are still uploading may
join, so one transaction carries several rows when the pipeline is busy, and a lone photo (the
fast path of a single upload) is written at once.

Nothing changes for a photo but when its row is written: each row is fenced by its own claim (a
lost lease leaves that row alone and says so), a photo's outcome is known only once its row is
committed, and a database error belongs to the photo that caused it: a batch refused for one
row's sake (a constraint, a value the column refuses) is written again a row per transaction, so
the other photos of the batch are recorded and only that photo fails. An error of the connection
(the database went away) fails every completion of the batch at once: writing the rows one by
one would only wait for it again and again (the pipeline gives those claims back and fails the
step).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.exc import DataError, IntegrityError

from photo_pipeline.photos.claims import Completion

# Errors that belong to one row of a batch, not to the connection.
ROW_ERRORS = (IntegrityError, DataError)

# How long a writer waits for photos still uploading to join its batch: a few uploads' time.
LINGER_SECONDS = 0.05
MAX_BATCH = 32


@dataclass
class _Waiting:
    completion: Completion
    done: threading.Event = field(default_factory=threading.Event)
    written: bool = False
    error: BaseException | None = None


class CompletionRecorder:
    def __init__(
        self,
        write: Callable[[Sequence[Completion]], list[bool]],
        *,
        linger_seconds: float = LINGER_SECONDS,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._write = write
        self._linger = linger_seconds
        self._max_batch = max_batch
        self._condition = threading.Condition()
        self._queue: list[_Waiting] = []
        self._writing = False
        self._uploading = 0  # photos between `uploading()` and their `complete` (or `abandoned`)
        self.batches: list[int] = []  # the size of each transaction written (the tests read it)

    def uploading(self) -> None:
        """A photo started uploading its renditions: a writer may wait for it to join."""
        with self._condition:
            self._uploading += 1

    def abandoned(self) -> None:
        """A photo that said `uploading` will not call `complete` (its upload failed)."""
        with self._condition:
            self._uploading -= 1
            self._condition.notify_all()

    def complete(self, completion: Completion) -> bool:
        """Write the completion (in some batch); whether its row was written (False: claim lost).
        Raises what the database raised for its batch."""
        me = _Waiting(completion)
        with self._condition:
            self._uploading -= 1
            self._queue.append(me)
            self._condition.notify_all()
            while self._writing and not me.done.is_set():
                self._condition.wait()
            if me.done.is_set():
                return self._answer(me)
            self._writing = True
            batch = self._gather()
        self._write_batch(batch)
        with self._condition:
            self.batches.append(len(batch))
            for waiting in batch:
                waiting.done.set()
            self._writing = False
            self._condition.notify_all()
        return self._answer(me)

    def _write_batch(self, batch: list[_Waiting]) -> None:
        """Each waiting completion gets its answer: written, claim lost, or its own error."""
        try:
            written = self._write([w.completion for w in batch])
        except ROW_ERRORS as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            for waiting in batch:  # find the row it belongs to; the others are written
                self._write_batch([waiting])
        except BaseException as exc:
            for waiting in batch:
                waiting.error = exc
        else:
            for waiting, ok in zip(batch, written, strict=True):
                waiting.written = ok

    def _gather(self) -> list[_Waiting]:
        """The batch to write (called holding the lock): everything waiting, after lingering (up
        to `max_batch` waiting) while photos still uploading may join."""
        deadline = time.monotonic() + self._linger
        while self._uploading > 0 and len(self._queue) < self._max_batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._condition.wait(left)
        batch, self._queue = self._queue, []
        return batch

    @staticmethod
    def _answer(waiting: _Waiting) -> bool:
        if waiting.error is not None:
            raise waiting.error
        return waiting.written
