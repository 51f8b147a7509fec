"""`doctor` checks what the pipeline needs, not only that things answer: a PostgreSQL role that may
only SELECT, and bucket credentials that may not write or delete.

Which server enforces what: PostgreSQL enforces the grants. moto's S3 server enforces IAM identity
policies once `/moto-api/reset-auth` sets its count of unauthenticated requests to 0 (its
own process: the setting is global). It names some actions its own way (listing is
`s3:ListObjectsV2` there, `s3:ListBucket` on AWS; HEAD is `s3:HeadBucket`/`s3:HeadObject`, AWS's
`s3:ListBucket`/`s3:GetObject`), so the read-only policy below allows both spellings; writes and
deletes are `s3:PutObject` and `s3:DeleteObject` on both, the grants doctor names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from click.testing import CliRunner

from photo_pipeline.cli.commands import main
from photo_pipeline.cli.doctor import Check, run_checks
from photo_pipeline.settings import Settings
from photo_pipeline_tests.api.conftest import S3Process, moto_process
from photo_pipeline_tests.conftest import S3_TEST_CREDENTIALS

READ = ["s3:Get*", "s3:List*", "s3:Head*"]


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith(("PHOTO_", "AWS_")):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("PHOTO_PIPELINE_HOME", str(home))
    return home


def doctor(monkeypatch: pytest.MonkeyPatch, database_url: str) -> tuple[int, str]:
    monkeypatch.setenv("PHOTO_DATABASE_URL", database_url)
    result = CliRunner().invoke(main, ["doctor"], catch_exceptions=False)
    return result.exit_code, " ".join(result.output.split())  # rich folds long lines


def test_doctor_fails_a_select_only_database_user_and_says_which_grants_are_missing(
    clean_env: Path, select_only_url: str, photo_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, output = doctor(monkeypatch, select_only_url)
    assert code == 1, output
    assert "ok database postgresql+psycopg://photo_reader_" in output and "reachable, schema at" in output
    role = select_only_url.split("://", 1)[1].split("@", 1)[0]
    assert f"fail database writes: the database user {role} cannot do what the pipeline does:" in output
    for table in ("albums", "deleted_uploads", "photos", "renditions"):
        assert f"{table} lacks INSERT, UPDATE, DELETE" in output
    assert f"Grant it: GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}" in output
    # The folder store's probe object went in and out.
    assert "ok bucket writes: wrote, read back and deleted a probe object under doctor/" in output

    code, output = doctor(monkeypatch, photo_db)
    assert code == 0, output
    assert "ok database writes: a probe row inserted, updated and deleted in every table, rolled back; postgres holds SELECT, INSERT, UPDATE, DELETE on every table of public" in output


# -- the bucket, with IAM enforced --------------------------------------------------------------


def iam_user(s3: S3Process, name: str, bucket: str, actions: list[str]) -> dict[str, str]:
    """A user whose policy allows `actions` on the bucket and its objects; its access key."""
    client = boto3.client(
        "iam",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=S3_TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_TEST_CREDENTIALS["AWS_DEFAULT_REGION"],
    )
    client.create_user(UserName=name)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}],
    }
    client.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
    key = client.create_access_key(UserName=name)["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


@pytest.fixture
def enforcing_bucket(tmp_path: Path) -> Iterator[tuple[S3Process, str, dict[str, dict[str, str]]]]:
    """moto's S3 in its own process, a bucket, and three users, then IAM enforced."""
    with moto_process(tmp_path) as s3:
        bucket = s3.new_bucket()
        users = {
            "reader": iam_user(s3, "reader", bucket, READ),
            "no-delete": iam_user(s3, "no-delete", bucket, [*READ, "s3:PutObject"]),
            "writer": iam_user(s3, "writer", bucket, ["s3:*"]),
        }
        answer = requests.post(f"{s3.endpoint_url}/moto-api/reset-auth", data=b"0", timeout=10)
        assert answer.status_code == 200, answer.text
        yield s3, bucket, users


def checks_as(user: dict[str, str], s3: S3Process, bucket: str, photo_db: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Check]:
    env: dict[str, Any] = {**S3_TEST_CREDENTIALS, **user, "AWS_ENDPOINT_URL_S3": s3.endpoint_url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env({"PHOTO_DATABASE_URL": photo_db, "PHOTO_BUCKET": bucket, "PHOTO_PIPELINE_HOME": str(home)})
    return {check.name: check for check in run_checks(settings)}


def test_doctor_names_the_grant_the_bucket_refuses(
    enforcing_bucket: tuple[S3Process, str, dict[str, dict[str, str]]], photo_db: str, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, bucket, users = enforcing_bucket

    reader = checks_as(users["reader"], s3, bucket, photo_db, clean_env, monkeypatch)
    assert reader[f"bucket s3://{bucket} (endpoint {s3.endpoint_url})"].level == "ok", "it reaches the bucket"
    writes = reader["bucket writes"]
    assert writes.level == "fail"
    assert writes.detail.startswith(f"the credentials may not write objects: grant s3:PutObject on arn:aws:s3:::{bucket}/*: put s3://{bucket}/doctor/write-probe-")
    assert "access denied (AccessDenied" in writes.detail and "stays behind" not in writes.detail

    no_delete = checks_as(users["no-delete"], s3, bucket, photo_db, clean_env, monkeypatch)["bucket writes"]
    assert no_delete.level == "fail"
    assert no_delete.detail.startswith(f"the credentials may not delete objects: grant s3:DeleteObject on arn:aws:s3:::{bucket}/*")
    assert "stays behind (reconciliation ignores doctor/)" in no_delete.detail

    writer = checks_as(users["writer"], s3, bucket, photo_db, clean_env, monkeypatch)["bucket writes"]
    assert writer == Check(
        "bucket writes", "ok", "wrote, read back and deleted a probe object under doctor/ (s3:PutObject, s3:GetObject, s3:DeleteObject granted)"
    )
