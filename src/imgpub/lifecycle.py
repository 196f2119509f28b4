"""Every version of the image at once: `prune` (the retention policy), the version matrix of
`status --all-versions`, and `reconcile`. None of them reads the disk image.

Each target runs on its own: one failing target, or one version failing to delete, never stops
the others, and every failure is reported where it happened (exit code 1).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from imgpub.disk.errors import DiskError
from imgpub.errors import ConfigurationError, ImgpubError
from imgpub.journal import Journal, default_state_dir
from imgpub.manifest import Manifest, load_manifest
from imgpub.progress import NullProgress, Progress
from imgpub.provider import Context, Provider, Release, TargetSettings
from imgpub.retention import Retention, Verdict, decide, version_key
from imgpub.retry import RetryPolicy

__all__ = [
    "LifecycleResult",
    "TargetLifecycle",
    "VersionOutcome",
    "matrix",
    "prune",
    "prune_target",
    "reconcile",
]

Command = Literal["prune", "versions", "reconcile"]
Clock = Callable[[], datetime]
log = logging.getLogger("imgpub")


@dataclass
class VersionOutcome:
    """What happened (or would happen) to one version on one target."""

    version: str
    state: str
    verdict: Verdict | Literal["finish", "reconcile"]
    reason: str
    age_days: float | None = None
    done: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class TargetLifecycle:
    target: str
    provider: str
    ok: bool = True
    error: str | None = None
    exit_code: int = 0
    policy: Retention | None = None
    regions: list[str | None] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    versions: list[VersionOutcome] = field(default_factory=list)

    def fail(self, exc: BaseException) -> None:
        self.ok, self.error = False, str(exc)
        self.exit_code = max(self.exit_code, getattr(exc, "exit_code", 1))


@dataclass
class LifecycleResult:
    command: Command
    manifest: Path
    name: str
    current: str
    dry_run: bool
    started: str = ""
    seconds: float = 0.0
    targets: list[TargetLifecycle] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        worst = max((t.exit_code for t in self.targets), default=0)
        failed_versions = any(v.error for t in self.targets for v in t.versions)
        return max(worst, 1 if failed_versions else 0)

    @property
    def in_sync(self) -> bool:
        """For the version matrix: nothing missing, failed, half-deleted or drifted anywhere."""
        return all(not cell.startswith(("missing", "failed", "deleting", "drift")) for cell in self.cells())

    def cells(self) -> list[str]:
        return [state for t in self.targets for _, _, state in version_cells(t)]


def version_cells(t: TargetLifecycle) -> list[tuple[str, str | None, str]]:
    """(version, region, state) for every version x wanted region (and any region it is in beyond)."""
    out = []
    for release in sorted(t.releases, key=lambda r: version_key(r.version), reverse=True):
        regions = list(dict.fromkeys([*t.regions, *release.regions]))
        for region in regions:
            if region not in release.regions:
                out.append((release.version, region, "missing"))
            elif release.drift and release.state == "active":
                out.append((release.version, region, "drift"))
            else:
                out.append((release.version, region, release.state))
    return out


# -- the three commands ---------------------------------------------------------------------------
def prune(
    manifest: Manifest | str | Path,
    targets: list[str] | None = None,
    *,
    apply: bool = False,
    state_dir: Path | None = None,
    now: Clock | None = None,
    retry: RetryPolicy | None = None,
    progress: Callable[[str], Progress] | None = None,
) -> LifecycleResult:
    """The retention policy's decisions per target and version; carried out only with `apply`."""
    return _run("prune", manifest, targets, state_dir, now, retry, progress, apply=apply)


def matrix(
    manifest: Manifest | str | Path,
    targets: list[str] | None = None,
    *,
    state_dir: Path | None = None,
    now: Clock | None = None,
    retry: RetryPolicy | None = None,
) -> LifecycleResult:
    """Every version on every target and region, with its state (`status --all-versions`)."""
    return _run("versions", manifest, targets, state_dir, now, retry, None, apply=False)


def reconcile(
    manifest: Manifest | str | Path,
    targets: list[str] | None = None,
    *,
    apply: bool = True,
    state_dir: Path | None = None,
    now: Clock | None = None,
    retry: RetryPolicy | None = None,
    progress: Callable[[str], Progress] | None = None,
) -> LifecycleResult:
    """Bring every published version in line with the settings (regions, sharing, tags, deprecation)
    without uploading; with `apply=False`, only what would change."""
    return _run("reconcile", manifest, targets, state_dir, now, retry, progress, apply=apply)


def _run(
    command: Command,
    manifest: Manifest | str | Path,
    names: list[str] | None,
    state_dir: Path | None,
    now: Clock | None,
    retry: RetryPolicy | None,
    progress: Callable[[str], Progress] | None,
    *,
    apply: bool,
) -> LifecycleResult:
    loaded = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    selected = loaded.select(names)
    clock = now or (lambda: datetime.now(UTC))
    runner = _Runner(loaded, default_state_dir() if state_dir is None else state_dir, clock, retry, progress)
    result = LifecycleResult(
        command,
        loaded.path,
        loaded.image.name,
        loaded.image.version,
        dry_run=not apply,
        started=clock().isoformat(timespec="seconds"),
    )
    started = time.monotonic()
    with ThreadPoolExecutor(min(4, len(selected)), thread_name_prefix="imgpub-lifecycle") as pool:
        result.targets = list(pool.map(lambda s: runner.one(command, s, apply), selected))
    result.seconds = round(time.monotonic() - started, 3)
    return result


@dataclass
class _Runner:
    manifest: Manifest
    state_dir: Path
    now: Clock
    retry: RetryPolicy | None
    progress: Callable[[str], Progress] | None

    def context(self, settings: TargetSettings, version: str | None) -> Context:
        name = settings.image_name or self.manifest.image.name
        journal = (
            Journal(None)
            if version is None
            else Journal.for_target(self.state_dir, name, version, settings.name)
        )
        return Context(
            target=settings.name,
            digest="",
            journal=journal,
            progress=self.progress(settings.name) if self.progress else NullProgress(),
            retry=self.retry or RetryPolicy(),
            log=log.getChild(settings.name),
            now=self.now,
        )

    def one(self, command: Command, settings: TargetSettings, apply: bool) -> TargetLifecycle:
        out = TargetLifecycle(settings.name, settings.provider, policy=settings.retention)
        provider = self.manifest.providers[settings.provider]()
        name = self.manifest.image.name  # each provider applies its own image_name rule to its tags
        try:
            out.regions = provider.regions(settings)
            out.releases = provider.releases(name, settings, self.context(settings, None))
            if command == "prune":
                self.prune(provider, name, settings, out, apply)
            elif command == "reconcile":
                self.reconcile(provider, name, settings, out, apply)
        except NotImplementedError as exc:
            out.fail(ConfigurationError(f"target {settings.name}: {exc}"))
        except (ImgpubError, DiskError) as exc:
            out.fail(exc)
        except Exception as exc:  # a provider bug must not take the other targets down
            log.debug("target %s failed", settings.name, exc_info=True)
            out.fail(RuntimeError(f"unexpected {type(exc).__name__}: {exc}"))
        return out

    def prune(
        self, provider: Provider[Any], name: str, settings: TargetSettings, out: TargetLifecycle, apply: bool
    ) -> None:
        out.versions = plan_prune(out.releases, settings.retention, self.manifest.image.version, self.now())
        staying = ("current", "keep", "protect")
        replacement = next(
            (
                v.version
                for v in out.versions
                if v.verdict in staying or (v.verdict == "leave" and v.state == "active")
            ),
            None,
        )
        by_version = {r.version: r for r in out.releases}
        for outcome in out.versions:
            if not apply or outcome.verdict not in ("deprecate", "delete", "finish"):
                continue
            action: Any = "deprecate" if outcome.verdict == "deprecate" else "delete"
            ctx = self.context(settings, outcome.version)
            try:
                outcome.done = provider.retire(
                    name, settings, by_version[outcome.version], action, ctx, replacement=replacement
                )
            except (ImgpubError, DiskError) as exc:
                outcome.error = str(exc)

    def reconcile(
        self, provider: Provider[Any], name: str, settings: TargetSettings, out: TargetLifecycle, apply: bool
    ) -> None:
        for release in sorted(out.releases, key=lambda r: version_key(r.version), reverse=True):
            missing = [r for r in out.regions if r not in release.regions]
            wanted = [f"copy to {r} (missing)" for r in missing if r is not None] + list(release.drift)
            outcome = VersionOutcome(
                release.version, release.state, "reconcile", "; ".join(wanted) or "in sync"
            )
            out.versions.append(outcome)
            if release.state in ("deleting", "failed", "pending"):
                outcome.reason = f"{release.state}: left to publish and prune"
                continue
            if apply and wanted:
                try:
                    outcome.done = provider.reconcile(
                        name, settings, release, self.context(settings, release.version)
                    )
                except (ImgpubError, DiskError) as exc:
                    outcome.error = str(exc)


def plan_prune(
    releases: list[Release], policy: Retention | None, current: str, now: datetime
) -> list[VersionOutcome]:
    """The policy's verdict for each release, newest first; a delete that stopped half-way is
    finished whatever the policy says."""
    if policy is None or not policy.active:
        finishing = [r for r in releases if r.state == "deleting"]
        return [_outcome(r, "finish", "a delete stopped half-way", now) for r in finishing]
    decisions = decide(
        [(r.version, r.created, r.state == "deprecated") for r in releases], policy, current=current, now=now
    )
    by_version = {r.version: r for r in releases}
    out = []
    for d in decisions:
        release = by_version[d.version]
        if release.state == "deleting" and d.verdict not in ("current", "protect"):
            out.append(_outcome(release, "finish", "a delete stopped half-way", now))
        else:
            out.append(_outcome(release, d.verdict, d.reason, now))
    return out


def _outcome(release: Release, verdict: Any, reason: str, now: datetime) -> VersionOutcome:
    age = (now - release.created).total_seconds() / 86400 if release.created else None
    return VersionOutcome(
        release.version, release.state, verdict, reason, None if age is None else round(age, 1)
    )


def prune_target(
    manifest: Manifest,
    settings: TargetSettings,
    state_dir: Path,
    retry: RetryPolicy | None,
    progress: Progress,
) -> TargetLifecycle:
    """`retention.on_publish`: prune one target right after it was published."""
    runner = _Runner(manifest, state_dir, lambda: datetime.now(UTC), retry, lambda _name: progress)
    return runner.one("prune", settings, True)
