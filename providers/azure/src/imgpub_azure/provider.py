"""AzureProvider: upload a sparse fixed VHD, then a managed image and/or a Compute Gallery version.

publish() tells the story: plan, replace what conflicts (only with --replace), upload what is
needed, create the managed image, ensure the gallery and definition, create the version and follow
its replication, remove the temporary upload. Every step is found by name and imgpub's digest tag
first, so a re-run is a no-op and a stopped run continues.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from imgpub.errors import ConfigurationError, ImageConflictError
from imgpub.provider import (
    Action,
    Artifact,
    Context,
    DiskImage,
    ImageInfo,
    Plan,
    Problem,
    Provider,
    Published,
    Status,
)
from imgpub_azure.checks import Names, architecture, generation_for, names_for, problems_for
from imgpub_azure.clients import AzureClients, default_credential
from imgpub_azure.errors import Caller
from imgpub_azure.gallery import DefinitionSpec, GalleryImages, RegionState, replication_states
from imgpub_azure.managed_image import ManagedImages
from imgpub_azure.names import region_key
from imgpub_azure.settings import AzureSettings
from imgpub_azure.tags import digest_of, identity_tags
from imgpub_azure.upload import VhdUploads
from imgpub_azure.upload_source import UploadedVhd

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

__all__ = ["AzureProvider"]


class AzureProvider(Provider[AzureSettings]):
    name: ClassVar[str] = "azure"
    settings_model: ClassVar[type[AzureSettings]] = AzureSettings

    def __init__(self, credential: TokenCredential | None = None) -> None:
        """`credential`: the ARM (and fallback storage) identity; DefaultAzureCredential if None."""
        self.credential = credential
        self._defaults: dict[str | None, TokenCredential] = {}
        self._lock = threading.Lock()

    # ---- validate -------------------------------------------------------------------------------

    def check(self, image: ImageInfo, settings: AzureSettings) -> list[Problem]:
        return problems_for(image, settings)

    # ---- plan -----------------------------------------------------------------------------------

    def _parts(self, settings: AzureSettings, ctx: Context) -> tuple[AzureClients, Caller]:
        return AzureClients(settings, self._credential_for(settings)), Caller(ctx.target, ctx.retry)

    def _credential_for(self, settings: AzureSettings) -> TokenCredential:
        """The injected credential, or one DefaultAzureCredential per authority (reusing its tokens)."""
        if self.credential is not None:
            return self.credential
        with self._lock:
            if settings.authority_host not in self._defaults:
                self._defaults[settings.authority_host] = default_credential(settings)
            return self._defaults[settings.authority_host]

    def plan(self, image: ImageInfo, settings: AzureSettings, ctx: Context) -> Plan:
        self._require_valid(image, settings)
        clients, caller = self._parts(settings, ctx)
        names = names_for(image, settings)
        plan = Plan(ctx.target, self.name)
        uploads = VhdUploads(clients, caller, ctx.progress, ctx.journal)
        conflicts: list[str] = []
        need_image = need_version = False
        if settings.managed_image:
            found = ManagedImages(clients, caller).find(names.image)
            need_image = self._classify(found, "image", names.image, settings.location, ctx, plan, conflicts)
        gal = settings.gallery
        if gal is not None and names.definition and names.version:
            gallery = GalleryImages(clients, caller, gal)
            if gallery.find_gallery() is None:
                self._missing_allowed(gal.create_if_missing, f"gallery {gal.name}", ctx)
                plan.actions.append(
                    Action("create", f"gallery {gal.name}", "Compute Gallery", settings.location)
                )
                version = None
            else:
                definition = gallery.find_definition(names.definition)
                if definition is None:
                    self._missing_allowed(gal.create_if_missing, f"image definition {names.definition}", ctx)
                    plan.actions.append(
                        Action(
                            "create",
                            f"image definition {gal.name}/{names.definition}",
                            f"{generation_for(image, settings)} {architecture(image)}",
                        )
                    )
                    version = None
                else:
                    gallery.check_definition(definition, self._spec(image, settings, names))
                    version = gallery.find_version(names.definition, names.version)
            ref = f"{gal.name}/{names.definition}/{names.version}"
            need_version = self._classify(
                version, "gallery image version", ref, settings.location, ctx, plan, conflicts
            )
            if not need_version and version is not None:
                missing = self._missing_regions(settings, version)
                for region in missing:
                    plan.actions.append(Action("copy", f"gallery image version {ref}", "replicate", region))
        if conflicts:
            plan.conflict = "; ".join(conflicts)
        upload_needed = need_image or (need_version and not settings.managed_image)
        target = uploads.planned(names.image)
        if upload_needed:
            plan.actions.insert(
                0, Action("upload", f"{target.kind} {target.name}", "sparse fixed VHD", settings.location)
            )
        if need_image:
            plan.actions.append(
                Action(
                    "create",
                    f"image {names.image}",
                    f"managed image {generation_for(image, settings)}",
                    settings.location,
                )
            )
        if need_version:
            regions = (
                [r.name for r in gal.target_regions] if gal and gal.target_regions else [settings.location]
            )
            plan.actions.append(
                Action(
                    "create",
                    f"gallery image version {gal.name if gal else ''}/{names.definition}/{names.version}",
                    f"regions {', '.join(regions)}",
                )
            )
        pending = uploads.pending()
        if (upload_needed or pending) and not settings.keep_upload:
            plan.actions.append(Action("delete", f"{target.kind} {target.name}", "temporary upload"))
        return plan

    def _classify(
        self, found: Any, kind: str, ref: str, region: str, ctx: Context, plan: Plan, conflicts: list[str]
    ) -> bool:
        """Record what exists; True when it must be (re)created."""
        if found is None:
            return True
        digest = digest_of(found)
        artifact = Artifact(kind, str(found.id or ref), region, extra={"digest": digest})
        if digest == ctx.digest:
            plan.existing.append(artifact)
            return False
        conflicts.append(
            f"{kind} {ref} exists with digest {digest or '(none: not made by imgpub)'}, "
            f"this image is {ctx.digest}"
        )
        plan.actions.append(
            Action("replace", f"{kind} {ref}", "delete and recreate (needs --replace)", region)
        )
        return True

    def _missing_allowed(self, allowed: bool, what: str, ctx: Context) -> None:
        if not allowed:
            raise ConfigurationError(
                f"target {ctx.target}: {what} does not exist and gallery.create_if_missing is false"
            )

    @staticmethod
    def _missing_regions(settings: AzureSettings, version: Any) -> list[str]:
        gal = settings.gallery
        wanted = [r.name for r in gal.target_regions] if gal and gal.target_regions else [settings.location]
        profile = version.properties.publishing_profile if version.properties else None
        have = {region_key(r.name) for r in (profile.target_regions or [] if profile else [])}
        return [r for r in wanted if region_key(r) not in have]

    def _require_valid(self, image: ImageInfo, settings: AzureSettings) -> None:
        problems = self.check(image, settings)
        if problems:
            raise ConfigurationError("; ".join(f"{p.field}: {p.message}" for p in problems))

    def _spec(self, image: ImageInfo, settings: AzureSettings, names: Names) -> DefinitionSpec:
        gal = settings.gallery
        assert gal is not None and names.definition is not None
        generation = generation_for(image, settings)
        arch = architecture(image)
        return DefinitionSpec(
            name=names.definition,
            os_type=settings.os_type,
            os_state=settings.os_state,
            generation=generation,
            architecture=arch,
            publisher=gal.publisher,
            offer=gal.offer or names.definition,
            sku=gal.sku or f"{arch.lower()}-gen{generation[1:]}",
            features=dict(gal.features),
        )

    # ---- publish --------------------------------------------------------------------------------

    def publish(self, image: ImageInfo, settings: AzureSettings, disk: DiskImage, ctx: Context) -> Published:
        plan = self.plan(image, settings, ctx)
        if plan.conflict and not ctx.replace:
            raise ImageConflictError(ctx.target, plan.conflict)
        published = Published(ctx.target, self.name, changed=not plan.up_to_date)
        if not plan.up_to_date:
            job = _Job.start(self, image, settings, ctx, plan)
            job.replace_conflicts()
            source = job.upload(disk) if plan_has(plan, "upload") else None
            image_id = job.managed_image(source) if settings.managed_image else None
            if settings.gallery is not None:
                published.warnings += job.gallery_version(source, image_id)
            job.remove_upload(source)
        published.artifacts = self.status(image, settings, ctx).artifacts
        return published

    # ---- status ---------------------------------------------------------------------------------

    def status(self, image: ImageInfo, settings: AzureSettings, ctx: Context) -> Status:
        clients, caller = self._parts(settings, ctx)
        names = names_for(image, settings)
        status = Status(ctx.target, self.name)
        if settings.managed_image:
            found = ManagedImages(clients, caller).find(names.image)
            if found is None:
                status.drift.append(f"image {names.image} is missing")
            else:
                digest = digest_of(found)
                status.artifacts.append(
                    Artifact(
                        "image",
                        str(found.id),
                        settings.location,
                        extra={"digest": digest, "name": names.image},
                    )
                )
                if digest != ctx.digest:
                    status.drift.append(f"image {names.image} has digest {digest}, expected {ctx.digest}")
        gal = settings.gallery
        if gal and names.definition and names.version:
            ref = f"{gal.name}/{names.definition}/{names.version}"
            gallery = GalleryImages(clients, caller, gal)
            version = gallery.find_definition(names.definition) and gallery.find_version(
                names.definition, names.version
            )
            if not version:
                status.drift.append(f"gallery image version {ref} is missing")
            else:
                digest = digest_of(version)
                states = replication_states(version)
                status.artifacts.append(
                    Artifact(
                        "gallery-image-version",
                        str(version.id),
                        settings.location,
                        extra={"digest": digest, "regions": {s.region: s.state for s in states}},
                    )
                )
                if digest != ctx.digest:
                    status.drift.append(
                        f"gallery image version {ref} has digest {digest}, expected {ctx.digest}"
                    )
                for region in self._missing_regions(settings, version):
                    status.drift.append(f"gallery image version {ref} is not replicated to {region}")
                status.drift.extend(_replication_warnings(ref, states))
        return status


def _replication_warnings(ref: str, states: list[RegionState]) -> list[str]:
    return [
        f"gallery image version {ref}: replication to {s.region} failed: {s.details or 'no details'}"
        for s in states
        if s.state.lower() == "failed"
    ]


def plan_has(plan: Plan, kind: str, resource: str | None = None) -> bool:
    return any(a.kind == kind and (resource is None or a.resource == resource) for a in plan.actions)


@dataclass
class _Job:
    """One publish run: the plan's actions carried out in order."""

    provider: AzureProvider
    image: ImageInfo
    settings: AzureSettings
    ctx: Context
    plan: Plan
    clients: AzureClients
    caller: Caller
    names: Names
    tags: dict[str, str]

    @classmethod
    def start(
        cls, provider: AzureProvider, image: ImageInfo, settings: AzureSettings, ctx: Context, plan: Plan
    ) -> _Job:
        clients, caller = provider._parts(settings, ctx)
        tags = identity_tags(image, ctx.digest, settings.tags)
        return cls(provider, image, settings, ctx, plan, clients, caller, names_for(image, settings), tags)

    @property
    def generation(self) -> str:
        return generation_for(self.image, self.settings)

    @property
    def uploads(self) -> VhdUploads:
        return VhdUploads(self.clients, self.caller, self.ctx.progress, self.ctx.journal)

    @property
    def version_ref(self) -> str:
        gal = self.settings.gallery
        return f"{gal.name if gal else ''}/{self.names.definition}/{self.names.version}"

    def gallery(self) -> GalleryImages:
        assert self.settings.gallery is not None
        return GalleryImages(self.clients, self.caller, self.settings.gallery)

    def replace_conflicts(self) -> None:
        """Delete what exists with another digest (publish got here only with --replace)."""
        if plan_has(self.plan, "replace", f"image {self.names.image}"):
            self.ctx.progress.note(f"replacing image {self.names.image}")
            ManagedImages(self.clients, self.caller).delete(self.names.image)
        if plan_has(self.plan, "replace", f"gallery image version {self.version_ref}"):
            assert self.names.definition and self.names.version
            self.ctx.progress.note(f"replacing gallery image version {self.version_ref}")
            self.gallery().delete_version(self.names.definition, self.names.version)

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
        gallery, names = self.gallery(), self.names
        assert names.definition and names.version
        self._ensure_definition(gallery)
        resource = f"gallery image version {self.version_ref}"
        kinds = {a.kind for a in self.plan.actions if a.resource == resource}
        if kinds & {"create", "replace"}:
            body = gallery.version_body(image_id or source or self.uploads.planned(names.image), self.tags)
            self.ctx.progress.stage(f"create {resource}")
        elif "copy" in kinds and (existing := gallery.find_version(names.definition, names.version)):
            body = gallery.region_update_body(existing, self.tags)
            self.ctx.progress.stage(f"replicate {resource} to more regions")
        else:
            return []
        _, states = gallery.put_version(names.definition, names.version, body, self.ctx.progress)
        return _replication_warnings(self.version_ref, states)

    def _ensure_definition(self, gallery: GalleryImages) -> None:
        spec = self.provider._spec(self.image, self.settings, self.names)
        if gallery.find_gallery() is None:
            self.ctx.progress.stage(f"create gallery {gallery.gallery.name}")
            gallery.create_gallery()
        existing = gallery.find_definition(spec.name)
        if existing is None:
            self.ctx.progress.stage(f"create image definition {spec.name}")
            gallery.create_definition(spec)
        else:
            gallery.check_definition(existing, spec)

    def remove_upload(self, source: UploadedVhd | None) -> None:
        """The temporary blob or disk goes once the images exist (unless keep_upload)."""
        leftover = source or self.uploads.pending()
        if leftover is not None and not self.settings.keep_upload:
            self.ctx.progress.stage(f"remove temporary {leftover.kind} {leftover.name}")
            self.uploads.remove(leftover)
