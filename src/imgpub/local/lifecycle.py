"""The local target's versions: listed from index.json, deprecated there, deleted from the folder.

A delete first moves the version's folder aside (`.<version>.old-*`, which the next publish also
removes), then drops its index entry, then removes the folder: a stop in between leaves an entry
without files, listed as "deleting" so the next prune finishes it.
"""

from __future__ import annotations

import glob
import shutil
from datetime import datetime
from typing import TYPE_CHECKING

from imgpub.errors import ConfigurationError
from imgpub.local.index import FolderLock, Index, inside
from imgpub.provider import Artifact, Context, Release, RetireAction

if TYPE_CHECKING:
    from imgpub.local.provider import LocalSettings

__all__ = ["releases", "retire"]


def _index(settings: LocalSettings) -> Index:
    try:
        return Index(settings.path)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def _created(entry: dict[str, object]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(entry.get("time")))
    except ValueError:
        return None


def releases(name: str, settings: LocalSettings) -> list[Release]:
    out = []
    for entry in _index(settings).images:
        if entry.get("name") != name:
            continue
        folder = settings.path / str(entry.get("path"))
        files = [f for f in entry.get("files", []) if isinstance(f, dict)]
        present = [f for f in files if (folder / str(f.get("name"))).is_file()]
        drift = tuple(f"{f.get('name')} is missing" for f in files if f not in present)
        state = "deleting" if files and not present else "deprecated" if entry.get("deprecated") else "active"
        artifacts = tuple(Artifact("file", str(folder / str(f.get("name")))) for f in present)
        out.append(
            Release(
                str(entry.get("version")),
                state,  # type: ignore[arg-type]
                _created(entry),
                digest=str(entry.get("digest") or "") or None,
                artifacts=artifacts,
                drift=drift if present else (),
            )
        )
    return out


def retire(
    name: str, settings: LocalSettings, release: Release, action: RetireAction, ctx: Context
) -> list[str]:
    try:
        lock = FolderLock(settings.path)
        folder = inside(settings.path, name, release.version)
    except ValueError as exc:
        raise ConfigurationError(f"target {ctx.target}: {exc}") from None
    with lock:
        index = _index(settings)
        entry = index.find(name, release.version)
        if entry is None:
            return []
        if action == "deprecate":
            if entry.get("deprecated"):
                return []
            entry["deprecated"] = ctx.now().isoformat(timespec="seconds")
            index.save()
            return [f"marked {name} {release.version} deprecated in {index.path}"]
        if folder.exists():
            folder.replace(folder.with_name(f".{folder.name}.old-{ctx.now():%Y%m%d%H%M%S%f}"))
        index.images = [e for e in index.images if e is not entry]
        index.save()
    for aside in folder.parent.glob(f".{glob.escape(folder.name)}.old-*"):  # this run's, or a stopped one's
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside, ignore_errors=True)
    return [f"deleted {folder} and its index entry"]
