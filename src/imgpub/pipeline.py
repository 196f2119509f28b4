"""Run a manifest: open and measure the source once, then plan/publish/status every target in a
bounded thread pool. One failing target never stops the others; each ends as a TargetResult.

The library API behind `imgpub plan|publish|status|validate`; it never prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from imgpub import identity
from imgpub.disk import DiskImage, ImageFormatError, open_image
from imgpub.disk.errors import DiskError
from imgpub.disk.partitions import inspect_partitions
from imgpub.errors import ConfigurationError, ImageConflictError, ImgpubError
from imgpub.journal import Journal, default_state_dir
from imgpub.lifecycle import TargetLifecycle, prune_target
from imgpub.lock import target_lock
from imgpub.manifest import Manifest, load_manifest
from imgpub.manifest.boot import Boot, resolve_boot
from imgpub.manifest.checks import check_image
from imgpub.progress import NullProgress, Progress
from imgpub.provider import Context, ImageInfo, Plan, Published, Status, TargetSettings
from imgpub.retry import RetryPolicy
from imgpub.source import DigestCache, cached_download, download, local_source

__all__ = [
    "DEFAULT_CONCURRENCY",
    "ProgressFactory",
    "RunResult",
    "TargetResult",
    "plan",
    "publish",
    "status",
    "validate",
]

DEFAULT_CONCURRENCY = 4
ProgressFactory = Callable[[str], Progress]
"""Called with a target's name for its Progress, and with "" for the source (download, digest)."""
Command = Literal["plan", "publish", "status"]
log = logging.getLogger("imgpub")


@dataclass
class TargetResult:
    target: str
    provider: str
    ok: bool = True
    error: str | None = None
    exit_code: int = 0
    digest: str = ""
    plan: Plan | None = None
    published: Published | None = None
    pruned: TargetLifecycle | None = None
    """retention.on_publish: what the policy did to older versions after this publish."""
    status: Status | None = None
    started: str = ""
    seconds: float = 0.0


@dataclass
class RunResult:
    command: Command
    manifest: Path
    image: ImageInfo
    targets: list[TargetResult] = field(default_factory=list)
    dry_run: bool = False
    replace: bool = False
    started: str = ""
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    """Things to look at that do not stop the run (`file:line:col: field: what`)."""

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.targets)

    @property
    def conflicts(self) -> list[TargetResult]:
        """Targets a plan (or dry run) found in conflict, which publish refuses without --replace."""
        return [t for t in self.targets if t.ok and t.plan and t.plan.conflict and not self.replace]

    @property
    def exit_code(self) -> int:
        """0 when every target succeeded, else the highest failed target's code (1, or 2 for bad input).
        A plan that finds a conflict exits as the publish would: 1."""
        failed = max((t.exit_code for t in self.targets if not t.ok), default=0)
        conflict = ImageConflictError.exit_code if self.published_nothing and self.conflicts else 0
        return max(failed, conflict)

    @property
    def published_nothing(self) -> bool:
        return self.command == "plan" or (self.command == "publish" and self.dry_run)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _manifest(manifest: Manifest | str | Path) -> Manifest:
    return manifest if isinstance(manifest, Manifest) else load_manifest(manifest)


def source_path(manifest: Manifest, state_dir: Path, progress: Progress | None = None) -> Path:
    """The local file holding the source image: downloaded (and verified) or checked in place."""
    image = manifest.image
    if image.is_url:
        assert image.sha256 is not None  # the model requires it for URLs
        return download(image.source, image.sha256, state_dir / "cache", progress)
    path = Path(image.source)
    if not path.is_file():
        what = "is not a file" if path.exists() else "no such file"
        raise manifest.error(("image", "source"), f"{what}: {path}")
    return local_source(path, image.sha256, DigestCache(state_dir), progress)


@dataclass
class _Prepared:
    path: Path
    info: ImageInfo
    boot: Boot


@contextlib.contextmanager
def _prepare(manifest: Manifest, state_dir: Path, progress: Progress) -> Iterator[_Prepared]:
    path = source_path(manifest, state_dir, progress)
    spec, cache = manifest.image, DigestCache(state_dir)
    with open_image(path, spec.format, member=spec.disk) as disk:
        variant = spec.format if spec.disk is None else f"{spec.format}#{spec.disk}"
        cache.integrity(path, variant, disk, progress)
        digest = cache.content_digest(path, variant, disk, progress)
        boot = _boot(manifest, disk)
        yield _Prepared(path, _image_info(manifest, disk, digest, boot), boot)


def _boot(manifest: Manifest, disk: DiskImage) -> Boot:
    """`image.boot`, or what the disk says (OVF firmware, partition table), and what it lacks."""
    try:
        table = inspect_partitions(disk)
    except ImageFormatError as exc:
        if manifest.image.boot_check == "error":
            raise
        table, note = None, f"the partition table cannot be read ({exc.what})"
        found = resolve_boot(manifest.image, table, disk.firmware)
        return Boot(found.mode, found.source, [*found.problems, note])
    return resolve_boot(manifest.image, table, disk.firmware)


def _image_info(manifest: Manifest, disk: DiskImage, content_digest: str, boot: Boot) -> ImageInfo:
    spec = manifest.image
    return ImageInfo(
        name=spec.name,
        version=spec.version,
        arch=spec.arch,
        boot=boot.mode or "uefi-preferred",
        boot_source=boot.source or "a guess (the disk does not say)",
        virtual_size=disk.virtual_size,
        content_digest=content_digest,
        description=spec.description,
        tpm=spec.tpm,
        secure_boot=spec.secure_boot,
        labels=dict(spec.labels),
        source=spec.source,
    )


def target_digest(info: ImageInfo, settings: TargetSettings) -> str:
    """What identifies this publish on this target: the content and everything that shapes registration."""
    registration: dict[str, Any] = {
        "name": settings.image_name or info.name,
        "version": info.version,
        "arch": info.arch,
        "boot": info.boot,
        "tpm": info.tpm,
        "secure_boot": info.secure_boot,
        # retention is about other versions, never about this one's content
        "settings": {k: v for k, v in settings.identity().items() if k != "retention"},
    }
    return identity.image_digest(info.content_digest, registration)


def validate(manifest: Manifest | str | Path, *, state_dir: Path | None = None) -> Manifest:
    """Load and check the manifest; a local (or already downloaded) image is measured too, not read.

    Problems raise a ManifestError; what only deserves a look is in the result's `warnings`."""
    loaded = _manifest(manifest)
    image = loaded.image
    state = state_dir or default_state_dir()
    path = cached_download(state / "cache", str(image.sha256)) if image.is_url else Path(image.source)
    if not image.is_url and not path.is_file():
        raise loaded.error(("image", "source"), f"no such file: {path}")
    if path.is_file():
        with open_image(path, image.format, member=image.disk) as disk:
            boot = _boot(loaded, disk)
            warnings = check_image(loaded, _image_info(loaded, disk, "", boot), boot=boot)
        if warnings:
            return dataclasses.replace(loaded, warnings=(*loaded.warnings, *warnings))
    return loaded


def plan(
    manifest: Manifest | str | Path,
    targets: list[str] | None = None,
    *,
    state_dir: Path | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: ProgressFactory | None = None,
) -> RunResult:
    """What publish would do on every target (conflicts included). Makes no change."""
    return _run("plan", _manifest(manifest), targets, state_dir, concurrency, progress, dry_run=True)


def publish(
    manifest: Manifest | str | Path,
    targets: list[str] | None = None,
    *,
    replace: bool = False,
    dry_run: bool = False,
    state_dir: Path | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: ProgressFactory | None = None,
    retry: RetryPolicy | None = None,
) -> RunResult:
    """Make every selected target match the manifest. A dry run only plans."""
    return _run(
        "publish",
        _manifest(manifest),
        targets,
        state_dir,
        concurrency,
        progress,
        dry_run=dry_run,
        replace=replace,
        retry=retry,
    )


def status(
    manifest: Manifest | str | Path,
    targets: list[str] | None = None,
    *,
    state_dir: Path | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: ProgressFactory | None = None,
) -> RunResult:
    """What is published for this image on every target, and how it drifts from the manifest."""
    return _run("status", _manifest(manifest), targets, state_dir, concurrency, progress, dry_run=True)


def _run(
    command: Command,
    manifest: Manifest,
    names: list[str] | None,
    state_dir: Path | None,
    concurrency: int,
    progress: ProgressFactory | None,
    *,
    dry_run: bool,
    replace: bool = False,
    retry: RetryPolicy | None = None,
) -> RunResult:
    if concurrency < 1:
        raise ConfigurationError(f"concurrency must be at least 1, not {concurrency}")
    selected = manifest.select(names)
    state = state_dir or default_state_dir()
    factory = progress or (lambda _name: NullProgress())
    started, clock = _now(), time.monotonic()
    with _prepare(manifest, state, factory("")) as prepared:
        warnings = check_image(manifest, prepared.info, [t.name for t in selected], prepared.boot)
        result = RunResult(
            command,
            manifest.path,
            prepared.info,
            dry_run=dry_run,
            replace=replace,
            started=started,
            warnings=warnings,
        )

        def one(settings: TargetSettings) -> TargetResult:
            return _target(command, manifest, settings, prepared, state, factory, dry_run, replace, retry)

        pool = ThreadPoolExecutor(min(concurrency, len(selected)), thread_name_prefix="imgpub-target")
        try:
            result.targets = list(pool.map(one, selected))
        finally:  # on Ctrl-C, targets not started yet never start; running ones finish their step
            pool.shutdown(wait=True, cancel_futures=True)
    result.seconds = round(time.monotonic() - clock, 3)
    return result


def _prune_warnings(pruned: TargetLifecycle) -> list[str]:
    if pruned.error:
        return [f"retention: {pruned.error}"]
    return [f"retention: {v.version}: {v.verdict} failed: {v.error}" for v in pruned.versions if v.error]


def _target(
    command: Command,
    manifest: Manifest,
    settings: TargetSettings,
    prepared: _Prepared,
    state_dir: Path,
    factory: ProgressFactory,
    dry_run: bool,
    replace: bool,
    retry: RetryPolicy | None,
) -> TargetResult:
    info = prepared.info
    result = TargetResult(settings.name, settings.provider, started=_now())
    clock = time.monotonic()
    try:
        result.digest = target_digest(info, settings)
        progress = factory(settings.name)
        journal_path = Journal.path_for(
            state_dir, settings.image_name or info.name, info.version, settings.name
        )
        writes = command == "publish" and not dry_run
        # A publish holds the target's lock from its plan to its end and reads the journal inside
        # it; plans and dry runs may read what an earlier run recorded and write nothing.
        with target_lock(journal_path.with_suffix(".lock"), progress.note) if writes else nullcontext():
            ctx = Context(
                target=settings.name,
                digest=result.digest,
                journal=Journal(journal_path),
                progress=progress,
                retry=retry or RetryPolicy(),
                log=log.getChild(settings.name),
                replace=replace,
            )
            provider = manifest.providers[settings.provider]()
            if command == "status":
                result.status = provider.status(info, settings, ctx)
                return result
            result.plan = provider.plan(info, settings, ctx)
            if not writes:
                return result
            if result.plan.conflict and not replace:
                raise ImageConflictError(settings.name, result.plan.conflict, result.plan.conflict_hint)
            with open_image(prepared.path, manifest.image.format, member=manifest.image.disk) as disk:
                result.published = provider.publish(info, settings, disk, ctx)
            if settings.retention is not None and settings.retention.on_publish:
                result.pruned = prune_target(manifest, settings, state_dir, retry, ctx.progress)
                result.published.warnings += _prune_warnings(result.pruned)
    except (ImgpubError, DiskError) as exc:
        result.ok, result.error, result.exit_code = False, str(exc), exc.exit_code
    except OSError as exc:
        result.ok, result.error, result.exit_code = False, f"target {settings.name}: {exc}", 1
    except Exception as exc:  # a provider bug must not take the other targets down
        log.debug("target %s failed", settings.name, exc_info=True)
        result.ok, result.error, result.exit_code = False, f"unexpected {type(exc).__name__}: {exc}", 1
    finally:
        result.seconds = round(time.monotonic() - clock, 3)
    return result
