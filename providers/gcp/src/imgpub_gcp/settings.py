"""The `gcp` target's settings: where the tarball goes and what the GCE image carries."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from imgpub.provider import ManifestPath, TargetSettings
from imgpub_gcp.labels import labels_problems, name_problem

GUEST_OS_FEATURES = frozenset(
    {
        "BARE_METAL_LINUX_COMPATIBLE",
        "BMSAI_CAPABLE",
        "CCA_CAPABLE",
        "GVNIC",
        "IDPF",
        "MULTI_IP_SUBNET",
        "SECURE_BOOT",
        "SEV_CAPABLE",
        "SEV_LIVE_MIGRATABLE",
        "SEV_LIVE_MIGRATABLE_V2",
        "SEV_SNP_CAPABLE",
        "SNP_SVSM_CAPABLE",
        "SUSPEND_RESUME_COMPATIBLE",
        "SUSPEND_SAFE_FPR",
        "TDX_CAPABLE",
        "UEFI_COMPATIBLE",
        "VIRTIO_SCSI_MULTIQUEUE",
        "WINDOWS",
    }
)
"""compute v1 GuestOsFeature.type values (without the *_UNSPECIFIED placeholders)."""

UEFI_ONLY_FEATURES = frozenset(
    {
        "SECURE_BOOT",
        "SEV_CAPABLE",
        "SEV_SNP_CAPABLE",
        "SEV_LIVE_MIGRATABLE",
        "SEV_LIVE_MIGRATABLE_V2",
        "TDX_CAPABLE",
    }
)

_NOT_IN_IDENTITY = {
    "name",
    "project",
    "bucket",
    "object_prefix",
    "labels",
    "share_members",
    "deprecate_previous",
    "keep_upload",
    "compression_level",
    "storage_endpoint",
    "compute_endpoint",
    "shielded_instance_initial_state",
}


class ShieldedState(BaseModel):
    """Custom UEFI Secure Boot keys: files in DER (.der/.cer/.crt: X509) or EFI signature list (BIN) form."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pk: ManifestPath | None = Field(default=None, description="Platform key (one certificate).")
    keks: list[ManifestPath] = Field(default_factory=list, description="Key exchange keys.")
    dbs: list[ManifestPath] = Field(default_factory=list, description="Allowed signature database.")
    dbxs: list[ManifestPath] = Field(default_factory=list, description="Forbidden signature database.")

    def files(self) -> list[Path]:
        return ([self.pk] if self.pk else []) + [*self.keks, *self.dbs, *self.dbxs]


class GcpSettings(TargetSettings):
    """Publish a GCE image: stream a sparse tar.gz to GCS, then images.insert from it."""

    provider: Literal["gcp"] = "gcp"
    project: str = Field(min_length=6, max_length=30, description="Project that owns the image.")
    bucket: str = Field(min_length=3, max_length=222, description="GCS bucket for the upload tarball.")
    object_prefix: str = Field(default="imgpub/", description="Prefix of the tarball object name.")
    family: str | None = Field(default=None, description="Image family.")
    description: str | None = Field(default=None, description="Image description (default: the image's).")
    storage_locations: list[str] = Field(default_factory=list, description="e.g. ['us'] or ['europe-west1'].")
    guest_os_features: list[str] = Field(
        default_factory=list,
        description="Extra guestOsFeatures; UEFI_COMPATIBLE and GVNIC are added from the image's boot mode.",
    )
    licenses: list[str] = Field(default_factory=list, description="License URLs.")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra GCE labels.")
    shielded_instance_initial_state: ShieldedState | None = None
    kms_key: str | None = Field(
        default=None,
        pattern=r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+(/cryptoKeyVersions/[^/]+)?$",
        description="Cloud KMS key that encrypts the image.",
    )
    share_members: list[str] = Field(
        default_factory=list,
        description="IAM members granted roles/compute.imageUser (user:, group:, serviceAccount:, domain:).",
    )
    deprecate_previous: bool = Field(default=False, description="Deprecate the family's previous images.")
    keep_upload: bool = Field(default=False, description="Keep the GCS tarball once the image exists.")
    compression_level: int = Field(default=1, ge=0, le=9, description="gzip level of the tarball.")
    storage_endpoint: str | None = Field(default=None, description="GCS endpoint override (emulators).")
    compute_endpoint: str | None = Field(default=None, description="Compute endpoint override (fakes).")

    @field_validator("image_name", "family")
    @classmethod
    def _gce_name(cls, value: str | None) -> str | None:
        if value is not None and (problem := name_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("labels")
    @classmethod
    def _gce_labels(cls, value: dict[str, str]) -> dict[str, str]:
        if problems := labels_problems(value):
            raise ValueError("; ".join(problems))
        return value

    @field_validator("guest_os_features")
    @classmethod
    def _known_features(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in GUEST_OS_FEATURES]
        if unknown:
            raise ValueError(
                f"unknown guest OS feature {unknown[0]!r}; known: {', '.join(sorted(GUEST_OS_FEATURES))}"
            )
        return value

    @field_validator("share_members")
    @classmethod
    def _iam_members(cls, value: list[str]) -> list[str]:
        prefixes = ("user:", "group:", "serviceAccount:", "domain:", "principal:", "principalSet:")
        for member in value:
            if member not in ("allAuthenticatedUsers", "allUsers") and not member.startswith(prefixes):
                raise ValueError(
                    f"IAM member {member!r} needs a prefix such as user:, group:, serviceAccount:"
                )
        return value

    @field_validator("object_prefix")
    @classmethod
    def _object_prefix(cls, value: str) -> str:
        if value.startswith("/") or "\n" in value:
            raise ValueError("object_prefix must not start with '/' or contain newlines")
        return value

    def identity(self) -> dict[str, Any]:
        """Registration only: where the tarball goes, labels, sharing and deprecation change no bytes."""
        out = self.model_dump(mode="json", exclude=_NOT_IN_IDENTITY)
        if self.shielded_instance_initial_state is not None:
            out["shielded_instance_initial_state"] = [
                _file_digest(p) for p in self.shielded_instance_initial_state.files()
            ]
        return out


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return str(path)


__all__ = ["GUEST_OS_FEATURES", "GcpSettings", "ShieldedState"]
