"""A complete third-party imgpub provider in one module: it records each image in a JSON catalog.

Install it next to imgpub (`pip install ./examples/third-party-provider`) and a manifest can say:

    targets:
      - name: catalog
        provider: catalog
        catalog: catalog.json
        channel: beta
        owners: [platform-team]

`imgpub schema` then covers these settings, and a typo such as `chanel:` is reported with its
line and column like any built-in field. It uses only imgpub's public modules.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field

from imgpub.errors import ImageConflictError
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
    Status,
    TargetSettings,
)

__all__ = ["CatalogProvider", "CatalogSettings"]


class CatalogSettings(TargetSettings):
    provider: Literal["catalog"]
    catalog: ManifestPath = Field(description="JSON file that lists every published image.")
    channel: Literal["stable", "beta"] = "stable"
    owners: list[str] = Field(default_factory=list, description="Who to ask about this image.")


class CatalogProvider(Provider[CatalogSettings]):
    name = "catalog"
    settings_model = CatalogSettings

    def check(self, image: ImageInfo, settings: CatalogSettings) -> list[Problem]:
        if settings.channel == "stable" and not settings.owners:
            return [Problem("owners", "a stable image needs at least one owner")]
        return []

    def _entries(self, settings: CatalogSettings) -> dict[str, dict[str, str]]:
        if not settings.catalog.exists():
            return {}
        data: dict[str, dict[str, str]] = json.loads(settings.catalog.read_text())
        return data

    def plan(self, image: ImageInfo, settings: CatalogSettings, ctx: Context) -> Plan:
        key = f"{image.name}@{image.version}"
        entry = self._entries(settings).get(key)
        plan = Plan(ctx.target, self.name)
        if entry is None:
            plan.actions.append(Action("create", key, f"add to {settings.catalog}"))
        elif entry["digest"] != ctx.digest:
            plan.conflict = f"{key} is in the catalog with digest {entry['digest']}"
        else:
            plan.existing.append(Artifact("entry", key, uri=str(settings.catalog)))
        return plan

    def publish(
        self, image: ImageInfo, settings: CatalogSettings, disk: DiskImage, ctx: Context
    ) -> Published:
        plan = self.plan(image, settings, ctx)
        if plan.conflict and not ctx.replace:
            raise ImageConflictError(ctx.target, plan.conflict)
        key = f"{image.name}@{image.version}"
        if plan.up_to_date:
            return Published(ctx.target, self.name, artifacts=plan.existing, changed=False)
        entries = self._entries(settings)
        entries[key] = {"digest": ctx.digest, "channel": settings.channel, "size": str(disk.virtual_size)}
        settings.catalog.write_text(json.dumps(entries, indent=2, sort_keys=True))
        return Published(ctx.target, self.name, artifacts=[Artifact("entry", key, uri=str(settings.catalog))])

    def status(self, image: ImageInfo, settings: CatalogSettings, ctx: Context) -> Status:
        plan = self.plan(image, settings, ctx)
        drift = [plan.conflict] if plan.conflict else [a.detail for a in plan.actions]
        return Status(ctx.target, self.name, artifacts=plan.existing, drift=drift)
