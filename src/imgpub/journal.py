"""The run journal: a small JSON file per target and image version that makes publishes resumable.

Providers record what they finished (snapshot id, uploaded blocks, registered image) and read it
back on the next run. Writes are atomic (temp file + os.replace), so a crash leaves either the
old or the new state, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any


def default_state_dir() -> Path:
    env = os.environ.get("IMGPUB_STATE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "imgpub"


class Journal:
    def __init__(self, path: Path | None) -> None:
        """`path=None` gives an in-memory journal (dry runs, tests)."""
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {}
        if path is not None and path.exists():
            try:
                self._data = json.loads(path.read_text())
            except (OSError, ValueError):
                self._data = {}

    @classmethod
    def for_target(cls, state_dir: Path, image: str, version: str, target: str) -> Journal:
        return cls(cls.path_for(state_dir, image, version, target))

    @staticmethod
    def path_for(state_dir: Path, image: str, version: str, target: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in f"{image}@{version}")
        return state_dir / safe / f"{target}.json"

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self._data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.update({key: value})

    def update(self, values: dict[str, Any]) -> None:
        with self._lock:
            self._data.update(values)
            self._flush()

    def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)
            self._flush()

    def clear(self) -> None:
        with self._lock:
            self._data = {}
            if self.path is not None:
                self.path.unlink(missing_ok=True)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            copy: dict[str, Any] = json.loads(json.dumps(self._data))
            return copy

    def _flush(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".journal-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self._data, f, sort_keys=True)
            Path(tmp).replace(self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
