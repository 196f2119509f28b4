"""Checking the names users give for cloud things: did-you-mean, and regions against a known list.

A region the list does not hold is a typo when it is close to a known one (`ca-cnetral-1`), and a new
region when it is well formed and differs from a known one in its number only, or resembles none
(`ap-southeast-9`): new regions keep working, with a warning, before the SDKs ship their names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable

from imgpub.provider import Problem

__all__ = ["did_you_mean", "region_problem"]


def did_you_mean(word: str, choices: Iterable[object], cutoff: float = 0.6) -> str:
    """`; did you mean 'x'?` for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=cutoff)
    return f"; did you mean {close[0]!r}?" if close else ""


def _letters(name: str) -> str:
    return re.sub(r"\d+", "", name)


def _misspelt(region: str, known: Collection[str]) -> str | None:
    """The known region that `region` is one slip away from: the same words but one, and that one
    close (`ca-cnetral-1`, `westeruope`). Another number (`eu-west-7`) or another word (`mx-central-1`)
    is not a slip."""
    if _letters(region) in {_letters(k) for k in known}:
        return None
    words = region.split("-")
    best: tuple[float, float, str] | None = None
    for name in known:
        pairs = [(a, b) for a, b in zip(words, name.split("-"), strict=False) if _letters(a) != _letters(b)]
        if len(name.split("-")) != len(words) or len(pairs) != 1:
            continue
        score = difflib.SequenceMatcher(None, *pairs[0]).ratio()
        whole = difflib.SequenceMatcher(None, region, name).ratio()
        if score >= 0.6 and (best is None or (score, whole, name) > best):
            best = (score, whole, name)
    return best[2] if best else None


def region_problem(
    field: str, region: str, known: Collection[str], *, pattern: str, form: str, source: str
) -> Problem | None:
    """None for a known region; an error for a malformed or misspelt one; a warning for a new one.

    `pattern` is the cloud's region-name form (a regex matched in full), `form` says it in words
    with an example, `source` names where `known` comes from (for the warning).
    """
    if region in known:
        return None
    squashed = {k.replace("-", ""): k for k in known}
    alias = squashed.get(re.sub(r"[\s_-]+", "", region.lower()))
    if not re.fullmatch(pattern, region):
        hint = f"; did you mean {alias!r}?" if alias else did_you_mean(region.lower(), known)
        return Problem(field, f"{region!r} is not a region name: {form}{hint}")
    typo = _misspelt(region, known)
    if typo is not None:
        return Problem(field, f"unknown region {region!r}; did you mean {typo!r}?")
    return Problem(field, f"region {region!r} is not in {source}; publishing anyway", warning=True)
