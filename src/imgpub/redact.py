"""Credentials never reach a log, an error line, a report or a CI summary: one redaction pass for all.

What it hides (the value only; the name stays, so a reader still sees what was there):
* URL query credentials: SAS signatures (`sig=`), AWS presigned parts (`X-Amz-Signature`,
  `X-Amz-Security-Token`, `X-Amz-Credential`), GCS resumable sessions (`upload_id=`, a bearer
  credential for that upload), S3 `uploadId`, OAuth `access_token` / `code` parameters;
* headers in any spelling a log uses (`Authorization: ...`, `'x-amz-security-token': b'...'`),
  `Bearer` tokens, SigV4 `Signature=`;
* connection-string fields (`AccountKey=`, `SharedAccessSignature=`, `SharedAccessKey=`);
* JSON / repr fields holding tokens or secrets (`"access_token": "..."`, `client_secret`, ...);
* PEM private keys.

`RedactingFilter` applies it to every log record (message, arguments and traceback) that passes a
handler it is attached to.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MASK", "RedactingFilter", "redact", "redact_data"]

MASK = "REDACTED"

_QUERY = re.compile(
    r"(?i)(?<![A-Za-z0-9_-])((?:sig|signature|x-amz-signature|x-amz-security-token|x-amz-credential"
    r"|x-goog-signature|x-goog-credential|upload_id|uploadid|access_token|refresh_token"
    r"|client_secret)=)([^&\s\"'<>;,)\]}]+)"
)
_HEADER = re.compile(
    r"(?i)([\"']?(?:authorization|proxy-authorization|x-amz-security-token|x-goog-iam-authorization-token"
    r"|x-ms-copy-source-authorization|ocp-apim-subscription-key|x-api-key|cookie|set-cookie)[\"']?"
    r"\s*[:=]\s*)(b?\"[^\"]*\"|b?'[^']*'|[^\r\n\\,}\]'\"]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")
_SIGV4 = re.compile(r"(?i)\b(Signature=)[0-9a-f]{16,}")
_CONNECTION = re.compile(r"(?i)\b((?:AccountKey|SharedAccessSignature|SharedAccessKey)=)([^;\s\"']+)")
_SECRET_FIELD = re.compile(
    r"(?i)([\"']?(?:access_token|refresh_token|id_token|client_secret|password|secret_access_key"
    r"|aws_secret_access_key|secretaccesskey|session_token|aws_session_token|sessiontoken|account_key"
    r"|sas_token|private_key)[\"']?\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&}\]]+)"
)
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL)


def _keep_quotes(match: re.Match[str]) -> str:
    value = match.group(2)
    for quote in ('b"', "b'", '"', "'"):
        if value.startswith(quote) and len(value) >= len(quote) + 1:
            return f"{match.group(1)}{quote}{MASK}{quote[-1]}"
    return f"{match.group(1)}{MASK}"


def redact(text: str) -> str:
    """`text` with every credential value it holds replaced by REDACTED."""
    if not text:
        return text
    text = _PEM.sub(f"-----{MASK} PRIVATE KEY-----", text)
    text = _HEADER.sub(_keep_quotes, text)
    text = _SECRET_FIELD.sub(_keep_quotes, text)
    text = _BEARER.sub(rf"\g<1>{MASK}", text)
    text = _SIGV4.sub(rf"\g<1>{MASK}", text)
    text = _CONNECTION.sub(rf"\g<1>{MASK}", text)
    return _QUERY.sub(rf"\g<1>{MASK}", text)


def redact_data(value: Any) -> Any:
    """Every string inside JSON-like data (a report), redacted; the shape stays."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_data(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [redact_data(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Redact each record's final message and traceback before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: log what there is, redacted
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
