"""Keep secrets out of botocore's, aiobotocore's and s3fs's log records.

The secret access key never leaves the process (it only keys the request signature), but at
DEBUG botocore prints every canonical request and the request headers, and both carry a session
token (``x-amz-security-token``); a server's error body may quote the canonical request too. A
filter on those loggers masks token and SSE-C key values wherever they appear, and every secret
an S3 backend was given (raw and URL-encoded). It changes the text of matching records only, for
every botocore client in the process; loggers named here are created if not yet imported, since a
filter on a logger does not see its children's records.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

_SECRET_FIELD = re.compile(
    r"(?i)((?:x-amz-security-token|x-amz-server-side-encryption-customer-key|ssecustomerkey|sessiontoken"
    r"|aws_session_token|aws_secret_access_key)['\"]?\s*[:=>]\s*b?['\"]?)[^'\"\s&,<}\\]+"
)
_GUARDED_LOGGERS = (
    "botocore",
    "botocore.auth",
    "botocore.endpoint",
    "botocore.parsers",
    "botocore.httpsession",
    "botocore.awsrequest",
    "botocore.hooks",
    "botocore.retryhandler",
    "botocore.retries.standard",
    "botocore.credentials",
    "botocore.utils",
    "aiobotocore.credentials",
    "aiobotocore.utils",
    "aiobotocore.httpsession",
    "s3fs",
)
_known: set[str] = set()
_lock = threading.Lock()


def scrub(text: str) -> str:
    """``text`` with session tokens, SSE-C keys and every secret given to an S3 backend masked."""
    text = _SECRET_FIELD.sub(r"\1***", text)
    for secret in sorted(_known, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class _Scrub(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


_filter = _Scrub()


def guard_logs(*secrets: Any) -> None:
    """Install the scrubbing filter (once) and remember these secrets, raw and URL-encoded."""
    with _lock:
        for secret in secrets:
            if isinstance(secret, str) and len(secret) >= 8:  # shorter ones would mask ordinary words
                _known.update({secret, quote(secret, safe=""), quote_plus(secret)})
        for name in _GUARDED_LOGGERS:
            log = logging.getLogger(name)  # created now if its module is not imported yet
            if _filter not in log.filters:
                log.addFilter(_filter)
