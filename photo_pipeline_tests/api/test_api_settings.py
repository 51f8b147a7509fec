"""The API's settings: PHOTO_API_TOKEN is a secret (checked, never echoed or shown), the origins
are normalised as browsers send them, the limits are declared with the other variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from photo_pipeline.settings import Settings, SettingsError


def load(tmp_path: Path, **variables: str) -> Settings:
    return Settings.from_env({"PHOTO_PIPELINE_HOME": str(tmp_path), **variables})


def test_the_token_is_a_secret(tmp_path: Path) -> None:
    token = "tok-" + "a1" * 15
    settings = load(tmp_path, PHOTO_API_TOKEN=f"  {token} ")
    assert settings.api_token is not None and settings.api_token.get_secret_value() == token
    assert token not in repr(settings) and token not in str(settings.api_token)
    assert load(tmp_path).api_token is None and load(tmp_path, PHOTO_API_TOKEN="").api_token is None
    for bad, message in (
        ("s3cret-but-short", "PHOTO_API_TOKEN must be at least 24 characters long"),
        ("s3cret with spaces in the middle of it", "PHOTO_API_TOKEN must be printable ASCII without spaces"),
        ("s3cret-ünïcode-" + "x" * 20, "PHOTO_API_TOKEN must be printable ASCII without spaces"),
    ):
        with pytest.raises(SettingsError) as error:
            load(tmp_path, PHOTO_API_TOKEN=bad)
        assert str(error.value).startswith(message) and "s3cret" not in str(error.value)
        assert error.value.__cause__ is None and error.value.__suppress_context__


def test_origins_are_normalised_and_wildcards_refused(tmp_path: Path) -> None:
    settings = load(tmp_path, PHOTO_API_ALLOWED_ORIGINS=" https://WWW.Example.com:443/ ,http://127.0.0.1:8080,, http://[::1]:80")
    assert settings.api_allowed_origins == ("https://www.example.com", "http://127.0.0.1:8080", "http://[::1]")
    assert load(tmp_path).api_allowed_origins == ()
    for bad, message in (
        ("*", "'*' would let any page call the API"),
        ("https://example.com/shop", "without a path"),
        ("example.com", "must be origins like https://www.example.com"),
        ("https://user:pw@example.com", "without user:password@"),
        ("https://example.com:99999", "unusable port"),
    ):
        with pytest.raises(SettingsError, match="PHOTO_API_ALLOWED_ORIGINS") as error:
            load(tmp_path, PHOTO_API_ALLOWED_ORIGINS=bad)
        assert message in str(error.value) and "pw@" not in str(error.value)


def test_the_limits_have_ranges(tmp_path: Path) -> None:
    settings = load(tmp_path, PHOTO_API_MAX_FILES="10", PHOTO_API_MAX_REQUEST_KB="8", PHOTO_API_VIEW_URL_SECONDS="60")
    assert (settings.api_max_files, settings.api_max_request_bytes, settings.api_view_url_seconds) == (10, 8192, 60)
    with pytest.raises(SettingsError, match="PHOTO_API_MAX_FILES must be between 1 and 10000, got 0"):
        load(tmp_path, PHOTO_API_MAX_FILES="0")
