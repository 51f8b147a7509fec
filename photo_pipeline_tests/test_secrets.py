"""No usable secret in any output: presigned URLs are shown without their query string in the CLI,
the logs (urllib3's retry warnings included), errors and doctor's checks.

The failing uploads are real: the public endpoint presigned URLs are signed for is a closed port
on loopback (connection refused, retried by urllib3), or the bucket answers with an S3 error.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from photo_pipeline.cli import samples
from photo_pipeline.photos.repository import PhotoRepository
from photo_pipeline.redaction import (
    RedactingFilter,
    redact,
    s3_error_summary,
    url_for_display,
)
from photo_pipeline_tests.conftest import S3_TEST_CREDENTIALS, S3Server

BIN = Path(sys.executable).parent
# What must never be printed: the signature and credential parameters of a presigned URL, and
# the secret key itself.
FORBIDDEN = ("X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", S3_TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

SIGNED_URL = (
    "http://minio.internal:9000/photos/raw/a/b.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAEXAMPLE%2F20261129%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261129T000000Z"
    "&X-Amz-Expires=900&X-Amz-SignedHeaders=content-type%3Bhost&X-Amz-Signature=0123456789abcdef"
)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_no_secret(text: str) -> None:
    # rich folds long lines, possibly inside a word: look at the text without any white space too.
    folded = "".join(text.split())
    for forbidden in FORBIDDEN:
        assert forbidden not in text and forbidden not in folded, f"{forbidden!r} leaked:\n{text}"


def flat(result: subprocess.CompletedProcess[str]) -> str:
    """stdout and stderr with rich's line folding undone (runs of white space as one space)."""
    return " ".join((result.stdout + result.stderr).split())


def test_redact_removes_signed_query_strings_and_secret_parameters() -> None:
    message = f"Max retries exceeded with url: {SIGNED_URL} (Caused by NewConnectionError)"
    cleaned = redact(message)
    assert_no_secret(cleaned)
    assert "http://minio.internal:9000/photos/raw/a/b.jpg?<redacted> (Caused by" in cleaned
    header = "Authorization: AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/x, SignedHeaders=host, Signature=abcdef"
    assert "abcdef" not in redact(header) and "AKIAEXAMPLE" not in redact(header)
    # The local folder store's own signature parameter too.
    assert "deadbeef" not in redact("file:///tmp/objects/raw/x.jpg?X-Expires=1&X-Signature=deadbeef")
    # Ordinary text is left alone.
    assert redact("photo 1234 failed: not an image?") == "photo 1234 failed: not an image?"


def test_url_for_display_and_s3_error_summary_drop_what_the_server_echoes() -> None:
    assert url_for_display(SIGNED_URL) == "http://minio.internal:9000/photos/raw/a/b.jpg"
    body = (
        "<Error><Code>SignatureDoesNotMatch</Code><Message>The signature does not match</Message>"
        "<AWSAccessKeyId>AKIAEXAMPLE</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256 x</StringToSign>"
        "<SignatureProvided>0123456789abcdef</SignatureProvided>"
        "<CanonicalRequest>PUT /photos/raw/a/b.jpg X-Amz-Credential=AKIAEXAMPLE</CanonicalRequest></Error>"
    )
    summary = s3_error_summary(body)
    assert summary == "SignatureDoesNotMatch: The signature does not match"
    assert "AKIAEXAMPLE" not in s3_error_summary("<html>" + body)  # not XML: redacted text


def test_the_log_filter_redacts_library_messages(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("urllib3.connectionpool.test")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.WARNING):
        logger.warning("Retrying (%s) after connection broken: %s", "Retry(total=2)", SIGNED_URL)
    assert caplog.records and "?<redacted>" in caplog.text
    assert_no_secret(caplog.text)


@pytest.fixture
def s3_cli_env(photo_db: str, s3_server: S3Server, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTO_", "DAGSTER_", "AWS_"))}
    env.update(S3_TEST_CREDENTIALS)
    env.update(
        {
            "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url,
            "PHOTO_DATABASE_URL": photo_db,
            "PHOTO_BUCKET": s3_server.new_bucket(),
            "PHOTO_PIPELINE_HOME": str(tmp_path / "home"),
        }
    )
    return env


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "photo-pipeline"), "-v", *args], env=env, capture_output=True, text=True, timeout=180
    )


def test_a_failing_upload_and_doctor_print_no_signature(s3_cli_env: dict[str, str], tmp_path: Path) -> None:
    photo = tmp_path / "beach.jpg"
    photo.write_bytes(samples.photo_jpeg(640, 480))
    env = {**s3_cli_env, "PHOTO_PUBLIC_ENDPOINT_URL": f"http://127.0.0.1:{closed_port()}"}

    upload = run_cli(env, "upload", str(uuid.uuid4()), str(photo))
    output = flat(upload)
    assert_no_secret(upload.stdout + upload.stderr)
    assert upload.returncode == 1, output
    assert "failed" in output and "Connection refused" in output  # the cause is still there
    assert "Retrying" in output  # urllib3's own retry warnings went through the filter
    assert "?<redacted>" in output
    assert "Traceback" not in output
    assert_no_secret(output)
    # Nothing landed, so the cleanup took the row away and says so.
    assert "row and object cleaned up" in output
    assert PhotoRepository.from_url(env["PHOTO_DATABASE_URL"]).status_counts_by_album() == {}

    doctor = run_cli(env, "doctor")
    output = flat(doctor)
    assert doctor.returncode == 1, output
    assert "presigned PUT" in output and "fail" in output
    assert_no_secret(output)


def test_an_s3_error_answer_is_summarised_not_echoed(s3_cli_env: dict[str, str], tmp_path: Path) -> None:
    photo = tmp_path / "beach.jpg"
    photo.write_bytes(samples.photo_jpeg(320, 240))
    # The bucket does not exist: the PUT is answered with an S3 error document.
    env = {**s3_cli_env, "PHOTO_BUCKET": f"missing-{uuid.uuid4().hex[:8]}"}
    upload = run_cli(env, "upload", str(uuid.uuid4()), str(photo))
    output = flat(upload)
    assert upload.returncode == 1, output
    assert "NoSuchBucket" in output
    assert_no_secret(output)
