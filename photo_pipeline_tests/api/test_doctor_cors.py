"""`doctor` checks the bucket's CORS rule for each origin in PHOTO_API_ALLOWED_ORIGINS with the
preflight a browser sends, through the public endpoint (moto's server enforcing the rule), and
never shows PHOTO_API_TOKEN."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from photo_pipeline.cli.doctor import run_checks
from photo_pipeline.settings import Settings
from photo_pipeline_tests.api.conftest import TOKEN, allow_browser_puts
from photo_pipeline_tests.conftest import BIN, S3_TEST_CREDENTIALS, S3Server

SITE = "https://www.example.com"
ADMIN = "https://admin.example.com"


def environment(s3: S3Server, photo_database: str, bucket: str, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTO_", "DAGSTER_", "AWS_"))}
    env.update(S3_TEST_CREDENTIALS)
    env.update(
        {
            "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
            "PHOTO_DATABASE_URL": photo_database,
            "PHOTO_BUCKET": bucket,
            "PHOTO_PIPELINE_HOME": str(home),
            **extra,
        }
    )
    return env


def test_doctor_checks_the_cors_rule_for_each_configured_origin(
    s3_env: S3Server, photo_database: str, tmp_path: Path
) -> None:
    bucket = s3_env.new_bucket()
    allow_browser_puts(s3_env, bucket, [SITE])
    settings = Settings.from_env(
        environment(s3_env, photo_database, bucket, tmp_path, PHOTO_API_ALLOWED_ORIGINS=f"{SITE},{ADMIN}")
    )
    checks = {check.name: check for check in run_checks(settings)}
    assert checks[f"CORS for {SITE}"].level == "ok", checks
    admin = checks[f"CORS for {ADMIN}"]
    assert admin.level == "fail"
    assert f"browsers on {ADMIN} cannot upload" in admin.detail and "no matching Access-Control-Allow-Origin" in admin.detail
    assert f"a CORS rule to the bucket allowing the origin {ADMIN}, the methods PUT and GET" in admin.detail

    # A rule that allows the origin but not the headers a presigned PUT carries.
    s3_env.client().put_bucket_cors(
        Bucket=bucket,
        CORSConfiguration={"CORSRules": [{"AllowedOrigins": [SITE], "AllowedMethods": ["PUT"], "AllowedHeaders": ["Content-Type"]}]},
    )
    [site] = [c for c in run_checks(settings) if c.name == f"CORS for {SITE}"]
    assert site.level == "fail" and "not allowing the headers if-none-match" in site.detail


def test_doctor_never_shows_the_api_token(s3_server: S3Server, photo_database: str, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    env = environment(s3_server, photo_database, bucket, tmp_path, PHOTO_API_TOKEN=TOKEN, PHOTO_API_ALLOWED_ORIGINS=SITE)
    result = subprocess.run([str(BIN / "photo-pipeline"), "-v", "doctor"], env=env, capture_output=True, text=True, timeout=120, check=False)
    output = " ".join((result.stdout + result.stderr).split())
    assert "PHOTO_API_TOKEN is set (not shown)" in output, output
    assert f"CORS for {SITE}" in output and result.returncode == 1, "no CORS rule on this bucket: doctor fails"
    assert TOKEN not in output and "X-Amz-Signature" not in output
