"""A run's progress through its album, as the run log shows it per batch: done of total, photos
per second, time left. Pure: the processing service feeds it counts and a clock."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    # Photos with an outcome (completed, failed, released) so far, and the album's photos this
    # run will have worked on: those done, those in flight and those still waiting.
    done: int
    total: int
    # Seconds since the run's first claim.
    elapsed: float

    @property
    def photos_per_second(self) -> float | None:
        return self.done / self.elapsed if self.done and self.elapsed > 0 else None

    @property
    def seconds_left(self) -> float | None:
        rate = self.photos_per_second
        return max(0, self.total - self.done) / rate if rate else None

    def describe(self) -> str:
        share = f" ({100 * self.done // self.total} %)" if self.total else ""
        parts = [f"{self.done} of {self.total} photos done{share}"]
        rate = self.photos_per_second
        if rate is not None:
            parts.append(f"{rate:.1f} photos/s")
        left = self.seconds_left
        if left is not None and self.done < self.total:
            parts.append(f"about {format_duration(left)} left")
        return ", ".join(parts)


def album_total(done_or_in_flight: int, still_waiting: int, limit: int) -> int:
    """What the run will have worked on: what it claimed plus what waits, never beyond the run's
    photo limit (the rest is the next run's)."""
    return min(limit, done_or_in_flight + still_waiting)


def format_duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
