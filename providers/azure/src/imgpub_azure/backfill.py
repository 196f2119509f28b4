"""Reconcile one published version with the settings, without uploading anything.

* Regions: a gallery version that lacks some of the gallery's target regions (or whose replication
  to one failed) gets them added to its `targetRegions` with a PATCH; Azure copies the image from
  the version's own replicas. No blob, no upload disk, no new image: the version's storage profile is
  sent as it is. A managed image lives in one location and cannot be made again without its disk:
  that is said, and left to `imgpub publish` of that version.
* Tags: the target's `tags` and imgpub's managed-by tag, set on each image (others' tags kept).
* Deprecation: a version deprecated in part (its gallery version, or its managed image, only) is
  deprecated everywhere, at the end of life it already has.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from imgpub_azure.catalog import Parts
from imgpub_azure.names import region_key
from imgpub_azure.releases import is_deprecated, is_version, regions_of, wanted_tags
from imgpub_azure.retirement import Retirement, Steps
from imgpub_azure.tags import belongs_to, merged_tags, missing_tags
from imgpub_azure.version_update import end_of_life, regions_update

__all__ = ["Backfill"]


class Backfill(Retirement):
    """Reconcile reuses retirement's careful PATCHes (deprecation, tags), plus new regions."""

    def reconcile(self, version: str) -> list[str]:
        parts, now = self.catalog.one(version), self.now()
        steps = Steps(self.call.target, f"reconcile {self.name} {version}")
        for v in parts.versions:
            steps.run(f"gallery image version {v.name}", self._replicate, parts, v)
        location = region_key(self.settings.location)
        if (
            self.settings.managed_image
            and not parts.images
            and not any(location in regions_of(v) for v in parts.versions)
        ):
            steps.run("managed image", self._no_image, location)
        wanted = wanted_tags(self.settings)
        for r in parts.made:
            if missing_tags(r, wanted):
                steps.run(str(r.name), self._retag, parts, r, wanted)
        deprecated = [r for r in parts.made if is_deprecated(r, now)]
        if deprecated and len(deprecated) < len(parts.made):
            at = min((t for r in deprecated if is_version(r) and (t := end_of_life(r))), default=now)
            for r in parts.made:
                if r not in deprecated:
                    steps.run(str(r.name), self._deprecate, parts, r, at)
        return steps.result()

    def _no_image(self, location: str) -> str:
        return (
            f"no managed image of this version in {location}: one cannot be made again without its "
            "disk (run imgpub publish for this version)"
        )

    def _replicate(self, parts: Parts, version: Any) -> str:
        gallery, definition = self.catalog.gallery(), self.catalog.definition
        assert gallery is not None and definition is not None
        have = regions_of(version)
        missing = [r for r in gallery.wanted_regions() if region_key(r) not in have]
        if not missing:
            return ""
        ref = f"{gallery.gallery.name}/{definition}/{version.name}"
        keys = {region_key(r) for r in missing}
        after = gallery.update_version(
            definition,
            str(version.name),
            lambda found: regions_update(found, gallery.target_regions_for(missing)),
            lambda found: not belongs_to(found, self.name, parts.version) or keys <= set(regions_of(found)),
        )
        if after is None:
            return f"gallery image version {ref} is gone"
        now_in = set(regions_of(after))
        added = [r for r in missing if region_key(r) in now_in]
        failed = [r for r in missing if region_key(r) not in now_in]
        line = (
            f"replicated gallery image version {ref} to {', '.join(added) or 'no region'} from its replicas"
        )
        if failed:
            line += f"; replication to {', '.join(failed)} did not complete"
        return line + " (nothing uploaded)"

    def _retag(self, parts: Parts, resource: Any, wanted: dict[str, str]) -> str:
        def tags(found: Any) -> dict[str, str]:
            return merged_tags(found, wanted)

        def done(found: Any) -> bool:
            return not belongs_to(found, self.name, parts.version) or not missing_tags(found, wanted)

        if is_version(resource):
            gallery, definition = self.catalog.gallery(), self.catalog.definition
            assert gallery is not None and definition is not None
            from azure.mgmt.compute import models

            gallery.update_version(
                definition, str(resource.name), lambda f: models.GalleryImageVersionUpdate(tags=tags(f)), done
            )
            return f"tagged gallery image version {resource.name}: {', '.join(sorted(wanted))}"
        self.images.update_tags(str(resource.name), tags, done)
        return f"tagged image {resource.name}: {', '.join(sorted(wanted))}"

    def _deprecate(self, parts: Parts, resource: Any, at: datetime) -> str:
        if is_version(resource):
            return self.deprecate_version(parts, resource, at)
        return self.deprecate_image(parts, resource, at)
