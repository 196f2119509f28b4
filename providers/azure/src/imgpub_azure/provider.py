"""AzureProvider: upload a sparse fixed VHD, then a managed image and/or a Compute Gallery version.

publish() tells the story: plan (planner.py), replace what must go (a failed resource, or a
conflict with --replace), create the container, upload what is needed, create the managed image,
ensure the gallery and definition, create the version and follow its replication, remove the
temporary upload (publisher.py). Every step is found by name, imgpub's digest tag and its
provisioningState first, so a re-run is a no-op, a stopped run continues, and a failed resource is
made again.

Every version at once (prune, status --all-versions, reconcile): catalog.py finds them by imgpub's
tags, releases.py says what state each is in, retirement.py deprecates or deletes one, backfill.py
reconciles one without uploading.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING, ClassVar

from imgpub.errors import CloudError, ConfigurationError, ImageConflictError
from imgpub.provider import (
    Context,
    DiskImage,
    ImageInfo,
    Plan,
    Problem,
    Provider,
    Published,
    Release,
    RetireAction,
    Status,
)
from imgpub_azure.backfill import Backfill
from imgpub_azure.blob_lease import OtherRunFinished
from imgpub_azure.catalog import Catalog
from imgpub_azure.checks import problems_for
from imgpub_azure.clients import AzureClients, default_credential
from imgpub_azure.errors import Caller
from imgpub_azure.gallery import wanted_regions
from imgpub_azure.names import region_key
from imgpub_azure.planner import Planner
from imgpub_azure.publisher import Publisher
from imgpub_azure.redaction import RedactedProgress, redact, secrets_kept
from imgpub_azure.releases import release_of
from imgpub_azure.retirement import Retirement
from imgpub_azure.settings import AzureSettings
from imgpub_azure.status import status_of

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

__all__ = ["AzureProvider"]

MAX_PLANS = 3
"""Plans one publish makes at most: again only after another run finished the same image."""


class AzureProvider(Provider[AzureSettings]):
    name: ClassVar[str] = "azure"
    settings_model: ClassVar[type[AzureSettings]] = AzureSettings

    def __init__(self, credential: TokenCredential | None = None) -> None:
        """`credential`: the ARM (and fallback storage) identity; DefaultAzureCredential if None."""
        self.credential = credential
        self._defaults: dict[str | None, TokenCredential] = {}
        self._lock = threading.Lock()

    def check(self, image: ImageInfo, settings: AzureSettings) -> list[Problem]:
        return problems_for(image, settings)

    def _parts(self, settings: AzureSettings, ctx: Context) -> tuple[AzureClients, Caller]:
        return AzureClients(settings, self._credential_for(settings)), Caller(
            ctx.target, ctx.retry, ctx.progress
        )

    def _credential_for(self, settings: AzureSettings) -> TokenCredential:
        """The injected credential, or one DefaultAzureCredential per authority (reusing its tokens)."""
        if self.credential is not None:
            return self.credential
        with self._lock:
            if settings.authority_host not in self._defaults:
                self._defaults[settings.authority_host] = default_credential(settings)
            return self._defaults[settings.authority_host]

    def plan(self, image: ImageInfo, settings: AzureSettings, ctx: Context) -> Plan:
        with secrets_kept(ctx.target, "plan"):
            return self._plan(image, settings, _redacted(ctx))

    def publish(self, image: ImageInfo, settings: AzureSettings, disk: DiskImage, ctx: Context) -> Published:
        with secrets_kept(ctx.target, "publish"):
            published = self._publish(image, settings, disk, _redacted(ctx))
            published.warnings = [redact(w) for w in published.warnings]
            return published

    def status(self, image: ImageInfo, settings: AzureSettings, ctx: Context) -> Status:
        with secrets_kept(ctx.target, "status"):
            ctx = _redacted(ctx)
            return status_of(image, settings, ctx, *self._parts(settings, ctx))

    # -- every version at once -------------------------------------------------------------------------
    def regions(self, settings: AzureSettings) -> list[str | None]:
        """The managed image's location (and the upload's) and the gallery's target regions."""
        wanted = [settings.location] if settings.managed_image or settings.gallery is None else []
        if settings.gallery is not None:
            wanted += wanted_regions(settings)
        return list(dict.fromkeys(region_key(r) for r in wanted))

    def releases(self, name: str, settings: AzureSettings, ctx: Context) -> list[Release]:
        with secrets_kept(ctx.target, "list versions"):
            ctx = _redacted(ctx)
            catalog = Catalog(*self._parts(settings, ctx), settings, name, ctx.now)
            now = ctx.now()
            return [release_of(parts, settings, now) for parts in catalog.parts().values()]

    def retire(
        self,
        name: str,
        settings: AzureSettings,
        release: Release,
        action: RetireAction,
        ctx: Context,
        *,
        replacement: str | None,
    ) -> list[str]:
        """Azure has no pointer to a replacement version: `replacement` is not used (a VM asking for
        the definition's `latest` gets the newest version not excluded from it)."""
        with secrets_kept(ctx.target, action):
            ctx = _redacted(ctx)
            retirement = Retirement(*self._parts(settings, ctx), settings, name, ctx.now)
            if action == "deprecate":
                return [redact(line) for line in retirement.deprecate(release.version)]
            return [redact(line) for line in retirement.delete(release.version, ctx.journal)]

    def reconcile(self, name: str, settings: AzureSettings, release: Release, ctx: Context) -> list[str]:
        with secrets_kept(ctx.target, "reconcile"):
            ctx = _redacted(ctx)
            backfill = Backfill(*self._parts(settings, ctx), settings, name, ctx.now)
            return [redact(line) for line in backfill.reconcile(release.version)]

    def _plan(self, image: ImageInfo, settings: AzureSettings, ctx: Context) -> Plan:
        errors = [p for p in self.check(image, settings) if not p.warning]
        if errors:
            raise ConfigurationError("; ".join(f"{p.field}: {p.message}" for p in errors))
        return Planner(image, settings, ctx, *self._parts(settings, ctx)).build()

    def _publish(self, image: ImageInfo, settings: AzureSettings, disk: DiskImage, ctx: Context) -> Published:
        """Plan, then carry the plan out. When another run publishing the same image held the
        upload and finished meanwhile, plan again: its work is adopted, not redone."""
        waited = False
        for _ in range(MAX_PLANS):
            plan = self._plan(image, settings, ctx)
            if plan.conflict and not ctx.replace:
                raise ImageConflictError(ctx.target, plan.conflict, plan.conflict_hint)
            published = Published(ctx.target, self.name, changed=not plan.up_to_date)
            if waited and plan.up_to_date:
                published.warnings.append(
                    "this image was published by another run at the same time; this run adopted it"
                )
            if not plan.up_to_date:
                publisher = Publisher(image, settings, ctx, plan, *self._parts(settings, ctx))
                try:
                    published.warnings += publisher.run(disk)
                except OtherRunFinished as exc:
                    ctx.progress.note(f"{exc}: planning again")
                    waited = True
                    continue
            published.artifacts = status_of(image, settings, ctx, *self._parts(settings, ctx)).artifacts
            return published
        raise CloudError(ctx.target, "publish", f"other runs kept changing the target ({MAX_PLANS} plans)")


def _redacted(ctx: Context) -> Context:
    """The context with a progress that redacts every stage name and note."""
    if isinstance(ctx.progress, RedactedProgress):
        return ctx
    return dataclasses.replace(ctx, progress=RedactedProgress(ctx.progress))
