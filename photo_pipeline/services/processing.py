"""The processing service: claimed photos in, renditions in the bucket and final rows out.

It holds the per-photo rules (what a missing original means, what counts as the photo's fault and
what as the infrastructure's) and knows nothing of Dagster: the assets call `process_album` and
turn its report into metadata.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import IO, BinaryIO

from sqlalchemy.exc import SQLAlchemyError

from photo_pipeline.failures import FailureKind
from photo_pipeline.photos.claims import ClaimedPhoto, Completion, PhotoFacts, StoredRendition
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import PhotoRepository, utc_now
from photo_pipeline.rendering.memory_budget import (
    BudgetExceeded,
    MemoryBudget,
    return_freed_memory_promptly,
)
from photo_pipeline.rendering.render import (
    MemoryEstimate,
    RenderError,
    RenderOptions,
    Renditions,
    estimate_memory,
    render_renditions,
)
from photo_pipeline.services.pipeline import PhotoPipeline, Stages
from photo_pipeline.services.progress import Progress, album_total
from photo_pipeline.services.recording import CompletionRecorder
from photo_pipeline.services.removal import sweep_erased_photo
from photo_pipeline.storage import (
    SPOOL_MEMORY_BYTES,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectTooLarge,
    StorageError,
    keys,
)

DEFAULT_LOGGER = logging.getLogger(__name__)
MIB = 1024 * 1024


class Outcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    # Handed back to pending for a later run: original not there yet, or storage trouble.
    RELEASED = "released"
    # Our claim expired and someone else owns the photo now; we changed nothing.
    CLAIM_LOST = "claim_lost"


@dataclass(frozen=True)
class PhotoOutcome:
    photo_id: uuid.UUID
    album_id: uuid.UUID
    outcome: Outcome
    detail: str | None = None
    seconds: float = 0.0
    thumb_key: str | None = None
    preview_key: str | None = None
    thumb_bytes: int = 0
    preview_bytes: int = 0
    # Completed, but the pixels look damaged (e.g. a JPEG padded with grey); also in the row's error.
    warning: str | None = None
    # RELEASED because the store failed (not "original not there yet"): the run did not do its job.
    infrastructure: bool = False
    # COMPLETED without renditions: the album already has a photo with the same SHA-256.
    duplicate_of: uuid.UUID | None = None
    # The responsive sizes written (every size and format), and their bytes.
    sized_files: int = 0
    sized_bytes: int = 0
    # FAILED: whose fault it was (the file's, or the pipeline's: failures.py).
    failure_kind: FailureKind | None = None


@dataclass
class AlbumReport:
    album_id: uuid.UUID
    outcomes: list[PhotoOutcome] = field(default_factory=list)
    seconds: float = 0.0
    # One small rendered thumbnail, so the UI can show what came out.
    sample_thumbnail: bytes | None = None
    sample_content_type: str | None = None
    # Photos still `processing` under this run's claims after its album loop, given back then.
    left_over: list[uuid.UUID] = field(default_factory=list)
    # Claims the heartbeat found taken over (expired and claimed by another run) mid-run.
    lost_claims: list[uuid.UUID] = field(default_factory=list)
    # Expired claims of other runs that had used up their attempts and were failed by this run.
    exhausted: list[uuid.UUID] = field(default_factory=list)
    # Wall clock (UNIX time) of the first claim and of the last outcome recorded: what a run
    # spends outside this span is its fixed cost.
    started_at: float = 0.0
    finished_at: float = 0.0

    def count(self, outcome: Outcome) -> int:
        return sum(1 for o in self.outcomes if o.outcome is outcome)

    @property
    def rendered(self) -> int:
        """Photos completed with renditions of their own (duplicates are completed unrendered)."""
        return self.count(Outcome.COMPLETED) - len(self.duplicates)

    @property
    def failed(self) -> int:
        return self.count(Outcome.FAILED)

    @property
    def duplicates(self) -> list[PhotoOutcome]:
        return [o for o in self.outcomes if o.duplicate_of is not None]

    @property
    def flagged(self) -> int:
        return sum(1 for o in self.outcomes if o.warning is not None)

    @property
    def skipped(self) -> int:
        return self.count(Outcome.RELEASED) + self.count(Outcome.CLAIM_LOST)

    @property
    def infrastructure_releases(self) -> list[PhotoOutcome]:
        return [o for o in self.outcomes if o.outcome is Outcome.RELEASED and o.infrastructure]

    @property
    def unfinished(self) -> list[uuid.UUID]:
        """Photos this run claimed and did not finish for reasons of its own (storage trouble,
        claims still held at the end): the run must not read as a plain success."""
        return [o.photo_id for o in self.infrastructure_releases] + list(self.left_over)

    def unfinished_summary(self, limit: int = 20) -> str:
        parts = [f"{o.photo_id} ({o.detail})" for o in self.infrastructure_releases]
        parts += [f"{photo_id} (still processing after the run; given back)" for photo_id in self.left_over]
        more = f"; and {len(parts) - limit} more" if len(parts) > limit else ""
        return "; ".join(parts[:limit]) + more

    @property
    def photos_per_second(self) -> float:
        return self.rendered / self.seconds if self.seconds > 0 else 0.0


class DatabaseUnavailable(RuntimeError):
    """The photo table could not be written; the step should be retried as a whole."""


@dataclass(frozen=True)
class ProcessingLimits:
    batch_size: int = 32
    max_photos: int = 5000
    workers: int = 2
    missing_grace_seconds: int = 900
    # PHOTO_MEMORY_BUDGET_MB and PHOTO_MAX_ORIGINAL_MB (settings.py).
    memory_budget_bytes: int = 1536 * 1024 * 1024
    max_original_bytes: int = 200 * 1024 * 1024
    # None: claims are neither renewed nor taken back (tests of the bare loop).
    claim_lease_seconds: int | None = None
    claim_heartbeat_seconds: float = 30.0
    max_attempts: int | None = None
    # PHOTO_IO_THREADS: threads that fetch originals, and as many that upload renditions and
    # write rows, beside the `workers` render threads.
    io_threads: int = 4
    # PHOTO_PREFETCH_MB: originals fetched ahead of the render threads, in bytes (on top of the
    # memory budget, which counts decoded pixels).
    prefetch_bytes: int = 128 * 1024 * 1024


class ClaimHeartbeat:
    """Renews the claims a run holds every `interval` seconds, from a daemon thread, so a photo
    that waits behind slow ones (or renders slowly) keeps its lease; stopped when the run's album
    loop ends, exceptions included, after which unfinished claims simply expire.

    A claim the renewal does not find (finished or taken over) is dropped; one still held by the
    run at the next round was taken over and is reported (the writer's outcome finishes first
    and drops it at once, so one round of grace avoids reporting our own finished photos)."""

    def __init__(self, repository: PhotoRepository, interval: float, logger: logging.Logger, album_id: uuid.UUID) -> None:
        self._repository = repository
        self._interval = interval
        self._log = logger
        self._album_id = album_id
        self._held: dict[uuid.UUID, ClaimedPhoto] = {}
        self._suspect: set[uuid.UUID] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"claim-heartbeat-{album_id}", daemon=True)
        self.lost: list[uuid.UUID] = []
        self.renewals = 0

    def __enter__(self) -> ClaimHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=max(5.0, self._interval))

    def hold(self, claims: Iterable[ClaimedPhoto]) -> None:
        with self._lock:
            self._held.update((claim.id, claim) for claim in claims)

    def drop(self, claim: ClaimedPhoto) -> None:
        with self._lock:
            self._held.pop(claim.id, None)
            self._suspect.discard(claim.id)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.renew_once()

    def renew_once(self) -> None:
        with self._lock:
            held = list(self._held.values())
        if not held:
            return
        try:
            renewed = self._repository.renew_claims(held)
        except SQLAlchemyError:
            self._log.exception(
                "album %s: could not renew %d claim(s); they expire after the lease unless a later renewal succeeds",
                self._album_id,
                len(held),
            )
            return
        self.renewals += 1
        with self._lock:
            taken = [photo_id for photo_id in self._suspect if photo_id in self._held]
            for photo_id in taken:
                del self._held[photo_id]
            self._suspect = {c.id for c in held if c.id not in renewed and c.id in self._held}
        if taken:
            self.lost.extend(taken)
            self._log.warning(
                "album %s: %d claim(s) were taken over by another run before this one finished them "
                "(their lease expired; this run's results for them will be discarded): %s",
                self._album_id,
                len(taken),
                ", ".join(map(str, taken)),
            )


class PhotoProcessor:
    """Renders an album's claimed photos through a bounded pipeline (pipeline.py): I/O threads
    fetch originals ahead of the render threads and upload renditions and write rows behind them.

    Pillow releases the GIL while decoding, resampling and encoding, so threads keep every core
    busy without the cost of shipping images between processes.
    """

    def __init__(
        self,
        repository: PhotoRepository,
        store: ObjectStore,
        render_options: RenderOptions,
        limits: ProcessingLimits = ProcessingLimits(),
        *,
        logger: logging.Logger = DEFAULT_LOGGER,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._repository = repository
        self._store = store
        self._render_options = render_options
        self._limits = limits
        self._log = logger
        self._clock = clock
        # One budget for everything this processor renders: a processor serves one run.
        self._budget = MemoryBudget(limits.memory_budget_bytes)
        # Originals held between their download and the end of their render: without a bound,
        # the fetch threads would spool the whole album while the render threads fall behind.
        self._originals = MemoryBudget(limits.prefetch_bytes)
        # Without it the budget bounds live pixels but not the process's RSS (see the function).
        return_freed_memory_promptly()
        # (album, SHA-256) -> the photo of this run that first had it: two copies of one original
        # in the same run are rendered once, although neither is in the table as completed yet.
        self._first_by_checksum: dict[tuple[uuid.UUID, str], _FirstCopy] = {}
        self._checksum_lock = threading.Lock()
        # Completed rows written a batch per transaction (recording.py).
        self._recorder = CompletionRecorder(repository.complete_many)
        # album -> checksums of its completed photos when this processor first looked (once a run).
        self._album_checksums: dict[uuid.UUID, set[str]] = {}

    @property
    def memory_budget(self) -> MemoryBudget:
        """The run's budget (its `peak` is reported by the benchmark and checked by tests)."""
        return self._budget

    @property
    def originals_budget(self) -> MemoryBudget:
        """Bytes of originals fetched ahead of the render threads (spooled, in memory or on disk):
        its `peak` shows how many were held at once."""
        return self._originals

    def process_album(
        self, album_id: uuid.UUID, worker: str, *, rerender: bool = False
    ) -> AlbumReport:
        """Claim and render the album's pending photos until none are left (or the per-run limit
        is reached, so one huge album cannot hold a run for hours). Claims come a batch at a time,
        the next batch once the pipeline runs low, so the render threads never wait for a batch's
        stragglers. With `rerender`, completed photos are claimed and rendered again too."""
        statuses = (PhotoStatus.PENDING, PhotoStatus.COMPLETED) if rerender else (PhotoStatus.PENDING,)
        self._forget_checksums()
        report = AlbumReport(album_id=album_id, started_at=time.time())
        started = time.perf_counter()
        attempted: set[uuid.UUID] = set()
        tokens: set[str] = set()
        reported = 0  # the album's total as last logged
        with self._heartbeat(album_id) as heartbeat:
            run = _PipelineRun(self, report, heartbeat)
            with run:
                while not run.stopped:
                    room = min(self._limits.batch_size, self._limits.max_photos - len(attempted))
                    if room <= 0:
                        break
                    self._fail_exhausted_claims(album_id, report)
                    claims = self._repository.claim_batch(
                        album_id,
                        worker,
                        room,
                        exclude=attempted,
                        from_statuses=statuses,
                        lease_seconds=self._limits.claim_lease_seconds,
                        max_attempts=self._limits.max_attempts,
                    )
                    if not claims:
                        break
                    attempted.update(claim.id for claim in claims)
                    tokens.update(claim.claim for claim in claims)
                    run.submit(claims)
                    reported = self._log_progress(report, len(attempted), rerender=rerender, at_least=reported)
                    run.wait_until_low(self._refill_at)
            report.lost_claims = list(heartbeat.lost)
        if attempted:
            self._log_progress(report, len(attempted), rerender=rerender, at_least=reported)
        self._give_back_left_over(tokens, report)
        report.seconds = time.perf_counter() - started
        report.finished_at = time.time()
        run.raise_database_errors()
        return report

    def _log_progress(self, report: AlbumReport, attempted: int, *, rerender: bool, at_least: int = 0) -> int:
        """One line per batch in the run log, so a long run is not a black box until it ends.
        Returns the total it reported, the floor for the next line: a re-render's photos go back
        to `completed`, so only its first count of them holds."""
        try:
            counts = self._repository.status_counts(report.album_id)
        except SQLAlchemyError as exc:
            # Progress is a courtesy: the photos' own writes report (and fail the step on) an
            # unreachable database; this line only says the count is missing.
            self._log.warning("album %s: no progress count (the photo table did not answer: %s)", report.album_id, exc)
            return at_least
        waiting = counts[PhotoStatus.PENDING] + (counts[PhotoStatus.COMPLETED] if rerender and not at_least else 0)
        total = max(at_least, album_total(attempted, waiting, self._limits.max_photos))
        progress = Progress(done=len(report.outcomes), total=total, elapsed=time.time() - report.started_at)
        self._log.info("album %s: %s", report.album_id, progress.describe())
        return total

    @property
    def _refill_at(self) -> int:
        """Claim the next batch while this many photos are still in the pipeline: enough to keep
        every render thread and the prefetch busy during the claim's round trip."""
        return 2 * max(1, self._limits.workers) + max(1, self._limits.io_threads)

    def _heartbeat(self, album_id: uuid.UUID) -> ClaimHeartbeat:
        return ClaimHeartbeat(self._repository, self._limits.claim_heartbeat_seconds, self._log, album_id)

    def _fail_exhausted_claims(self, album_id: uuid.UUID, report: AlbumReport) -> None:
        if self._limits.claim_lease_seconds is None or self._limits.max_attempts is None:
            return
        failed = self._repository.fail_exhausted_claims(album_id, self._limits.claim_lease_seconds, self._limits.max_attempts)
        if failed:
            report.exhausted.extend(failed)
            self._log.warning(
                "album %s: %d photo(s) whose claim expired after %d attempts are now failed: %s",
                album_id,
                len(failed),
                self._limits.max_attempts,
                ", ".join(map(str, failed)),
            )

    def _give_back_left_over(self, tokens: set[str], report: AlbumReport) -> None:
        """Every photo still `processing` under this run's claims once the loop is over was left
        unfinished (it should not happen: each claim ends completed, failed or released); give it
        back now rather than after the lease, and let the report say so."""
        left_over = self._repository.release_held(tokens, "left unfinished by its run; requeued")
        if left_over:
            report.left_over.extend(left_over)
            self._log.error(
                "album %s: %d photo(s) were still processing under this run's claims after its loop; given back: %s",
                report.album_id,
                len(left_over),
                ", ".join(map(str, left_over)),
            )

    def process_claims(self, claims: Iterable[ClaimedPhoto], album_id: uuid.UUID) -> AlbumReport:
        """Render photos that were claimed elsewhere (re-runs of chosen photos)."""
        self._forget_checksums()
        report = AlbumReport(album_id=album_id, started_at=time.time())
        started = time.perf_counter()
        claims = list(claims)
        with self._heartbeat(album_id) as heartbeat:
            run = _PipelineRun(self, report, heartbeat)
            with run:
                run.submit(claims)
            report.lost_claims = list(heartbeat.lost)
        self._give_back_left_over({claim.claim for claim in claims}, report)
        report.seconds = time.perf_counter() - started
        report.finished_at = time.time()
        run.raise_database_errors()
        return report

    def _stages(self, report: AlbumReport) -> Stages[PhotoOutcome]:
        return Stages(
            fetch=self._fetch,
            render=self._render,
            store=lambda rendered: self._store_renditions(rendered, report),
            outcome_type=PhotoOutcome,
            discard=self._discard,
        )

    def _discard(self, payload: object) -> None:
        """A payload the next stage will not run (the pipeline shut down): its original given back,
        and a copy waiting on a rendered first copy told it will not be recorded."""
        if isinstance(payload, _Fetched):
            payload.discard()
        elif isinstance(payload, _Rendered):
            self._settle_first_copy(payload.claim, payload.sha256, rendered=False)

    def _give_back(self, claims: Iterable[ClaimedPhoto]) -> None:
        """Best effort: return claims we could not finish, so they need not wait for the lease."""
        for claim in claims:
            try:
                self._repository.release(claim, "database error while recording the result; will retry")
            except SQLAlchemyError:
                self._log.exception("could not release photo %s; its claim will expire after the lease", claim.id)

    # -- the stages (see pipeline.py); each returns the next stage's payload or the final outcome

    def _fetch(self, entered: _Entered) -> _Fetched | PhotoOutcome:
        """The original into a spooled file, once the originals budget has room. One GET, no HEAD:
        its own headers (size, ETag) are checked against the maximum original size, and reserve
        the originals budget, before a byte of the body is read."""
        claim, started = entered.claim, entered.started
        reservation = _Reservation(self._originals)
        try:
            original, sha256 = hashed_download(
                self._store, claim.original_key, self._limits.max_original_bytes, on_headers=reservation.reserve
            )
        except ObjectNotFound:
            reservation.release()
            return self._release_missing(claim, started)
        except ObjectTooLarge as exc:
            reservation.release()
            # Its declared size is over (refused before the body), or the body outgrew what the
            # headers said (replaced meanwhile, or a lying server).
            reason = original_too_large_reason(
                claim.original_key, exc.size, self._limits.max_original_bytes, while_reading=exc.size is None
            )
            self._log.warning("photo %s: %s", claim.id, reason)
            return self._fail(claim, reason, started, FailureKind.TOO_LARGE)
        except StorageError as exc:
            reservation.release()
            self._log.exception("photo %s: could not read %s", claim.id, claim.original_key)
            return self._release(claim, f"storage error reading the original: {exc}", started)
        except BaseException:
            reservation.release()
            raise
        if reservation.info is None:  # every store calls on_headers before the body
            original.close()
            raise RuntimeError(f"the store gave no headers for {claim.original_key}")
        return _Fetched(claim, started, reservation.info, original, reservation.held, self._originals, sha256)

    def _duplicate_of(self, claim: ClaimedPhoto, sha256: str) -> uuid.UUID | None:
        """The photo of the same album this one duplicates: one completed earlier, or one this
        run took first; None when this photo is the first with its checksum."""
        # The table is asked only when the album had this checksum as the run began (read once a
        # run, not once a photo); a copy completed by another run since is rendered again, as when
        # two runs check at the same moment.
        if sha256 in self._completed_checksums(claim.album_id):
            first = self._repository.first_with_checksum(claim.album_id, sha256, other_than=claim.id)
            if first is not None:
                return first
        with self._checksum_lock:
            copy = self._first_by_checksum.setdefault((claim.album_id, sha256), _FirstCopy(claim.id))
        if copy.photo_id == claim.id:
            return None
        # Another thread is rendering the same bytes: its outcome decides, once its row is written
        # (the copy takes that row's keys). A copy of a photo that could not be rendered or
        # recorded is tried (and reported) on its own.
        if not copy.settled.wait(FIRST_COPY_WAIT_SECONDS):
            return None
        return copy.photo_id if copy.rendered else None

    def _forget_checksums(self) -> None:
        """Each run (each call) reads the albums' checksums afresh."""
        with self._checksum_lock:
            self._album_checksums.clear()

    def _completed_checksums(self, album_id: uuid.UUID) -> set[str]:
        with self._checksum_lock:
            known = self._album_checksums.get(album_id)
            if known is None:
                known = self._album_checksums[album_id] = self._repository.completed_checksums(album_id)
            return known

    def _settle_first_copy(self, claim: ClaimedPhoto, sha256: str, *, rendered: bool) -> None:
        with self._checksum_lock:
            copy = self._first_by_checksum.get((claim.album_id, sha256))
        if copy is not None and copy.photo_id == claim.id and not copy.settled.is_set():
            copy.rendered = rendered
            copy.settled.set()

    def _complete_duplicate(self, fetched: _Fetched, original: uuid.UUID) -> PhotoOutcome:
        claim, started = fetched.claim, fetched.started
        detail = f"duplicate of photo {original} (same SHA-256); not rendered again"
        if not self._repository.complete_duplicate(
            claim,
            duplicate_of=original,
            original_sha256=fetched.sha256,
            original_bytes=fetched.head.size,
            original_etag=fetched.head.etag,
        ):
            return self._claim_lost(claim, started)
        self._log.info("photo %s (%s): %s", claim.id, keys.display_key(claim.original_key), detail)
        return PhotoOutcome(
            photo_id=claim.id,
            album_id=claim.album_id,
            outcome=Outcome.COMPLETED,
            detail=detail,
            seconds=time.perf_counter() - started,
            duplicate_of=original,
        )

    def _render(self, fetched: _Fetched) -> _Rendered | PhotoOutcome:
        """Render within the memory budget; the original is given back whatever happens."""
        claim, started = fetched.claim, fetched.started
        try:
            duplicate_of = self._duplicate_of(claim, fetched.sha256)
        except BaseException:
            fetched.discard()
            raise
        if duplicate_of is not None:
            fetched.discard()
            return self._complete_duplicate(fetched, duplicate_of)
        rendered = False
        try:
            renditions = self._render_within_budget(fetched.original)
        except RenderError as exc:
            self._log.warning("photo %s: cannot be rendered: %s", claim.id, exc)
            return self._fail(claim, f"cannot render {claim.original_key}: {exc}", started, exc.kind)
        except Exception as exc:  # noqa: BLE001 - one photo's bug must not stop the album
            self._log.exception("photo %s: unexpected error while rendering", claim.id)
            return self._fail(
                claim, f"unexpected error while rendering: {type(exc).__name__}: {exc}", started, FailureKind.UNEXPECTED
            )
        else:
            rendered = True
        finally:
            if not rendered:  # a rendered first copy settles once its row is written (store stage)
                self._settle_first_copy(claim, fetched.sha256, rendered=False)
            fetched.discard()
        if renditions.warning is not None:
            self._log.warning("photo %s (%s): %s", claim.id, claim.original_key, renditions.warning)
        return _Rendered(claim, started, fetched.head, renditions, fetched.sha256)

    def _store_renditions(self, rendered: _Rendered, report: AlbumReport) -> PhotoOutcome:
        """Upload both renditions, then record them in the row (fenced by the claim's token); a
        copy of the same bytes waiting on this photo learns whether its row is completed."""
        completed = False
        try:
            outcome = self._upload_and_record(rendered, report)
            completed = outcome.outcome is Outcome.COMPLETED
            return outcome
        finally:
            self._settle_first_copy(rendered.claim, rendered.sha256, rendered=completed)

    def _upload_and_record(self, rendered: _Rendered, report: AlbumReport) -> PhotoOutcome:
        self._recorder.uploading()
        recording = False
        try:
            outcome = self._upload(rendered, report)
            if isinstance(outcome, PhotoOutcome):
                return outcome
            recording = True  # from here the recorder counts the photo as arrived
            return self._record(rendered, *outcome)
        finally:
            if not recording:
                self._recorder.abandoned()

    def _upload(self, rendered: _Rendered, report: AlbumReport) -> PhotoOutcome | tuple[str, str, list[StoredRendition]]:
        """The renditions uploaded: their keys, or the photo's outcome when the store failed."""
        claim, started, head, renditions = rendered.claim, rendered.started, rendered.head, rendered.renditions
        try:
            thumb_key, preview_key = self._write_renditions(claim, renditions)
            files = self._write_sized(claim, renditions, thumb_key, preview_key)
        except StorageError as exc:
            self._log.exception("photo %s: could not write renditions", claim.id)
            return self._release(claim, f"storage error writing renditions: {exc}", started)
        if report.sample_thumbnail is None:
            report.sample_thumbnail = renditions.thumbnail.data
            report.sample_content_type = renditions.thumbnail.content_type
        return thumb_key, preview_key, files

    def _record(self, rendered: _Rendered, thumb_key: str, preview_key: str, files: list[StoredRendition]) -> PhotoOutcome:
        """The row completed (in a batch with others', each fenced by its claim's token)."""
        claim, started, head, renditions = rendered.claim, rendered.started, rendered.head, rendered.renditions
        completion = Completion(
            claim,
            thumb_key=thumb_key,
            preview_key=preview_key,
            width=renditions.source_width,
            height=renditions.source_height,
            original_bytes=head.size,
            # From the GET's own headers: the ETag of exactly the bytes rendered.
            original_etag=head.etag,
            thumb_bytes=len(renditions.thumbnail.data),
            preview_bytes=len(renditions.preview.data),
            note=renditions.warning,
            facts=PhotoFacts(original_sha256=rendered.sha256, thumbhash=renditions.thumbhash, **renditions.capture.as_dict()),
            files=files,
        )
        if not self._recorder.complete(completion):
            return self._claim_lost(claim, started)
        return PhotoOutcome(
            photo_id=claim.id,
            album_id=claim.album_id,
            outcome=Outcome.COMPLETED,
            seconds=time.perf_counter() - started,
            thumb_key=thumb_key,
            preview_key=preview_key,
            thumb_bytes=len(renditions.thumbnail.data),
            preview_bytes=len(renditions.preview.data),
            warning=renditions.warning,
            # What this photo uploaded beside the preview and thumbnail (a shared size names their key).
            sized_files=sum(1 for file in files if file.key not in (thumb_key, preview_key)),
            sized_bytes=sum(file.bytes for file in files if file.key not in (thumb_key, preview_key)),
        )

    def _render_within_budget(self, original: BinaryIO) -> Renditions:
        """Reserve the photo's working set, from its header, before decoding a pixel; wait while
        other threads hold the budget; give it back once the renditions are encoded."""
        estimate = estimate_memory(original, self._render_options)
        try:
            self._budget.acquire(estimate.working_bytes)
        except BudgetExceeded as exc:
            raise RenderError(over_budget_reason(estimate, self._budget.total_bytes), FailureKind.TOO_LARGE) from exc
        try:
            return render_renditions(original, self._render_options)
        finally:
            self._budget.release(estimate.working_bytes)

    def _write_renditions(self, claim: ClaimedPhoto, renditions: Renditions) -> tuple[str, str]:
        fmt = renditions.preview.format
        thumb_key = keys.thumb_key(claim.album_id, claim.id, fmt)
        preview_key = keys.preview_key(claim.album_id, claim.id, fmt)
        self._store.put(thumb_key, renditions.thumbnail.data, renditions.thumbnail.content_type)
        self._store.put(preview_key, renditions.preview.data, renditions.preview.content_type)
        return thumb_key, preview_key

    def _write_sized(self, claim: ClaimedPhoto, renditions: Renditions, thumb_key: str, preview_key: str) -> list[StoredRendition]:
        """Upload every responsive size in every format (`processed/{size}/...`), but a size whose
        bytes are the preview's or the thumbnail's (the renderer encodes such a size once: the
        same object) names that key instead of uploading the same bytes twice."""
        shared = {id(renditions.preview): preview_key, id(renditions.thumbnail): thumb_key}
        files = []
        for sized in renditions.sized:
            rendition = sized.rendition
            key = shared.get(id(rendition))
            if key is None:
                key = keys.sized_key(claim.album_id, claim.id, sized.label, rendition.format)
                self._store.put(key, rendition.data, rendition.content_type)
            files.append(
                StoredRendition(
                    key=key, size=sized.label, format=rendition.format, width=rendition.width, height=rendition.height, bytes=len(rendition.data)
                )
            )
        return files

    def _release_missing(self, claim: ClaimedPhoto, started: float) -> PhotoOutcome:
        # Object stores and clients lag behind the row: a missing original is "not yet", and
        # only reconciliation (after the grace period) may call it lost.
        age = (self._clock() - claim.created_at).total_seconds()
        if age < self._limits.missing_grace_seconds:
            reason = f"original {claim.original_key} not in the bucket yet ({age:.0f}s after upload began); will retry"
        else:
            reason = (
                f"original {claim.original_key} not found {age:.0f}s after upload began; "
                "reconciliation will flag it missing"
            )
        self._log.info("photo %s: %s", claim.id, reason)
        return self._release(claim, reason, started, infrastructure=False)

    def _release(self, claim: ClaimedPhoto, reason: str, started: float, *, infrastructure: bool = True) -> PhotoOutcome:
        if not self._repository.release(claim, reason):
            return self._claim_lost(claim, started)
        return PhotoOutcome(
            photo_id=claim.id,
            album_id=claim.album_id,
            outcome=Outcome.RELEASED,
            detail=reason,
            seconds=time.perf_counter() - started,
            infrastructure=infrastructure,
        )

    def _fail(self, claim: ClaimedPhoto, reason: str, started: float, kind: FailureKind) -> PhotoOutcome:
        if not self._repository.fail(claim, reason, kind):
            return self._claim_lost(claim, started)
        return PhotoOutcome(
            photo_id=claim.id,
            album_id=claim.album_id,
            outcome=Outcome.FAILED,
            detail=reason,
            seconds=time.perf_counter() - started,
            failure_kind=kind,
        )

    def _claim_lost(self, claim: ClaimedPhoto, started: float) -> PhotoOutcome:
        detail = self._why_claim_lost(claim)
        self._log.warning("photo %s: %s", claim.id, detail)
        return PhotoOutcome(
            photo_id=claim.id,
            album_id=claim.album_id,
            outcome=Outcome.CLAIM_LOST,
            detail=detail,
            seconds=time.perf_counter() - started,
        )

    def _why_claim_lost(self, claim: ClaimedPhoto) -> str:
        """What became of a photo whose outcome this run could not write. One erased meanwhile has
        the files this run wrote deleted here: the erase's own deletes may have run before them."""
        current = self._repository.get(claim.id)
        if current is not None and current.status is PhotoStatus.TRASHED:
            return "moved to the trash while it rendered; result discarded (its files are kept with it)"
        if current is None:
            swept = sweep_erased_photo(self._repository, self._store, claim.id, claim.album_id)
            if swept is not None:
                removed = f"{len(swept.removed_keys)} object(s) carrying its id removed"
                return f"erased while it rendered; result discarded, {swept.note or removed}"
            return "deleted while it rendered (cleaned up or purged); result discarded"
        return "claim expired and was taken over; result discarded"


@dataclass(frozen=True)
class _Entered:
    """A claimed photo as it enters the pipeline (its outcome's seconds count from here)."""

    claim: ClaimedPhoto
    started: float


class _Reservation:
    """An original's share of the originals budget, taken from its GET's headers (an original
    larger than the whole budget takes all of it: alone, never refused). Waiting for room holds
    the response open, unread: at most one connection per fetch thread."""

    def __init__(self, budget: MemoryBudget) -> None:
        self._budget = budget
        self.held = 0
        self.info: ObjectInfo | None = None

    def reserve(self, info: ObjectInfo) -> None:
        held = min(max(info.size, 1), self._budget.total_bytes)
        self._budget.acquire(held)
        self.held, self.info = held, info

    def release(self) -> None:
        if self.held:
            self._budget.release(self.held)
            self.held = 0


@dataclass
class _Fetched:
    """An original spooled and holding `held` bytes of the originals budget until discarded."""

    claim: ClaimedPhoto
    started: float
    head: ObjectInfo
    original: IO[bytes]
    held: int
    budget: MemoryBudget
    sha256: str  # of the bytes streamed into `original`
    _discarded: bool = False

    def discard(self) -> None:
        if self._discarded:
            return
        self._discarded = True
        try:
            self.original.close()
        finally:
            self.budget.release(self.held)


@dataclass(frozen=True)
class _Rendered:
    claim: ClaimedPhoto
    started: float
    head: ObjectInfo
    renditions: Renditions
    sha256: str




class _PipelineRun:
    """One run's photos in the pipeline: hands claims in (held by the heartbeat until their
    outcome is known), collects outcomes into the report as they finish, and keeps database
    errors (and bugs) to raise once every photo in flight has finished: an infrastructure error
    fails the step after the photos already under way are recorded, never in the middle."""

    def __init__(self, processor: PhotoProcessor, report: AlbumReport, heartbeat: ClaimHeartbeat) -> None:
        self._processor = processor
        self._report = report
        self._heartbeat = heartbeat
        limits = processor._limits
        self._pipeline = PhotoPipeline(processor._stages(report), render_threads=limits.workers, io_threads=limits.io_threads)
        self._in_flight: dict[Future[PhotoOutcome], ClaimedPhoto] = {}
        self._database_errors: list[tuple[ClaimedPhoto, SQLAlchemyError]] = []
        self._unexpected: BaseException | None = None

    def __enter__(self) -> _PipelineRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.wait_until_low(0)
        finally:
            self._pipeline.shutdown()
        if self._database_errors:
            self._processor._give_back(claim for claim, _ in self._database_errors)

    @property
    def stopped(self) -> bool:
        """No more claims once the database or a bug has failed a photo: the step will fail."""
        return bool(self._database_errors) or self._unexpected is not None

    def submit(self, claims: list[ClaimedPhoto]) -> None:
        self._heartbeat.hold(claims)
        for claim in claims:
            future = self._pipeline.submit(_Entered(claim, time.perf_counter()))
            future.add_done_callback(lambda _, claim=claim: self._heartbeat.drop(claim))
            self._in_flight[future] = claim

    def wait_until_low(self, photos: int) -> None:
        """Collect outcomes until at most `photos` are still in the pipeline."""
        while len(self._in_flight) > photos:
            finished, _ = wait(self._in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                self._collect(future)

    def _collect(self, future: Future[PhotoOutcome]) -> None:
        claim = self._in_flight.pop(future)
        try:
            self._report.outcomes.append(future.result())
        except SQLAlchemyError as exc:
            self._database_errors.append((claim, exc))
        except Exception as exc:  # noqa: BLE001 - re-raised once the photos in flight are recorded
            self._processor._log.error("photo %s: unexpected error in the pipeline", claim.id, exc_info=exc)
            self._unexpected = self._unexpected or exc

    def raise_database_errors(self) -> None:
        if self._database_errors:
            first_claim, first_error = self._database_errors[0]
            raise DatabaseUnavailable(
                f"could not record the outcome of {len(self._database_errors)} photo(s) of album "
                f"{self._report.album_id} (first: photo {first_claim.id}): {first_error}"
            ) from first_error
        if self._unexpected is not None:
            raise self._unexpected


# How long a copy waits for the first of its checksum to be rendered by another thread (a render
# takes well under a second; this bounds the wait on a pathological one).
FIRST_COPY_WAIT_SECONDS = 300.0


@dataclass
class _FirstCopy:
    """The first photo of a run with a given checksum, and whether its row was completed (settled
    once its renditions are recorded, so a copy completed as its duplicate can take its keys)."""

    photo_id: uuid.UUID
    settled: threading.Event = field(default_factory=threading.Event)
    rendered: bool = False


class _HashingWriter:
    """A file-like `write` that hashes what passes through on its way into `out`: the checksum
    of the original is made while it is streamed, never by reading it a second time."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.hash = hashlib.sha256()

    def write(self, chunk: bytes) -> int:
        self.hash.update(chunk)
        return self._out.write(chunk)


def hashed_download(
    store: ObjectStore, key: str, max_bytes: int, *, on_headers: Callable[[ObjectInfo], None] | None = None
) -> tuple[IO[bytes], str]:
    """The object streamed into a spooled temporary file (rewound; the caller closes it) and the
    hex SHA-256 of its bytes, computed on the way; ObjectTooLarge past `max_bytes`; `on_headers`
    as in `ObjectStore.download`."""
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES, prefix="original-")  # noqa: SIM115 (the caller closes it)
    try:
        writer = _HashingWriter(spool)
        store.download(key, writer, max_bytes, on_headers=on_headers)  # type: ignore[arg-type]  # only write() is used
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool, writer.hash.hexdigest()


def original_too_large_reason(key: str, size: int | None, max_bytes: int, *, while_reading: bool = False) -> str:
    shown = f"{size / MIB:,.1f} MiB ({size:,} bytes)" if size is not None else "larger than its headers said"
    what = "the download was stopped at the limit" if while_reading else "not downloaded"
    return (
        f"original {key} is {shown}, over the maximum original size of {max_bytes / MIB:,.0f} MiB "
        f"(PHOTO_MAX_ORIGINAL_MB); {what}"
    )


def over_budget_reason(estimate: MemoryEstimate, budget_bytes: int) -> str:
    return (
        f"too large to render within the run's memory budget: {estimate.describe()}, "
        f"more than the whole budget of {budget_bytes / MIB:,.0f} MiB (PHOTO_MEMORY_BUDGET_MB)"
    )
