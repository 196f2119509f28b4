"""A version as GCE labels carry it, and back.

`imgpub-version` holds the label-safe form every provider's lookups use (`1.2.0-rc.1` ->
`1-2-0-rc-1`): lowercase `[a-z0-9_-]`, so '.', '+', '-' and case all read alike and the version
cannot be read back from it. `imgpub-version-exact` keeps the version itself, escaped into what a
label value may hold: letters a-z, digits and '-' stay; every other byte of its UTF-8 form becomes
`_` and two hex digits (`1.2.0-rc.1` -> `1_2e2_2e0-rc_2e1`, `V2` -> `_562`). That is unambiguous
(`_` never stands for itself) and read back exactly.

An image published before imgpub wrote the exact label (or a version whose escaped form is longer
than the 63 characters a label value holds) is read from `imgpub-version` by `guess`: a label-safe
semantic version gets its dots back (`1-2-0` -> `1.2.0`, `v1-2-0-rc1` -> `v1.2.0-rc1`; hyphens after
the patch number stay hyphens); anything else is taken as it stands.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from imgpub.identity import LABEL_VERSION, label_safe

__all__ = ["LABEL_EXACT", "decode", "encode", "guess", "version_of"]

LABEL_EXACT = "imgpub-version-exact"
VALUE_MAX = 63
_KEPT = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_ESCAPED = re.compile(r"(?:[a-z0-9-]|_[0-9a-f]{2})*")
_SEMVER_SAFE = re.compile(r"(v?)(0|[1-9]\d*)-(0|[1-9]\d*)-(0|[1-9]\d*)((?:-[a-z0-9-]+)?)")


def encode(version: str) -> str | None:
    """The exact label's value for `version`, or None when it would not fit a label value."""
    out: list[str] = []
    for char in version:
        if char in _KEPT:
            out.append(char)
        else:
            out.extend(f"_{byte:02x}" for byte in char.encode())
    value = "".join(out)
    return value if 0 < len(value) <= VALUE_MAX else None


def decode(value: str) -> str | None:
    """The version an exact label's value holds, or None when it is not one `encode` makes."""
    if not value or not _ESCAPED.fullmatch(value):
        return None
    raw = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "_":
            raw.append(int(value[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(value[i].encode())
            i += 1
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def guess(safe: str) -> str:
    """The likeliest version behind a label-safe `imgpub-version` value (see the module docstring)."""
    match = _SEMVER_SAFE.fullmatch(safe)
    if match is None:
        return safe
    prefix, major, minor, patch, rest = match.groups()
    return f"{prefix}{major}.{minor}.{patch}{rest}"


def version_of(labels: Mapping[str, str]) -> tuple[str, bool] | None:
    """(version, exact) from an image's labels or an object's metadata; None without imgpub's version.

    An exact label that does not agree with `imgpub-version` (edited by hand) is not trusted."""
    safe = labels.get(LABEL_VERSION)
    if not safe:
        return None
    exact = decode(labels.get(LABEL_EXACT, ""))
    if exact is not None and label_safe(exact) == safe:
        return exact, True
    return guess(safe), False
