"""The built-in local target: sparse raw, fixed VHD and the GCE tarball in a folder, with an index.

Layout: `<path>/<image>/<version>/{disk.raw,disk.vhd,disk.raw.tar.gz,SHA256SUMS}` and
`<path>/index.json`. Files are written into a hidden temp folder that is renamed into place, so a
failure leaves no partial version behind.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from imgpub.errors import ConfigurationError, ImageConflictError, TargetError
from imgpub.hashing import Hasher, file_hasher, file_sha256, hash_zeros
from imgpub.local.index import FolderLock, Index, inside
from imgpub.provider import (
    Action,
    Artifact,
    Context,
    DiskImage,
    ImageInfo,
    ManifestPath,
    Plan,
    Problem,
    Provider,
    Published,
    Release,
    RetireAction,
    Status,
    TargetSettings,
)

__all__ = ["FILES", "LocalProvider", "LocalSettings"]

LocalFormat = Literal["raw", "vhd", "gce"]
FILES: dict[str, str] = {"raw": "disk.raw", "vhd": "disk.vhd", "gce": "disk.raw.tar.gz"}
SUMS = "SHA256SUMS"


class LocalSettings(TargetSettings):
    """A folder on this machine (or a mounted share) that collects every published version."""

    provider: Literal["local"]
    path: ManifestPath = Field(description="Output folder; relative paths are relative to the manifest.")
    formats: list[LocalFormat] = Field(
        default=["raw", "vhd", "gce"],
        min_length=1,
        description="Which files to write: raw (sparse disk.raw), vhd (fixed VHD), gce (disk.raw.tar.gz).",
    )

    def identity(self) -> dict[str, Any]:
        return {"provider": self.provider}


class LocalProvider(Provider[LocalSettings]):
    name = "local"
    settings_model = LocalSettings

    def check(self, image: ImageInfo, settings: LocalSettings) -> list[Problem]:
        if settings.path.exists() and not settings.path.is_dir():
            return [Problem("path", f"{settings.path} is a file, not a folder")]
        return []

    def plan(self, image: ImageInfo, settings: LocalSettings, ctx: Context) -> Plan:
        name = settings.image_name or image.name
        folder = settings.path / name / image.version
        entry = self._index(settings).find(name, image.version)
        plan = Plan(ctx.target, self.name, existing=self._artifacts(settings, entry))
        if entry is not None and entry.get("digest") != ctx.digest:
            plan.conflict = (
                f"{name} {image.version} is already in {settings.path} with digest {entry.get('digest')}, "
                f"but this image's digest is {ctx.digest}"
            )
        have = {a.kind for a in plan.existing} if entry is not None and plan.conflict is None else set()
        missing = [fmt for fmt in settings.formats if fmt not in have]
        if missing or plan.conflict:
            verb: Literal["replace", "create"] = "replace" if plan.conflict else "create"
            for fmt in settings.formats if plan.conflict else missing:
                plan.actions.append(Action(verb, str(folder / FILES[fmt]), f"{fmt} image"))
            plan.actions.append(
                Action("create", str(settings.path / "index.json"), f"add {name} {image.version}")
            )
        return plan

    def publish(self, image: ImageInfo, settings: LocalSettings, disk: DiskImage, ctx: Context) -> Published:
        plan = self.plan(image, settings, ctx)
        if plan.conflict and not ctx.replace:
            raise ImageConflictError(ctx.target, plan.conflict)
        if plan.up_to_date:
            return Published(ctx.target, self.name, artifacts=plan.existing, changed=False)
        name = settings.image_name or image.name
        try:
            parent = inside(settings.path, name)
            parent.mkdir(parents=True, exist_ok=True)
            final = inside(settings.path, name, image.version)
            lock = FolderLock(settings.path)
        except ValueError as exc:
            raise ConfigurationError(f"target {ctx.target}: {exc}") from None
        _remove_leftovers(parent, image.version)
        prefix = f".{image.version}.{_HOST}.{os.getpid()}."
        staging = Path(tempfile.mkdtemp(dir=parent, prefix=prefix, suffix=".partial"))
        try:
            files = self._write(disk, settings.formats, staging, ctx)
            with lock:
                self._swap(staging, final)
                index = self._index(settings)
                entry = {
                    "name": name,
                    "version": image.version,
                    "digest": ctx.digest,
                    "content_digest": image.content_digest,
                    "path": f"{name}/{image.version}",
                    "files": files,
                    "time": datetime.now(UTC).isoformat(timespec="seconds"),
                }
                index.put(entry)
                index.save()
        finally:
            lock.close()
            shutil.rmtree(staging, ignore_errors=True)
        return Published(ctx.target, self.name, artifacts=self._artifacts(settings, entry), changed=True)

    def status(self, image: ImageInfo, settings: LocalSettings, ctx: Context) -> Status:
        name = settings.image_name or image.name
        entry = self._index(settings).find(name, image.version)
        status = Status(ctx.target, self.name, artifacts=self._artifacts(settings, entry))
        if entry is None:
            status.drift.append(f"{name} {image.version} is not published in {settings.path}")
            return status
        if entry.get("digest") != ctx.digest:
            status.drift.append(f"published digest {entry.get('digest')} differs from {ctx.digest}")
        have = {a.kind for a in status.artifacts}
        status.drift += [f"{FILES[fmt]} is missing" for fmt in settings.formats if fmt not in have]
        return status

    def releases(self, name: str, settings: LocalSettings, ctx: Context) -> list[Release]:
        from imgpub.local.lifecycle import releases

        return releases(settings.image_name or name, settings)

    def retire(
        self,
        name: str,
        settings: LocalSettings,
        release: Release,
        action: RetireAction,
        ctx: Context,
        *,
        replacement: str | None,
    ) -> list[str]:
        from imgpub.local.lifecycle import retire

        return retire(settings.image_name or name, settings, release, action, ctx)

    def reconcile(self, name: str, settings: LocalSettings, release: Release, ctx: Context) -> list[str]:
        """A folder has no regions, sharing or tags to repair; a lost file needs its version published
        again (the source is not at hand here), which the release's drift says."""
        return []

    def _index(self, settings: LocalSettings) -> Index:
        try:
            return Index(settings.path)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None

    def _artifacts(self, settings: LocalSettings, entry: dict[str, Any] | None) -> list[Artifact]:
        if entry is None:
            return []
        kinds = {v: k for k, v in FILES.items()}
        out = []
        for f in entry.get("files", []):
            path = settings.path / str(entry.get("path")) / str(f.get("name"))
            if f.get("name") in kinds and path.exists():
                extra = {"sha256": f.get("sha256"), "size": f.get("size")}
                out.append(Artifact(kinds[f["name"]], str(path), uri=path.absolute().as_uri(), extra=extra))
        return out

    def _write(
        self, disk: DiskImage, formats: list[LocalFormat], folder: Path, ctx: Context
    ) -> list[dict[str, Any]]:
        from imgpub.disk.write_gce import write_gce_tar
        from imgpub.disk.write_raw import write_raw
        from imgpub.disk.write_vhd import write_vhd

        writers: dict[str, Callable[..., None]] = {"raw": write_raw, "vhd": write_vhd, "gce": write_gce_tar}
        files = []
        raw_hash: Hasher | None = None
        for fmt in ("raw", "vhd", "gce"):
            if fmt not in formats:
                continue
            dest = folder / FILES[fmt]
            ctx.progress.stage(f"write {FILES[fmt]}", disk.allocation.data_bytes)
            try:
                writers[fmt](disk, dest, on_progress=ctx.progress.advance)
            except OSError as exc:  # ENOSPC and friends name no file: say which one
                raise TargetError(ctx.target, f"writing {dest}: {exc.strerror or exc}") from exc
            ctx.progress.stage(f"sha256 {FILES[fmt]}")
            if fmt == "raw":
                raw_hash = file_hasher(dest)
                digest = str(raw_hash.hexdigest())
            elif fmt == "vhd" and raw_hash is not None:
                digest = self._vhd_sha256(raw_hash, disk.virtual_size, dest)
            else:
                digest = file_sha256(dest)
            files.append({"name": dest.name, "size": dest.stat().st_size, "sha256": digest})
        sums = "".join(f"{f['sha256']}  {f['name']}\n" for f in files)
        (folder / SUMS).write_text(sums)
        (folder / SUMS).chmod(0o644)
        folder.chmod(0o755)
        return files

    @staticmethod
    def _vhd_sha256(raw_hash: Hasher, virtual_size: int, vhd: Path) -> str:
        """A fixed VHD is the raw disk, zeros up to its (MiB-rounded) size, then a 512-byte footer:
        continue the raw file's hash instead of reading gigabytes of zeros again."""
        h = raw_hash.copy()
        size = vhd.stat().st_size
        hash_zeros(h, size - 512 - virtual_size)
        with vhd.open("rb") as f:
            f.seek(size - 512)
            h.update(f.read(512))
        return str(h.hexdigest())

    @staticmethod
    def _swap(staging: Path, final: Path) -> None:  # under the folder lock
        """Put `staging` at `final`; an older folder there is moved aside first, then removed."""
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{datetime.now(UTC):%Y%m%d%H%M%S%f}")
            final.replace(old)
        staging.replace(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


_HOST = socket.gethostname().replace(".", "_")


def _remove_leftovers(parent: Path, version: str) -> None:
    """Folders a killed run left: its staging (`.<version>.<host>.<pid>.*.partial`, when that pid
    is gone from this host) and an older version it had moved aside (`.<version>.old-*`)."""
    for path in parent.glob(f".{glob.escape(version)}.*"):
        rest = path.name[len(version) + 2 :]
        if rest.startswith("old-"):
            stale = True
        elif path.name.endswith(".partial") and rest.startswith(f"{_HOST}."):
            pid = rest[len(_HOST) + 1 :].split(".", 1)[0]
            stale = pid.isdigit() and not _alive(int(pid))
        else:
            stale = False
        if stale and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
