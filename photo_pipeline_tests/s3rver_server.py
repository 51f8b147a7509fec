"""s3rver (Node; pinned in photo_pipeline_tests/s3rver/, installed into .cache/ by
scripts/ensure-s3rver.sh) started on a free loopback port: the suite's `s3rver_server` fixture and
the album benchmark's `--s3 s3rver` start it the same way."""

from __future__ import annotations

import json
import select
import subprocess
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
S3RVER_SOURCE = ROOT / "photo_pipeline_tests" / "s3rver"
S3RVER_MODULES = ROOT / ".cache" / "s3rver" / "node_modules"
STARTUP_SECONDS = 30
INSTALL_SECONDS = 300


class S3rverUnavailable(RuntimeError):
    """s3rver could not be installed or did not start; the message says which and why."""


def install_s3rver() -> None:
    """scripts/ensure-s3rver.sh (under its own lock; nothing to do when it is installed)."""
    install = subprocess.run(
        [str(ROOT / "scripts" / "ensure-s3rver.sh")], capture_output=True, text=True, timeout=INSTALL_SECONDS, check=False
    )
    if install.returncode != 0:
        raise S3rverUnavailable(f"s3rver could not be installed (scripts/ensure-s3rver.sh): {install.stderr.strip()}")


def start_s3rver(
    data: Path, access_key_id: str, secret_access_key: str, *, stderr: IO[bytes] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """s3rver serving `data`, in a session of its own, with these credentials registered; returns
    the process and its port once it listens. It ends on SIGTERM or when this process's end closes
    its stdin."""
    install_s3rver()
    process = subprocess.Popen(
        ["node", str(S3RVER_SOURCE / "serve.js"), str(S3RVER_MODULES), str(data), access_key_id, secret_access_key],
        stdin=subprocess.PIPE,  # closed by us or by our death: the server then ends too
        stdout=subprocess.PIPE,
        stderr=stderr,
        start_new_session=True,
    )
    return process, _announced_port(process, STARTUP_SECONDS)


def _announced_port(process: subprocess.Popen[bytes], seconds: float) -> int:
    """The port serve.js prints ({"port": N}) once it listens; its exit or silence is an error."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], seconds)
    line = process.stdout.readline() if ready else b""
    if not line:
        process.kill()
        raise S3rverUnavailable(f"s3rver did not announce its port within {seconds} s (exit code {process.poll()})")
    return int(json.loads(line)["port"])
