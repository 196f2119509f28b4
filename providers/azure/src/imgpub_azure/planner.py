"""The plan of one Azure target: what exists, what publish would upload, create, replace, replicate.

Each resource is found by name and judged by imgpub's digest tag and its provisioningState:

* missing -> create;
* Failed / Canceled with this image's digest -> replace (delete and recreate; it was never
  published, so no --replace is needed);
* another digest (failed or not), or a gallery definition that differs from the manifest -> a
  conflict: `replace` actions that only `--replace` carries out;
* this digest and usable -> existing (nothing to do but replicate to new regions);
* this digest, with an operation still running on it (a run stopped after its PUT, or another run
  publishing at the same time) -> create: publish waits for that operation and adopts the result.
"""

from __future__ import annotations

from typing import Any

from imgpub.errors import ConfigurationError
from imgpub.provider import Action, Artifact, Context, ImageInfo, Plan
from imgpub_azure.checks import Names, architecture, generation_for, names_for
from imgpub_azure.clients import AzureClients
from imgpub_azure.containers import UploadContainer
from imgpub_azure.definition import definition_differences
from imgpub_azure.errors import Caller
from imgpub_azure.gallery import GalleryImages
from imgpub_azure.inventory import Found, look, spec_for
from imgpub_azure.names import region_key
from imgpub_azure.security import security_type_for
from imgpub_azure.settings import AzureSettings
from imgpub_azure.states import failed_state, state_of
from imgpub_azure.tags import DELETING_TAG, digest_of, identity_tags, missing_tags, tag_of
from imgpub_azure.upload import VhdUploads
from imgpub_azure.writes import IN_PROGRESS

__all__ = ["Planner", "missing_regions", "plan_has", "version_from_image"]


def plan_has(plan: Plan, kind: str, resource: str | None = None) -> bool:
    return any(a.kind == kind and (resource is None or a.resource == resource) for a in plan.actions)


def version_from_image(image: ImageInfo, settings: AzureSettings) -> bool:
    """A gallery version is made from the managed image, unless there is none or the definition has
    a security type (a managed image carries none: the version is made from the VHD then)."""
    return settings.managed_image and security_type_for(image, settings) is None


def running(resource: Any) -> str | None:
    """The provisioningState of a resource whose operation has not finished, else None."""
    state = state_of(resource)
    return state if state.lower() in IN_PROGRESS else None


def missing_regions(settings: AzureSettings, version: Any) -> list[str]:
    gal = settings.gallery
    wanted = [r.name for r in gal.target_regions] if gal and gal.target_regions else [settings.location]
    profile = version.properties.publishing_profile if version.properties else None
    have = {region_key(r.name) for r in (profile.target_regions or [] if profile else [])}
    return [r for r in wanted if region_key(r) not in have]


class Planner:
    def __init__(
        self, image: ImageInfo, settings: AzureSettings, ctx: Context, clients: AzureClients, caller: Caller
    ) -> None:
        self.image, self.settings, self.ctx = image, settings, ctx
        self.clients, self.caller = clients, caller
        self.names: Names = names_for(image, settings)
        self.plan = Plan(ctx.target, "azure")
        self.conflicts: list[str] = []
        self.tags = identity_tags(image, ctx.digest, settings.tags)

    def build(self) -> Plan:
        s, names, plan = self.settings, self.names, self.plan
        found = look(self.clients, self.caller, s, names)
        need_image = s.managed_image and self._classify(found.image, "image", names.image, s.location)
        need_version = s.gallery is not None and self._gallery(found)
        if self.conflicts:
            plan.conflict = "; ".join(self.conflicts)
        uploads = VhdUploads(self.clients, self.caller, self.ctx.progress, self.ctx.journal)
        upload_needed = need_image or (need_version and not version_from_image(self.image, s))
        target = uploads.planned(names.image)
        if upload_needed:
            plan.actions.insert(
                0, Action("upload", f"{target.kind} {target.name}", "sparse fixed VHD", s.location)
            )
            if s.upload == "page-blob" and UploadContainer(self.clients, self.caller).exists() is False:
                container = Action("create", f"container {s.container}", "private blob container", s.location)
                plan.actions.insert(0, container)
        generation = generation_for(self.image, s)
        if need_image:
            plan.actions.append(
                Action("create", f"image {names.image}", f"managed image {generation}", s.location)
            )
        if need_version and s.gallery is not None:
            regions = GalleryImages(self.clients, self.caller, s.gallery).wanted_regions()
            plan.actions.append(
                Action("create", f"gallery image version {self.version_ref}", f"regions {', '.join(regions)}")
            )
        if (upload_needed or uploads.pending()) and not s.keep_upload:
            plan.actions.append(Action("delete", f"{target.kind} {target.name}", "temporary upload"))
        return plan

    @property
    def definition_ref(self) -> str:
        return f"{self.settings.gallery.name if self.settings.gallery else ''}/{self.names.definition}"

    @property
    def version_ref(self) -> str:
        return f"{self.definition_ref}/{self.names.version}"

    def _classify(self, found: Any, kind: str, ref: str, region: str | None) -> bool:
        """Record what exists; True when it must be (re)created."""
        if found is None:
            return True
        digest, failed = digest_of(found), failed_state(found)
        if digest == self.ctx.digest and failed:
            detail = f"provisioningState {failed}: delete and recreate"
            self.plan.actions.append(Action("replace", f"{kind} {ref}", detail, region))
            return True
        if digest == self.ctx.digest and (state := running(found)):
            detail = f"provisioningState {state}: wait for that operation, then adopt it"
            self.plan.actions.append(Action("create", f"{kind} {ref}", detail, region))
            return True
        if digest == self.ctx.digest:
            artifact = Artifact(kind, str(found.id or ref), region, extra={"digest": digest})
            self.plan.existing.append(artifact)
            if missing := missing_tags(found, self.tags):
                tags = ", ".join(f"{k}={v}" for k, v in missing.items())
                self.plan.actions.append(Action("tag", f"{kind} {ref}", tags, region))
            elif tag_of(found, DELETING_TAG) is not None:  # a prune stopped deleting it: wanted again
                self.plan.actions.append(Action("tag", f"{kind} {ref}", f"remove {DELETING_TAG}", region))
            return False
        state = f" in provisioningState {failed}" if failed else ""
        self.conflicts.append(
            f"{kind} {ref} exists with digest {digest or '(none: not made by imgpub)'}{state}, "
            f"this image is {self.ctx.digest}"
        )
        self.plan.actions.append(
            Action("replace", f"{kind} {ref}", "delete and recreate (needs --replace)", region)
        )
        return True

    def _missing_allowed(self, what: str) -> None:
        gal = self.settings.gallery
        if gal is not None and not gal.create_if_missing:
            raise ConfigurationError(
                f"target {self.ctx.target}: {what} does not exist and gallery.create_if_missing is false"
            )

    def _gallery(self, found: Found) -> bool:
        """Plan the gallery, the definition and the version; True when the version must be made."""
        s, plan = self.settings, self.plan
        assert s.gallery is not None
        g = s.gallery.name
        if found.gallery is None:
            self._missing_allowed(f"gallery {g}")
            plan.actions.append(Action("create", f"gallery {g}", "Compute Gallery", s.location))
        elif failed := failed_state(found.gallery):
            plan.actions.append(
                Action("create", f"gallery {g}", f"provisioningState {failed}: put it again", s.location)
            )
        elif state := running(found.gallery):
            detail = f"provisioningState {state}: wait for that operation"
            plan.actions.append(Action("create", f"gallery {g}", detail, s.location))
        spec = spec_for(self.image, s, self.names)
        dref, replace_definition = self.definition_ref, False
        if found.definition is None:
            if found.gallery is not None:
                self._missing_allowed(f"image definition {self.names.definition}")
            security = spec.features.get("SecurityType")
            detail = f"{spec.generation} {architecture(self.image)}" + (
                f", SecurityType {security}" if security else ""
            )
            plan.actions.append(Action("create", f"image definition {dref}", detail))
        elif failed := failed_state(found.definition):
            detail = f"provisioningState {failed}: delete and recreate"
            plan.actions.append(Action("replace", f"image definition {dref}", detail))
            replace_definition = True
        elif state := running(found.definition):
            detail = f"provisioningState {state}: wait for that operation"
            plan.actions.append(Action("create", f"image definition {dref}", detail))
        elif diffs := definition_differences(found.definition, spec):
            self.conflicts.append(f"image definition {dref} differs from the manifest ({'; '.join(diffs)})")
            self.plan.conflict_hint = (
                "a definition cannot change: use a new gallery.image_definition name, or re-run with "
                "--replace to delete and recreate it (only while it holds no other version)"
            )
            detail = "delete and recreate (needs --replace and no other version in it)"
            plan.actions.append(Action("replace", f"image definition {dref}", detail))
            replace_definition = True
        version = found.version
        if replace_definition and version is not None:
            plan.actions.append(
                Action("replace", f"gallery image version {self.version_ref}", "goes with its definition")
            )
            return True
        need = self._classify(version, "gallery image version", self.version_ref, s.location)
        if not need and version is not None:
            for region in missing_regions(s, version):
                plan.actions.append(
                    Action("copy", f"gallery image version {self.version_ref}", "replicate", region)
                )
        return need
