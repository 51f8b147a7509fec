"""Keeping usable secrets out of everything we print, log or record.

A presigned URL is a bearer credential for its lifetime: whoever reads it from a log can PUT to
the bucket. Its path says which object it is for, which is what an operator needs; its query
string (X-Amz-Credential, X-Amz-Signature, X-Amz-Security-Token, or the local store's
X-Signature) is never shown. Exceptions from requests and urllib3 quote the URL they failed on,
and S3's SignatureDoesNotMatch answer echoes the canonical request, so text from those sources
goes through `redact` before it reaches a message; `RedactingFilter` does the same for log
records of libraries that log URLs themselves (urllib3's retry warnings).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit
from xml.etree import ElementTree

REDACTED = "<redacted>"

# A query string that carries a signature or credential, up to the next character that cannot be
# part of a URL in a message (space, quote, bracket, end of text).
_SIGNED_QUERY = re.compile(
    r"\?(?=[^\s'\"<>)]*?(?:X-Amz-|X-Signature|X-Expires|Signature=|AWSAccessKeyId=))[^\s'\"<>)]*",
    re.IGNORECASE,
)
# The same parameters standing on their own (a canonical request, a header dump).
_SECRET_PARAMETER = re.compile(
    r"((?:X-Amz-(?:Signature|Credential|Security-Token)|X-Signature|Signature|Credential|AWSAccessKeyId)=)[^&\s'\",<>]+",
    re.IGNORECASE,
)
_SECRET_XML = re.compile(
    r"<(SignatureProvided|StringToSign|StringToSignBytes|CanonicalRequest|CanonicalRequestBytes|AWSAccessKeyId)>"
    r".*?</\1>",
    re.DOTALL,
)


def redact(text: str) -> str:
    """`text` with every signed query string and secret parameter replaced by <redacted>."""
    text = _SIGNED_QUERY.sub("?" + REDACTED, text)
    text = _SECRET_PARAMETER.sub(r"\1" + REDACTED, text)
    return _SECRET_XML.sub(lambda match: f"<{match.group(1)}>{REDACTED}</{match.group(1)}>", text)


def url_for_display(url: str) -> str:
    """scheme://host/path of a URL: which object, not the credential to write it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def s3_error_summary(body: str, limit: int = 300) -> str:
    """'Code: Message' of an S3 error document, without the echoed request; redacted text of
    anything else (a proxy's HTML page, say), shortened to `limit` characters."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return redact(body.strip())[:limit]
    code = root.findtext("Code") or root.tag
    message = root.findtext("Message") or ""
    return redact(f"{code}: {message}".rstrip(": "))[:limit]


class RedactingFilter(logging.Filter):
    """Rewrites a record's message through `redact`, so a library's own log lines (urllib3
    quoting the URL it retries) cannot leak a signature."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


# Loggers of the HTTP stack that quote request URLs in their messages.
URL_LOGGING_LIBRARIES = ("urllib3.connectionpool", "urllib3.util.retry", "botocore.endpoint", "botocore.retryhandler")
_filter = RedactingFilter()


def install_log_redaction() -> None:
    """Attach the filter to the loggers that quote URLs (idempotent). A filter on a logger sees
    only records logged on that very logger, so each is named."""
    for name in URL_LOGGING_LIBRARIES:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)


# -- alert destinations (PHOTO_ALERT_URLS): Apprise URLs carry tokens in any part ----------------

_HOST_NAME = re.compile(r"^(localhost|[0-9.]+|\[[0-9a-f:.]+\]|[a-z0-9-]+(\.[a-z0-9-]+)+)$", re.IGNORECASE)


def destination_for_display(url: str) -> str:
    """scheme://host of an Apprise URL: where it goes, never its credentials. Many services keep
    a token where the host would be (slack://TokenA/..., tgram://bot-token/...): a "host" that
    does not look like a host name is hidden too."""
    parts = urlsplit(url)
    scheme = parts.scheme or "?"
    try:
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return f"{scheme}://…"
    if not _HOST_NAME.match(host):
        return f"{scheme}://…"
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"


def destination_secrets(url: str) -> list[str]:
    """The parts of an Apprise URL that may be secrets (user, password, path segments, query
    values, a host that is a token), longest first, for `mask_destination`."""
    parts = urlsplit(url)
    pieces = [url, parts.netloc, parts.username or "", parts.password or ""]
    if destination_for_display(url).endswith("…"):
        pieces.append(parts.netloc.rpartition("@")[2])
    pieces += parts.path.split("/")
    pieces += [value for _, _, value in (item.partition("=") for item in parts.query.split("&"))]
    # Short pieces (a "/", a port, "hook") are no secret and would garble the text.
    return sorted({piece for piece in pieces if len(piece) >= 4}, key=len, reverse=True)


def mask_destination(text: str, urls: list[str]) -> str:
    """`text` with every possibly secret part of these destinations' URLs replaced by <redacted>."""
    for url in urls:
        for secret in destination_secrets(url):
            text = text.replace(secret, REDACTED)
    return text


class DestinationFilter(logging.Filter):
    """Masks the destinations' secrets in a library's log records (Apprise logs the URLs it loads
    and posts to, paths and all)."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__()
        self.urls = urls

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = mask_destination(message, self.urls)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
