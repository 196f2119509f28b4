"""One publish run of one Azure target: the plan's actions carried out in order.

replace what must go (a failed resource, or a conflict with --replace) -> create the container ->
upload -> managed image -> gallery, definition, version (or its new regions) -> remove the upload.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from imgpub.errors import ConfigurationError
from imgpub.provider import Context, DiskImage, ImageInfo, Plan
from imgpub_azure.checks import Names, generation_for, names_for
from imgpub_azure.clients import AzureClients
from imgpub_azure.containers import UploadContainer
from imgpub_azure.definition import Definitions, definition_differences
from imgpub_azure.errors import Caller
from imgpub_azure.gallery import GalleryImages, RegionState
from imgpub_azure.inventory import spec_for
from imgpub_azure.managed_image import ManagedImages
from imgpub_azure.planner import plan_has, version_from_image
from imgpub_azure.settings import AzureSettings
from imgpub_azure.states import failed_state
from imgpub_azure.tags import DELETING_TAG, definition_tags, digest_of, identity_tags, merged_tags
from imgpub_azure.upload import VhdUploads
from imgpub_azure.upload_source import UploadedVhd

__all__ = ["Publisher", "replication_warnings"]


def replication_warnings(ref: str, states: list[RegionState]) -> list[str]:
    return [
        f"gallery image version {ref}: replication to {s.region} failed: {s.details or 'no details'}"
        for s in states
        if s.state.lower() == "failed"
    ]


@dataclass
class Publisher:
    image: ImageInfo
    settings: AzureSettings
    ctx: Context
    plan: Plan
    clients: AzureClients
    caller: Caller

    @property
    def names(self) -> Names:
        return names_for(self.image, self.settings)

    @property
    def tags(self) -> dict[str, str]:
        return identity_tags(self.image, self.ctx.digest, self.settings.tags)

    @property
    def generation(self) -> str:
        return generation_for(self.image, self.settings)

    @cached_property
    def uploads(self) -> VhdUploads:
        return VhdUploads(self.clients, self.caller, self.ctx.progress, self.ctx.journal)

    @property
    def definition_ref(self) -> str:
        gal = self.settings.gallery
        return f"{gal.name if gal else ''}/{self.names.definition}"

    @property
    def version_ref(self) -> str:
        return f"{self.definition_ref}/{self.names.version}"

    def gallery(self) -> GalleryImages:
        assert self.settings.gallery is not None
        return GalleryImages(self.clients, self.caller, self.settings.gallery)

    def definitions(self) -> Definitions:
        assert self.settings.gallery is not None
        return Definitions(self.clients, self.caller, self.settings.gallery)

    def run(self, disk: DiskImage) -> list[str]:
        """Carry out the plan; returns the warnings (regions whose replication failed, what another
        run published at the same time)."""
        try:
            self.replace()
            if plan_has(self.plan, "create", f"container {self.settings.container}"):
                self.ctx.progress.stage(f"create container {self.settings.container}")
                UploadContainer(self.clients, self.caller).create()
            source = self.upload(disk) if plan_has(self.plan, "upload") else None
            image_id = self.managed_image(source) if self.settings.managed_image else None
            warnings = self.gallery_version(source, image_id) if self.settings.gallery is not None else []
            self.retag()
            self.remove_upload(source)
        finally:
            self.uploads.close()
        return warnings + [
            f"{what} was published by another run at the same time; this run adopted it"
            for what in self.caller.adopted
        ]

    def retag(self) -> None:
        """Labels or tags changed since the image was published: set them (others' tags stay)."""
        names = self.names
        images = ManagedImages(self.clients, self.caller)
        if plan_has(self.plan, "tag", f"image {names.image}") and (found := images.find(names.image)):
            self.ctx.progress.stage(f"tag image {names.image}")
            images.set_tags(names.image, merged_tags(found, self.tags, drop=(DELETING_TAG,)))
        version = f"gallery image version {self.version_ref}"
        if plan_has(self.plan, "tag", version) and not plan_has(self.plan, "copy", version):
            assert names.definition and names.version
            gallery = self.gallery()
            if existing := gallery.find_version(names.definition, names.version):
                self.ctx.progress.stage(f"tag {version}")
                gallery.set_version_tags(names.definition, names.version, merged_tags(existing, self.tags))

    def replace(self) -> None:
        """Delete what is failed, or what conflicts (publish got here with --replace then).
        A definition goes only when it holds no version but this one."""
        names, progress = self.names, self.ctx.progress
        replace_definition = plan_has(self.plan, "replace", f"image definition {self.definition_ref}")
        if replace_definition:
            assert names.definition is not None
            others = [v for v in self.definitions().version_names(names.definition) if v != names.version]
            if others:
                raise ConfigurationError(
                    f"target {self.ctx.target}: cannot replace image definition {self.definition_ref}: "
                    f"it holds versions {', '.join(others)}; use a new gallery.image_definition name"
                )
        if plan_has(self.plan, "replace", f"image {names.image}"):
            progress.note(f"replacing image {names.image}")
            ManagedImages(self.clients, self.caller).delete(names.image, self._doomed)
        if plan_has(self.plan, "replace", f"gallery image version {self.version_ref}"):
            assert names.definition and names.version
            progress.note(f"replacing gallery image version {self.version_ref}")
            doomed = (lambda found: True) if replace_definition else self._doomed
            self.gallery().delete_version(names.definition, names.version, doomed)
        if replace_definition:
            assert names.definition is not None
            progress.note(f"replacing image definition {self.definition_ref}")
            spec = spec_for(self.image, self.settings, self.names)
            self.definitions().delete(
                names.definition,
                lambda found: failed_state(found) is not None or bool(definition_differences(found, spec)),
            )

    def _doomed(self, found: object) -> bool:
        """Still what the plan meant to replace: failed, or another image's. One that is now this
        image, usable, was made meanwhile by another run and is kept."""
        return failed_state(found) is not None or digest_of(found) != self.ctx.digest

    def upload(self, disk: DiskImage) -> UploadedVhd:
        source, stats = self.uploads.upload(
            disk, self.ctx.digest, self.names.image, self.generation, self.tags
        )
        self.ctx.journal.set(
            "upload_stats",
            {
                "pages_sent": stats.pages_sent,
                "bytes_sent": stats.bytes_sent,
                "pages_present": stats.pages_present,
            },
        )
        return source

    def managed_image(self, source: UploadedVhd | None) -> str:
        name = self.names.image
        image_id: str | None = self.clients.compute_id(f"images/{name}")
        if plan_has(self.plan, "create", f"image {name}") or plan_has(self.plan, "replace", f"image {name}"):
            assert source is not None
            self.ctx.progress.stage(f"create image {name}")
            image_id = (
                ManagedImages(self.clients, self.caller).create(name, source, self.generation, self.tags).id
            )
        self.ctx.journal.set("image_id", image_id)
        return str(image_id)

    def gallery_version(self, source: UploadedVhd | None, image_id: str | None) -> list[str]:
        """Create the version (or widen its regions); returns replication warnings."""
        gallery, names, progress = self.gallery(), self.names, self.ctx.progress
        assert names.definition and names.version
        self._ensure_definition(gallery)
        resource = f"gallery image version {self.version_ref}"
        kinds = {a.kind for a in self.plan.actions if a.resource == resource}
        if kinds & {"create", "replace"}:
            from_image = version_from_image(self.image, self.settings) and image_id is not None
            origin = image_id if from_image else source or self.uploads.planned(names.image)
            assert origin is not None
            body = gallery.version_body(origin, self.tags)
            progress.stage(f"create {resource}")
        elif "copy" in kinds and (existing := gallery.find_version(names.definition, names.version)):
            body = gallery.region_update_body(existing, self.tags)
            progress.stage(f"replicate {resource} to more regions")
        else:
            return []
        _, states = gallery.put_version(names.definition, names.version, body, progress)
        return replication_warnings(self.version_ref, states)

    def _ensure_definition(self, gallery: GalleryImages) -> None:
        gal = gallery.gallery
        if plan_has(self.plan, "create", f"gallery {gal.name}"):
            self.ctx.progress.stage(f"create gallery {gal.name}")
            gallery.create_gallery(definition_tags(self.image, self.settings.tags))
        resource = f"image definition {self.definition_ref}"
        if plan_has(self.plan, "create", resource) or plan_has(self.plan, "replace", resource):
            spec = spec_for(self.image, self.settings, self.names)
            self.ctx.progress.stage(f"create image definition {spec.name}")
            self.definitions().create(spec)

    def remove_upload(self, source: UploadedVhd | None) -> None:
        """The temporary blob or disk goes once the images exist (unless keep_upload)."""
        leftover = source or self.uploads.pending()
        if leftover is not None and not self.settings.keep_upload:
            self.ctx.progress.stage(f"remove temporary {leftover.kind} {leftover.name}")
            self.uploads.remove(leftover)
