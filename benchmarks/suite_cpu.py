"""Where the test suite's CPU goes: the machine's whole CPU while `pytest` runs, by kind of process.

The suite is CPU-bound on a 2-core machine (issue 20): its wall time is about the CPU everything
it starts uses, over two. `/usr/bin/time` sees only the processes pytest waits for; the code
servers, run workers and webservers a daemon or `photo-pipeline ui` starts are not among them. So
this samples every process of the machine twice a second (`/proc/<pid>/stat`: user + system CPU),
files each under a kind read off its command line (xdist worker, code server, run worker, daemon,
`photo-pipeline <command>`, Chromium, PostgreSQL...), and prints, when pytest ends:

- the wall time and the machine's CPU split (`/proc/stat`: user, system, idle, iowait, steal);
- CPU seconds per kind of process, largest first. A process that starts and ends between two
  samples is missed, and so is the last half second of each; the machine's total is the
  reference (what is not attributed is printed too).

    flock /tmp/bench.lock .venv/bin/python benchmarks/suite_cpu.py [pytest arguments]

The pytest arguments default to `make test`'s (`-n 3 --dist loadgroup --no-loadscope-reorder -q`).
It needs the machine to itself: every process is counted, whoever started it. Prints; asserts nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 0.5
DEFAULT_ARGS = ["-n", "3", "--dist", "loadgroup", "--no-loadscope-reorder", "-q"]
# (kind, fragments of the command line any of which names it), first match wins.
KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("xdist worker (the tests themselves)", ("exec(eval(sys.stdin",)),
    ("Dagster code server", ("api grpc",)),
    ("Dagster run worker", ("multiprocessing.spawn", "execute_run", "api execute", "resume_run")),
    ("dagster-daemon", ("dagster-daemon", "dagster_daemon")),
    ("dagster-webserver", ("dagster-webserver", "dagster_webserver")),
    ("Celery worker", ("celery",)),
    ("pytest (controller)", ("pytest",)),
    ("dg", ("/dg ",)),
)
CLK_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def kind_of(command: str, name: str) -> str:
    if name.startswith("postgres") or command.startswith("postgres"):
        return "PostgreSQL"
    if "chrom" in name or "chromium" in command:
        return "Chromium"
    if name == "node":
        return "node (s3rver)"
    for kind, fragments in KINDS:
        if any(fragment in command for fragment in fragments):
            return kind
    words = command.split()
    for index, word in enumerate(words):
        if word.endswith("/photo-pipeline") or word == "photo-pipeline":
            return f"photo-pipeline {words[index + 1] if index + 1 < len(words) else ''}".strip()
    if name.startswith("python"):
        return "other Python"
    if name.startswith(("kworker", "kdamond", "ksoftirq", "rcu_")):
        return "kernel threads"
    return f"other ({name})"


class Sampler:
    """Every process's user + system CPU, twice a second; `by_kind()` is what each kind used since
    the sampler started (a process seen first after the start counts from its beginning)."""

    def __init__(self) -> None:
        self._seen: dict[int, list] = {}  # pid -> [kind, cpu now, cpu at first sight or 0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._sample(first=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(first=False)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample(first=False)

    def _sample(self, *, first: bool) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                command = None if pid in self._seen else Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # ended meanwhile
            name = stat[stat.find("(") + 1 : stat.rfind(")")]
            fields = stat[stat.rfind(")") + 2 :].split()
            cpu = (int(fields[11]) + int(fields[12])) / TICK
            if pid in self._seen:
                self._seen[pid][1] = cpu
            else:
                self._seen[pid] = [kind_of(command or "", name), cpu, cpu if first else 0.0]

    def by_kind(self) -> Counter[str]:
        used: Counter[str] = Counter()
        for kind, now, start in self._seen.values():
            used[kind] += now - start
        return used


def machine_clock() -> list[int]:
    return [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]


def main() -> int:
    args = sys.argv[1:] or DEFAULT_ARGS
    sampler = Sampler()
    clock_before, started = machine_clock(), time.monotonic()
    sampler.start()
    result = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=ROOT, check=False)
    sampler.stop()
    wall = time.monotonic() - started
    split = {field: (after - before) / TICK for field, before, after in zip(CLK_FIELDS, clock_before, machine_clock(), strict=True)}
    busy = sum(seconds for field, seconds in split.items() if field not in ("idle", "iowait"))
    used = sampler.by_kind()
    print(f"\npytest exit code {result.returncode}; wall {wall:.0f} s; machine CPU busy {busy:.0f} s on {os.cpu_count()} cores "
          f"({busy / wall:.2f} cores on average)")
    print("  " + ", ".join(f"{field} {seconds:.0f} s" for field, seconds in split.items()))
    print(f"  {'kind of process':<42} {'CPU s':>7} {'share':>6}")
    for kind, seconds in used.most_common(25):
        if seconds >= 1:
            print(f"  {kind:<42} {seconds:>7.1f} {seconds / busy:>6.1%}")
    attributed = sum(used.values())
    print(f"  {'not attributed (short-lived processes...)':<42} {busy - attributed:>7.1f} {(busy - attributed) / busy:>6.1%}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
