"""GCE naming rules: image and family names, label keys and values, and the derived image name."""

from __future__ import annotations

import re
from collections.abc import Mapping

NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
NAME_MAX = 63
LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
MAX_LABELS = 64


def name_problem(name: str) -> str | None:
    """Why `name` is not a valid GCE image or family name, or None."""
    if not 1 <= len(name) <= NAME_MAX:
        return f"{name!r} must be 1-{NAME_MAX} characters long (it has {len(name)})"
    if not NAME_RE.match(name):
        near = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        hint = f"; did you mean {near!r}?" if NAME_RE.match(near) and len(near) <= NAME_MAX else ""
        return (
            f"{name!r} must match [a-z]([-a-z0-9]*[a-z0-9])?: lowercase letters, digits and '-', "
            f"starting with a letter and not ending with '-'{hint}"
        )
    return None


def label_problem(key: str, value: str) -> str | None:
    """Why `key: value` is not a valid GCE label, or None."""
    if not LABEL_KEY_RE.match(key):
        return (
            f"label key {key!r} must be 1-63 characters of lowercase letters, digits, '_' and '-', "
            "starting with a lowercase letter"
        )
    if not LABEL_VALUE_RE.match(value):
        shown = repr(value) if len(value) <= 63 else f"{value[:20]!r}... ({len(value)} characters)"
        return (
            f"label {key!r}: value {shown} must be 0-63 characters of lowercase letters, digits, '_' and '-'"
        )
    return None


def labels_problems(labels: Mapping[str, str]) -> list[str]:
    problems = [p for k, v in labels.items() if (p := label_problem(k, v)) is not None]
    if len(labels) > MAX_LABELS:
        problems.append(f"{len(labels)} labels, but GCE allows at most {MAX_LABELS}")
    return problems


def slug(text: str) -> str:
    """`text` as a valid GCE name: lowercase, runs of other characters become one '-'."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not out or not out[0].isalpha():
        out = "img-" + out
    return out[:NAME_MAX].rstrip("-")


def derived_image_name(name: str, version: str) -> str:
    return slug(f"{name}-{version}")
