"""The local target's `index.json`: every published version under one folder, guarded by a lock."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["INDEX", "FolderLock", "Index", "inside"]

INDEX = "index.json"
LOCK = ".imgpub.lock"
_CHUNK = 4 << 20
Hasher = Any  # hashlib's sha256 object (its class is private)


def inside(folder: Path, *parts: str) -> Path:
    """`folder/parts...`, refused (ValueError) when a symbolic link along it would lead elsewhere:
    imgpub writes only inside the target's folder (the folder itself may be a link the user made)."""
    path = folder
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise ValueError(
                f"{path} is a symbolic link; imgpub writes only inside {folder} (remove the link)"
            )
    real, base = os.path.realpath(path), os.path.realpath(folder)
    if os.path.commonpath([real, base]) != base:
        raise ValueError(f"{path} leads outside {folder}; imgpub writes only inside it")
    return path


class FolderLock:
    """An exclusive lock on `folder` (targets sharing a folder publish one at a time). The lock file
    is opened at once, never through a symbolic link (ValueError); `with` takes the lock."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOCK
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError:
            if path.is_symlink():
                raise ValueError(f"{path} is a symbolic link; imgpub writes only inside {folder}") from None
            raise

    def __enter__(self) -> FolderLock:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Index:
    """`{"images": [{name, version, digest, content_digest, path, files: [{name, size, sha256}], time}]}`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = inside(folder, INDEX)
        try:
            data = json.loads(self.path.read_text())
            self.images: list[dict[str, Any]] = list(data.get("images", []))
        except FileNotFoundError:
            self.images = []
        except (OSError, ValueError, AttributeError) as exc:
            raise ValueError(f"{self.path}: not a valid imgpub index ({exc})") from None

    def find(self, name: str, version: str) -> dict[str, Any] | None:
        return next((e for e in self.images if e.get("name") == name and e.get("version") == version), None)

    def put(self, entry: dict[str, Any]) -> None:
        self.images = [
            e for e in self.images if (e.get("name"), e.get("version")) != (entry["name"], entry["version"])
        ]
        self.images.append(entry)
        self.images.sort(key=lambda e: (str(e.get("name")), str(e.get("time")), str(e.get("version"))))

    def save(self) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".index.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"images": self.images}, f, indent=2, sort_keys=True)
                f.write("\n")
            Path(tmp).chmod(0o644)
            Path(tmp).replace(self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
