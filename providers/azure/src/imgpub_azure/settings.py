"""AzureSettings: where and how one manifest target publishes to Azure (a pydantic model, frozen)."""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from imgpub.provider import TargetSettings

__all__ = ["AzureSettings", "GallerySettings", "RegionSettings"]

StorageAccountType = Literal["Standard_LRS", "Standard_ZRS", "Premium_LRS"]
HyperVGeneration = Literal["V1", "V2"]

_GALLERY_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


class RegionSettings(BaseModel):
    """One replication region of a gallery image version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Azure region, e.g. westeurope.")
    replica_count: int | None = Field(default=None, ge=1, le=100)
    storage_account_type: StorageAccountType | None = None


class GallerySettings(BaseModel):
    """An Azure Compute Gallery image version to publish (besides or instead of a managed image)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Gallery name (alphanumerics, '_' and '.').")
    image_definition: str | None = Field(
        default=None, description="Image definition name; defaults to the image name made Azure-safe."
    )
    publisher: str = "imgpub"
    offer: str | None = Field(default=None, description="Defaults to the image definition name.")
    sku: str | None = Field(default=None, description="Defaults to '<arch>-<generation>', e.g. x64-gen2.")
    create_if_missing: bool = True
    description: str | None = None
    features: dict[str, str] = Field(
        default_factory=dict,
        description="Image definition features, e.g. {SecurityType: TrustedLaunchSupported, "
        "DiskControllerTypes: 'SCSI,NVMe'}.",
    )
    version: str | None = Field(
        default=None, description="MAJOR.MINOR.PATCH (each a 32-bit integer); defaults to image.version."
    )
    target_regions: list[RegionSettings] = Field(
        default_factory=list, description="Replication regions; defaults to the target's location."
    )
    replica_count: int = Field(default=1, ge=1, le=100)
    storage_account_type: StorageAccountType = "Standard_LRS"
    exclude_from_latest: bool = False
    end_of_life: date | None = None


class AzureSettings(TargetSettings):
    """A managed image and/or a Compute Gallery version in one subscription and resource group."""

    provider: Literal["azure"] = "azure"
    subscription_id: str = Field(min_length=1)
    resource_group: str = Field(min_length=1, max_length=90)
    location: str = Field(min_length=1, description="Region of the upload and of the managed image.")
    storage_account: str | None = Field(
        default=None, description="Storage account of the temporary page blob (upload: page-blob)."
    )
    storage_resource_group: str | None = Field(
        default=None, description="Resource group of storage_account, when not resource_group."
    )
    container: str = Field(default="vhds", pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
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
    tags: dict[str, str] = Field(default_factory=dict)
    keep_upload: bool = Field(default=False, description="Keep the page blob or upload disk afterwards.")
    concurrency: int = Field(default=8, ge=1, le=64, description="Parallel Put Page requests.")
    storage_api_version: str | None = Field(
        default=None, description="x-ms-version for blob requests (Azurite 3.35 needs 2025-11-05)."
    )

    @model_validator(mode="after")
    def _something_to_publish(self) -> AzureSettings:
        if not self.managed_image and self.gallery is None:
            raise ValueError("managed_image is false and no gallery is set: nothing to publish")
        if self.upload == "page-blob" and not self.storage_account:
            raise ValueError("storage_account is required with upload: page-blob")
        if self.gallery and self.gallery.version and not _GALLERY_VERSION.match(self.gallery.version):
            raise ValueError(f"gallery.version {self.gallery.version!r} is not MAJOR.MINOR.PATCH")
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
        if data.get("gallery"):
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
