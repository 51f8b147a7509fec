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
