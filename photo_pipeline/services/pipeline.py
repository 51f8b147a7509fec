"""The album pipeline: each claimed photo flows through three stages, each with its own threads,
so the cores render while other threads wait on the network.

    fetch  (I/O threads)     the original streamed into a spooled file (one GET: its headers checked first)
    render (render threads)  decode, resize, watermark, encode: CPU-bound, Pillow drops the GIL
    store  (I/O threads)     both renditions uploaded, then the row written

A stage returns either the payload of the next stage or the photo's final outcome (a photo that
fails or is released early leaves the pipeline there). The pipeline knows nothing of photos'
rules: `processing.PhotoProcessor` supplies the stages, bounds what each holds (its memory
budget for decoded pixels, the originals budget for prefetched originals) and collects outcomes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Outcome = TypeVar("Outcome")
Stage = Callable[[Any], Any]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stages(Generic[Outcome]):
    """The three stages and the type that ends a photo's journey (any stage may return it)."""

    fetch: Stage
    render: Stage
    store: Stage
    outcome_type: type[Outcome]
    # Called with a stage's payload when the next stage can no longer run it (pipeline shut
    # down), so what the payload holds (a spooled original, a reservation) is given back.
    discard: Callable[[Any], None] = lambda payload: None


class PhotoPipeline(Generic[Outcome]):
    """Three bounded thread pools chained per photo: `submit` returns a future of the photo's
    outcome; an exception a stage raises (a database error, a bug) ends up in that future."""

    def __init__(self, stages: Stages[Outcome], *, render_threads: int, io_threads: int) -> None:
        self._stages = stages
        self._fetchers = ThreadPoolExecutor(max_workers=max(1, io_threads), thread_name_prefix="fetch")
        self._renderers = ThreadPoolExecutor(max_workers=max(1, render_threads), thread_name_prefix="render")
        self._writers = ThreadPoolExecutor(max_workers=max(1, io_threads), thread_name_prefix="store")
        self._chain: list[tuple[ThreadPoolExecutor, Stage]] = [
            (self._fetchers, stages.fetch),
            (self._renderers, stages.render),
            (self._writers, stages.store),
        ]

    def __enter__(self) -> PhotoPipeline[Outcome]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Wait for every photo in flight (each stage's pool in order, so no later stage is shut
        while an earlier one may still hand it work)."""
        for pool, _ in self._chain:
            pool.shutdown(wait=True)

    def submit(self, item: Any) -> Future[Outcome]:
        done: Future[Outcome] = Future()
        done.set_running_or_notify_cancel()
        self._hand_on(0, item, done)
        return done

    def _hand_on(self, index: int, payload: Any, done: Future[Outcome]) -> None:
        pool, _ = self._chain[index]
        try:
            pool.submit(self._run_stage, index, payload, done)
        except RuntimeError as exc:  # the pool was shut down under us
            self._stages.discard(payload)
            done.set_exception(exc)

    def _run_stage(self, index: int, payload: Any, done: Future[Outcome]) -> None:
        _, stage = self._chain[index]
        try:
            result = stage(payload)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the photo
            done.set_exception(exc)
            return
        if isinstance(result, self._stages.outcome_type):
            done.set_result(result)
        elif index + 1 < len(self._chain):
            self._hand_on(index + 1, result, done)
        else:
            done.set_exception(TypeError(f"the last stage returned {type(result).__name__}, not an outcome"))
