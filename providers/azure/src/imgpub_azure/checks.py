"""What the manifest means on Azure: names, Hyper-V generation, architecture, and the checks."""

from __future__ import annotations

from dataclasses import dataclass

from imgpub.provider import ImageInfo, Problem
from imgpub_azure.locations import location_problem
from imgpub_azure.names import (
    default_definition,
    default_image_name,
    definition_problem,
    gallery_version_problem,
    image_name_problem,
    region_key,
)
from imgpub_azure.security import security_problems
from imgpub_azure.settings import AzureSettings
from imgpub_azure.tags import tag_problems

MiB = 1 << 20
MAX_PAGE_BLOB = 8 << 40
"""Put Blob: a page blob is at most 8 TiB."""
MIN_UPLOAD_DISK, MAX_UPLOAD_DISK = 20 * MiB + 512, (32 << 40) + 512
"""uploadSizeBytes bounds of a managed disk created for upload."""

__all__ = ["Names", "architecture", "generation_for", "names_for", "problems_for"]


def generation_for(image: ImageInfo, settings: AzureSettings) -> str:
    """Hyper-V generation: the setting, else V1 for bios and V2 for uefi / uefi-preferred."""
    return settings.hyper_v_generation or ("V1" if image.boot == "bios" else "V2")


@dataclass(frozen=True)
class Names:
    image: str
    definition: str | None
    version: str | None


def names_for(image: ImageInfo, settings: AzureSettings) -> Names:
    gal = settings.gallery
    return Names(
        image=settings.image_name or default_image_name(image.name, image.version),
        definition=(gal.image_definition or default_definition(image.name)) if gal else None,
        version=(gal.version or image.version) if gal else None,
    )


def architecture(image: ImageInfo) -> str:
    return "Arm64" if image.arch == "arm64" else "x64"


def problems_for(image: ImageInfo, settings: AzureSettings) -> list[Problem]:
    """Semantic checks: names derived from the image, locations, Hyper-V generation vs boot mode,
    arm64, Trusted Launch, tags, encryption sets, sizes. (Names given in the manifest are checked by
    the settings model.)"""
    problems = [*_name_problems(image, settings), *_location_problems(settings)]
    generation = generation_for(image, settings)
    if settings.hyper_v_generation:
        needed = {"bios": "V1", "uefi": "V2"}.get(image.boot)
        if needed and settings.hyper_v_generation != needed:
            problems.append(
                Problem(
                    "hyper_v_generation",
                    f"{settings.hyper_v_generation} does not boot a {image.boot} image (use {needed})",
                )
            )
    if image.arch == "arm64":
        if settings.gallery is None:
            problems.append(Problem("gallery", "arm64 images need a gallery (managed images are x64 only)"))
        if generation != "V2":
            problems.append(Problem("hyper_v_generation", "arm64 images need V2"))
        if image.boot == "bios":
            problems.append(Problem("hyper_v_generation", "arm64 images boot with UEFI, not bios"))
        if settings.managed_image:
            problems.append(
                Problem("managed_image", "managed images cannot be arm64; set managed_image: false")
            )
    if (image.secure_boot or image.tpm) and generation != "V2":
        problems.append(Problem("hyper_v_generation", "secure boot and vTPM need V2"))
    problems += security_problems(image, settings, generation)
    problems += tag_problems(image, settings.tags)
    problems += _encryption_problems(settings)
    problems += _size_problems(image, settings)
    return problems


def _name_problems(image: ImageInfo, settings: AzureSettings) -> list[Problem]:
    """The names imgpub derives from the image (those set in the manifest are checked on load)."""
    problems: list[Problem] = []
    names = names_for(image, settings)
    if settings.image_name is None and (why := image_name_problem(names.image)):
        problems.append(Problem("image_name", f"{why}; set image_name"))
    gal = settings.gallery
    if gal is not None:
        if (
            gal.image_definition is None
            and names.definition
            and (why := definition_problem(names.definition))
        ):
            problems.append(Problem("gallery.image_definition", f"{names.definition!r}: {why}; set it"))
        if gal.version is None and (why := gallery_version_problem(names.version or "")):
            problems.append(Problem("gallery.version", f"{why}; set gallery.version"))
    return problems


def _location_problems(settings: AzureSettings) -> list[Problem]:
    found = [location_problem("location", settings.location)]
    if settings.gallery is not None:
        for i, region in enumerate(settings.gallery.target_regions):
            found.append(location_problem(f"gallery.target_regions[{i}].name", region.name))
    return [p for p in found if p is not None]


def _encryption_problems(settings: AzureSettings) -> list[Problem]:
    """A disk encryption set serves its own region: other replication regions need their own."""
    gal = settings.gallery
    if settings.disk_encryption_set is None or gal is None:
        return []
    return [
        Problem(
            f"gallery.target_regions[{i}].disk_encryption_set",
            f"replicas in {region.name} are encrypted with platform-managed keys: disk_encryption_set "
            f"serves {settings.location} only; give this region its own",
            warning=True,
        )
        for i, region in enumerate(gal.target_regions)
        if region.disk_encryption_set is None and region_key(region.name) != region_key(settings.location)
    ]


def _size_problems(image: ImageInfo, settings: AzureSettings) -> list[Problem]:
    upload_size = -(-image.virtual_size // MiB) * MiB + 512
    if settings.upload == "page-blob" and upload_size > MAX_PAGE_BLOB:
        return [
            Problem("upload", f"a {image.virtual_size} byte disk does not fit a page blob (8 TiB at most)")
        ]
    if settings.upload == "managed-disk" and not MIN_UPLOAD_DISK <= upload_size <= MAX_UPLOAD_DISK:
        return [
            Problem(
                "upload",
                f"a managed disk for upload takes 20 MiB to 32 TiB; this disk is "
                f"{image.virtual_size} bytes (use upload: page-blob)",
            )
        ]
    return []
