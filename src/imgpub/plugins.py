"""Provider discovery through the entry-point group `imgpub.providers` (the built-in `local` too)."""

from __future__ import annotations

import os
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from imgpub.errors import ConfigurationError
from imgpub.provider import Provider

GROUP = "imgpub.providers"

_registered: dict[str, type[Provider]] = {}  # type: ignore[type-arg]


def register(cls: type[Provider]) -> None:  # type: ignore[type-arg]
    """Register a provider class by hand (tests, embedding applications)."""
    if cls.name in _registered and _registered[cls.name] is not cls:
        raise ConfigurationError(f"two providers are named {cls.name!r}")
    _registered[cls.name] = cls
    available.cache_clear()


def unregister(name: str) -> None:
    _registered.pop(name, None)
    available.cache_clear()


def _allowed() -> set[str] | None:
    raw = os.environ.get("IMGPUB_PROVIDERS")
    return {n.strip() for n in raw.split(",") if n.strip()} if raw else None


@cache
def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        if ep.name in found and found[ep.name].value != ep.value:
            raise ConfigurationError(
                f"two installed distributions provide the provider {ep.name!r}: "
                f"{found[ep.name].value} and {ep.value}"
            )
        found[ep.name] = ep
    return found


@cache
def available() -> dict[str, EntryPoint | type[Provider]]:  # type: ignore[type-arg]
    """Provider names (allow-listed by IMGPUB_PROVIDERS) to their entry point or class; nothing imported."""
    allowed = _allowed()
    found: dict[str, EntryPoint | type[Provider]] = dict(_entry_points())  # type: ignore[type-arg]
    found.update(_registered)
    return {n: v for n, v in sorted(found.items()) if allowed is None or n in allowed}


def load(name: str) -> type[Provider]:  # type: ignore[type-arg]
    """The provider class for `name`, imported on first use."""
    entry = available().get(name)
    if entry is None:
        known = ", ".join(available()) or "none"
        raise ConfigurationError(
            f"no provider named {name!r} is installed (installed: {known}); try: pip install 'imgpub[{name}]'"
        )
    try:
        cls = entry.load() if isinstance(entry, EntryPoint) else entry
    except Exception as exc:  # a broken plugin is one clear line, not a traceback
        raise ConfigurationError(f"provider {name!r} failed to load: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Provider)) or cls.name != name:
        raise ConfigurationError(f"entry point {name!r} does not name a Provider whose name is {name!r}")
    return cls
