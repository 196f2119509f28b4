"""What the manifest means on Azure: names, Hyper-V generation, architecture, and the checks."""

from __future__ import annotations

from dataclasses import dataclass

from imgpub.provider import ImageInfo, Problem
from imgpub_azure.names import (
    DEFINITION_NAME,
    GALLERY_NAME,
    IMAGE_NAME,
    default_definition,
    default_image_name,
    gallery_version_problem,
)
from imgpub_azure.settings import AzureSettings

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
    """Semantic checks: Azure name rules, gallery version, Hyper-V generation vs boot mode, arm64."""
    problems: list[Problem] = []
    names = names_for(image, settings)
    if not IMAGE_NAME.match(names.image):
        problems.append(
            Problem(
                "image_name",
                f"{names.image!r} is not a valid managed image name "
                "(1-80 of A-Z a-z 0-9 _ . -, starting alphanumeric, ending alphanumeric or _)",
            )
        )
    gal = settings.gallery
    if gal is not None:
        if not GALLERY_NAME.match(gal.name):
            problems.append(
                Problem(
                    "gallery.name",
                    f"{gal.name!r} is not a valid gallery name "
                    "(1-80 of A-Z a-z 0-9 _ ., alphanumeric at both ends)",
                )
            )
        if names.definition and not DEFINITION_NAME.match(names.definition):
            problems.append(
                Problem(
                    "gallery.image_definition",
                    f"{names.definition!r} is not a valid "
                    "image definition name (1-80 of A-Z a-z 0-9 - ., alphanumeric at both ends)",
                )
            )
        why = gallery_version_problem(names.version or "")
        if why:
            problems.append(Problem("gallery.version", f"{why}; set gallery.version"))
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
        if gal is None:
            problems.append(Problem("gallery", "arm64 images need a gallery (managed images are x64 only)"))
        if generation_for(image, settings) != "V2":
            problems.append(Problem("hyper_v_generation", "arm64 images need V2"))
        if image.boot == "bios":
            problems.append(Problem("hyper_v_generation", "arm64 images boot with UEFI, not bios"))
        if settings.managed_image:
            problems.append(
                Problem("managed_image", "managed images cannot be arm64; set managed_image: false")
            )
    if (image.secure_boot or image.tpm) and generation_for(image, settings) != "V2":
        problems.append(Problem("hyper_v_generation", "secure boot and vTPM need V2"))
    problems.extend(_size_problems(image, settings))
    return problems


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
