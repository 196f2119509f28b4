"""AzureSettings: where and how one manifest target publishes to Azure (a pydantic model, frozen).

Names are checked here by Azure's rules (imgpub_azure.names), so a name the cloud refuses is a
manifest error at its line. Enumerations are the SDK's own (azure-mgmt-compute models), written out
as Literals so that `imgpub --help` imports no SDK; tests/azure/test_settings.py keeps them equal.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from imgpub.provider import TargetSettings
from imgpub_azure.names import (
    container_problem,
    definition_problem,
    encryption_set_problem,
    gallery_problem,
    gallery_version_problem,
    image_name_problem,
    resource_group_problem,
    storage_account_problem,
    subscription_problem,
)

__all__ = [
    "AzureSettings",
    "GallerySettings",
    "GalleryStorageAccountType",
    "OsDiskStorageAccountType",
    "RegionSettings",
    "SecurityType",
]

GalleryStorageAccountType = Literal["Standard_LRS", "Standard_ZRS", "Premium_LRS", "PremiumV2_LRS"]
"""Where a gallery image version's replicas are stored: azure.mgmt.compute.models.StorageAccountType
(TargetRegion.storageAccountType, GalleryImageVersionPublishingProfile.storageAccountType)."""
OsDiskStorageAccountType = Literal[
    "Standard_LRS", "Premium_LRS", "StandardSSD_LRS", "Premium_ZRS", "StandardSSD_ZRS"
]
"""The OS disk of VMs made from a managed image: azure.mgmt.compute.models.StorageAccountTypes
(ImageOSDisk.storageAccountType), without UltraSSD_LRS and PremiumV2_LRS, which only data disks
can use (the model's own docstring; learn.microsoft.com "Premium SSD v2" limitations)."""
SecurityType = Literal[
    "TrustedLaunchSupported",
    "TrustedLaunch",
    "ConfidentialVMSupported",
    "ConfidentialVM",
    "TrustedLaunchAndConfidentialVMSupported",
]
"""A gallery image definition's SecurityType feature: SecurityTypes (TrustedLaunch, ConfidentialVM)
and SupportedSecurityOption (TrustedLaunchSupported, TrustedLaunchAndConfidentialVMSupported) from
azure-mgmt-compute, and ConfidentialVMSupported from the Compute Gallery documentation."""
HyperVGeneration = Literal["V1", "V2"]


def _rule(problem: Callable[[str], str | None]) -> AfterValidator:
    def check(value: str) -> str:
        why = problem(value)
        if why:
            raise ValueError(why)
        return value

    return AfterValidator(check)


ResourceGroup = Annotated[str, _rule(resource_group_problem)]
DiskEncryptionSetId = Annotated[
    str,
    _rule(encryption_set_problem),
    Field(description="Resource ID of a disk encryption set (customer-managed keys), in the same region."),
]


class RegionSettings(BaseModel):
    """One replication region of a gallery image version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Azure location, e.g. westeurope.")
    replica_count: int | None = Field(default=None, ge=1, le=100)
    storage_account_type: GalleryStorageAccountType | None = None
    disk_encryption_set: DiskEncryptionSetId | None = Field(
        default=None,
        description="Disk encryption set for this region's replicas; defaults to the target's "
        "disk_encryption_set in the target's location, else platform-managed keys.",
    )


class GallerySettings(BaseModel):
    """An Azure Compute Gallery image version to publish (besides or instead of a managed image)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, _rule(gallery_problem)] = Field(
        description="Gallery name (alphanumerics, '_' and '.')."
    )
    image_definition: Annotated[str, _rule(definition_problem)] | None = Field(
        default=None, description="Image definition name; defaults to the image name made Azure-safe."
    )
    publisher: str = "imgpub"
    offer: str | None = Field(default=None, description="Defaults to the image definition name.")
    sku: str | None = Field(default=None, description="Defaults to '<arch>-<generation>', e.g. x64-gen2.")
    create_if_missing: bool = True
    description: str | None = None
    security_type: SecurityType | None = Field(
        default=None,
        description="The definition's SecurityType feature. Default: TrustedLaunchSupported when the "
        "image has tpm or secure_boot, else none (Azure's default). Needs hyperVGeneration V2.",
    )
    features: dict[str, str] = Field(
        default_factory=dict,
        description="Other image definition features, e.g. {DiskControllerTypes: 'SCSI,NVMe'} "
        "(SecurityType is security_type).",
    )
    version: Annotated[str, _rule(gallery_version_problem)] | None = Field(
        default=None, description="MAJOR.MINOR.PATCH (each a 32-bit integer); defaults to image.version."
    )
    target_regions: list[RegionSettings] = Field(
        default_factory=list, description="Replication regions; defaults to the target's location."
    )
    replica_count: int = Field(default=1, ge=1, le=100)
    storage_account_type: GalleryStorageAccountType = "Standard_LRS"
    exclude_from_latest: bool = False
    end_of_life: date | None = None

    @field_validator("features")
    @classmethod
    def _no_security_type_here(cls, features: dict[str, str]) -> dict[str, str]:
        if any(name.lower() == "securitytype" for name in features):
            raise ValueError(
                "set the SecurityType feature with gallery.security_type (it defaults from image.tpm "
                "and image.secure_boot)"
            )
        return features


class AzureSettings(TargetSettings):
    """A managed image and/or a Compute Gallery version in one subscription and resource group."""

    provider: Literal["azure"] = "azure"
    subscription_id: Annotated[str, _rule(subscription_problem)] = Field(description="A GUID.")
    resource_group: ResourceGroup
    location: str = Field(min_length=1, description="Location of the upload and of the managed image.")
    storage_account: Annotated[str, _rule(storage_account_problem)] | None = Field(
        default=None, description="Storage account of the temporary page blob (upload: page-blob)."
    )
    storage_resource_group: ResourceGroup | None = Field(
        default=None, description="Resource group of storage_account, when not resource_group."
    )
    container: Annotated[str, _rule(container_problem)] = Field(
        default="vhds", description="Blob container of the upload; created (private) when missing."
    )
    blob_endpoint: str | None = Field(
        default=None,
        description="Blob service URL; defaults to https://<storage_account>.blob.core.windows.net.",
    )
    resource_manager_endpoint: str = "https://management.azure.com"
    authority_host: str | None = Field(
        default=None, description="Entra ID authority, e.g. https://login.microsoftonline.us for US Gov."
    )
    upload: Literal["page-blob", "managed-disk"] = "page-blob"
    managed_image: bool = True
    gallery: GallerySettings | None = None
    os_type: Literal["Linux", "Windows"] = "Linux"
    os_state: Literal["Generalized", "Specialized"] = "Generalized"
    hyper_v_generation: HyperVGeneration | None = Field(
        default=None, description="V2 for uefi/uefi-preferred images and V1 for bios ones, unless set."
    )
    os_disk_storage_account_type: OsDiskStorageAccountType | None = Field(
        default=None, description="Managed image: storage type of the OS disk of VMs made from it."
    )
    disk_encryption_set: DiskEncryptionSetId | None = Field(
        default=None,
        description="Encrypts the upload disk, the managed image and the gallery replicas in `location` "
        "with customer-managed keys (a disk encryption set in `location`).",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Azure tags, besides image.labels.")
    keep_upload: bool = Field(default=False, description="Keep the page blob or upload disk afterwards.")
    concurrency: int = Field(default=8, ge=1, le=64, description="Parallel Put Page requests.")
    storage_api_version: str | None = Field(
        default=None, description="x-ms-version for blob requests (Azurite 3.35 needs 2025-11-05)."
    )

    @field_validator("image_name")
    @classmethod
    def _image_name(cls, value: str | None) -> str | None:
        why = image_name_problem(value) if value is not None else None
        if why:
            raise ValueError(why)
        return value

    @model_validator(mode="after")
    def _something_to_publish(self) -> AzureSettings:
        if not self.managed_image and self.gallery is None:
            raise ValueError("managed_image is false and no gallery is set: nothing to publish")
        if self.upload == "page-blob" and not self.storage_account:
            raise ValueError("storage_account is required with upload: page-blob")
        return self

    def identity(self) -> dict[str, Any]:
        """What shapes the registered image; not where it is replicated, how it is tagged or uploaded."""
        data = self.model_dump(
            mode="json",
            exclude={
                "name",
                "tags",
                "keep_upload",
                "concurrency",
                "storage_api_version",
                "upload",
                "blob_endpoint",
                "resource_manager_endpoint",
                "authority_host",
                "container",
                "storage_resource_group",
            },
        )
        for key in ("os_disk_storage_account_type", "disk_encryption_set"):
            if data[key] is None:  # added later: unset, they leave earlier digests as they were
                del data[key]
        if data.get("gallery"):
            if data["gallery"]["security_type"] is None:
                del data["gallery"]["security_type"]
            for key in (
                "target_regions",
                "replica_count",
                "storage_account_type",
                "exclude_from_latest",
                "end_of_life",
                "create_if_missing",
                "description",
            ):
                data["gallery"].pop(key, None)
        return data
