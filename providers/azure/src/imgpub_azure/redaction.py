"""What counts as an Azure credential in a message, and its removal: every error line, progress note
and warning the provider makes goes through `redact` (the core redacts again; this must hold alone).

Removed: SAS signatures in any spelling a message may carry them (`sig=...` in a query, URL-encoded
`sig%3D...`, `'sig': '...'` in a repr or JSON), connection-string secrets (`AccountKey=`,
`SharedAccessSignature=`), the values of the secret environment variables, and the exact secrets
this process was handed at run time (`remember`): the write SAS that grantAccess returns for a
managed-disk upload, with its signature alone, encoded or not.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from imgpub.errors import CloudError, ImgpubError
from imgpub.progress import Progress

__all__ = [
    "MASK",
    "SECRET_ENV",
    "RedactedProgress",
    "redact",
    "remember",
    "remember_sas_url",
    "secrets_kept",
]

MASK = "REDACTED"
SECRET_ENV = (
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_CLIENT_SECRET",
)
_PATTERNS = (
    # a query parameter, plain or URL-encoded (sig%3D..., %26sig%3D...)
    re.compile(r"(?i)((?<![A-Za-z0-9_-])sig(?:=|%3D))[^&\s\"'<>;,)\]}]+"),
    # a field of a repr or JSON document: 'sig': 'x', "sig": ["x"]
    re.compile(r"(?i)([\"']sig[\"']\s*:\s*\[?\s*[\"'])[^\"']+"),
    re.compile(r"(?i)((?<![A-Za-z0-9_-])(?:AccountKey|SharedAccessSignature|SharedAccessKey)=)[^;\s\"']+"),
)
_MIN_SECRET = 8
"""Shorter values are not replaced wherever they occur (they would mangle ordinary words)."""

_remembered: set[str] = set()
_lock = threading.Lock()


def remember(secret: str) -> None:
    """A secret this process holds (raw, decoded and encoded forms are all removed from then on)."""
    if len(secret) < _MIN_SECRET:
        return
    with _lock:
        plain = unquote(secret)
        _remembered.update({secret, plain, quote(plain, safe=""), quote(secret, safe="")})


def remember_sas_url(url: str) -> None:
    """A SAS URL's signature, and its whole query string."""
    query = urlsplit(url).query
    if query:
        remember(query)
    for name, value in parse_qsl(query):
        if name.lower() == "sig":
            remember(value)


def _secrets() -> list[str]:
    values = set()
    for name in SECRET_ENV:
        value = os.environ.get(name, "")
        values.add(value)
        values.update(re.findall(r"(?i)(?:AccountKey|SharedAccessSignature)=([^;]+)", value))
        values.update(v for k, v in parse_qsl(value.lstrip("?")) if k.lower() == "sig")
    with _lock:
        values |= _remembered
    return sorted((v for v in values if len(v) >= _MIN_SECRET), key=len, reverse=True)


def redact(text: str) -> str:
    """`text` without SAS signatures, account keys, connection-string secrets or any secret above."""
    for secret in _secrets():
        text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(rf"\1{MASK}", text)
    return text


class RedactedProgress:
    """A Progress whose stage names and notes go through `redact` first."""

    def __init__(self, inner: Progress) -> None:
        self.inner = inner

    def stage(self, name: str, total: int | None = None, unit: str = "B") -> None:
        self.inner.stage(redact(name), total, unit)

    def advance(self, amount: int) -> None:
        self.inner.advance(amount)

    def note(self, message: str) -> None:
        self.inner.note(redact(message))


@contextmanager
def secrets_kept(target: str, operation: str) -> Iterator[None]:
    """No secret leaves the provider in an exception: an imgpub error's message is redacted in
    place; anything else that holds one becomes a CloudError without it (and without its cause)."""
    try:
        yield
    except ImgpubError as exc:
        clean = tuple(redact(a) if isinstance(a, str) else a for a in exc.args)
        if clean != exc.args:
            exc.args = clean
            if isinstance(getattr(exc, "message", None), str):
                exc.message = redact(exc.message)  # type: ignore[attr-defined]
        raise
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        if redact(text) == text:
            raise
        raise CloudError(target, operation, f"unexpected {redact(text)}") from None
