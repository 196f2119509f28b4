"""Trusted Launch and Confidential VMs: the gallery definition's SecurityType feature.

The image's `tpm` / `secure_boot` say it can boot with a vTPM / Secure Boot; Azure says so with the
definition's SecurityType: TrustedLaunchSupported (VMs may use Trusted Launch; the default for such
an image), TrustedLaunch (VMs must), ConfidentialVM* (gallery.security_type). All need Hyper-V
generation V2. Managed images carry no security type at all, so:

* `managed_image: true` with `image.secure_boot: true`, or with a security type that VMs must use
  (TrustedLaunch, ConfidentialVM), is an error naming `managed_image`;
* `managed_image: true` with only `image.tpm: true` is a warning (VMs made from the managed image get
  no vTPM; the gallery version, made from the VHD, does).
"""

from __future__ import annotations

from imgpub.provider import ImageInfo, Problem
from imgpub_azure.settings import AzureSettings

__all__ = ["REQUIRED", "security_problems", "security_type_for"]

REQUIRED = ("TrustedLaunch", "ConfidentialVM")
"""Security types that every VM made from the image must use."""


def security_type_for(image: ImageInfo, settings: AzureSettings) -> str | None:
    """gallery.security_type, else TrustedLaunchSupported for a tpm or secure_boot image, else None."""
    gal = settings.gallery
    if gal is not None and gal.security_type:
        return gal.security_type
    return "TrustedLaunchSupported" if image.tpm or image.secure_boot else None


def security_problems(image: ImageInfo, settings: AzureSettings, generation: str) -> list[Problem]:
    problems: list[Problem] = []
    wanted = security_type_for(image, settings)
    explicit = settings.gallery is not None and settings.gallery.security_type is not None
    if explicit and generation != "V2":
        problems.append(
            Problem(
                "gallery.security_type", f"{wanted} needs hyperVGeneration V2 (boot: uefi), not {generation}"
            )
        )
    if not settings.managed_image:
        return problems
    if image.secure_boot:
        problems.append(
            Problem(
                "managed_image",
                "managed images cannot carry Trusted Launch (image.secure_boot is true); set "
                "managed_image: false and publish to a gallery",
            )
        )
    elif explicit and wanted in REQUIRED:
        problems.append(
            Problem(
                "managed_image",
                f"managed images cannot carry Trusted Launch (gallery.security_type is {wanted}); set "
                "managed_image: false",
            )
        )
    elif image.tpm:
        problems.append(
            Problem(
                "managed_image",
                "managed images cannot carry Trusted Launch: VMs made from it get no vTPM (the gallery "
                "version can: set a gallery, or managed_image: false)",
                warning=True,
            )
        )
    return problems
