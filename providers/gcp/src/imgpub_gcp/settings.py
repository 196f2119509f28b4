"""The `gcp` target's settings: where the tarball goes and what the GCE image carries."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from imgpub.provider import ManifestPath, TargetSettings
from imgpub_gcp.identifiers import (
    bucket_problem,
    kms_key_location,
    kms_key_problem,
    license_problem,
    member_problem,
    project_problem,
)
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

BUCKET_DEFAULT = "bucket-default"
"""upload_kms_key: no key in the upload request; the bucket's default encryption applies."""

_NOT_IN_IDENTITY = {
    "name",
    "project",
    "bucket",
    "object_prefix",
    "upload_kms_key",
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


def _checked(check: Any) -> Any:
    """A pydantic AfterValidator raising the check's problem, so an item's error names its index."""

    def validate(value: str) -> str:
        if problem := check(value):
            raise ValueError(problem)
        return value

    return AfterValidator(validate)


License = Annotated[str, _checked(license_problem)]
Member = Annotated[str, _checked(member_problem)]


class GcpSettings(TargetSettings):
    """Publish a GCE image: stream a sparse tar.gz to GCS, then images.insert from it."""

    provider: Literal["gcp"] = "gcp"
    project: str = Field(
        description="Project that owns the image: its project ID (6-30 lowercase letters, digits, '-').",
    )
    bucket: str = Field(description="GCS bucket for the upload tarball (an existing bucket's name).")
    object_prefix: str = Field(default="imgpub/", description="Prefix of the tarball object name.")
    family: str | None = Field(default=None, description="Image family.")
    description: str | None = Field(default=None, description="Image description (default: the image's).")
    storage_locations: list[str] = Field(
        default_factory=list,
        description="Where GCE keeps the image: a Cloud Storage multi-region, dual-region or region, "
        "e.g. ['us'] or ['europe-west1'].",
    )
    guest_os_features: list[str] = Field(
        default_factory=list,
        description="Extra guestOsFeatures; UEFI_COMPATIBLE is added for UEFI boot, "
        "GVNIC unless gvnic: false.",
    )
    gvnic: bool = Field(
        default=True,
        description="Mark the image as gVNIC-capable (GVNIC guest OS feature); false for images without "
        "the gVNIC driver.",
    )
    licenses: list[License] = Field(
        default_factory=list,
        description="Licenses: projects/<project>/global/licenses/<name> or its compute v1 URL.",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra GCE labels.")
    shielded_instance_initial_state: ShieldedState | None = None
    kms_key: str | None = Field(
        default=None,
        description="Cloud KMS key that encrypts the image "
        "(projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>); also the upload's, unless upload_kms_key "
        "says otherwise or the key is in 'global'.",
    )
    upload_kms_key: str | None = Field(
        default=None,
        description="Cloud KMS key for the uploaded tarball (kmsKeyName), in the bucket's location; "
        f"default: kms_key. '{BUCKET_DEFAULT}': none, the bucket's default encryption.",
    )
    share_members: list[Member] = Field(
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

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        if problem := project_problem(value):
            raise ValueError(f"a project ID {problem}")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if problem := bucket_problem(value):
            raise ValueError(f"a bucket name {problem}")
        return value

    @field_validator("kms_key", "upload_kms_key")
    @classmethod
    def _kms_key(cls, value: str | None) -> str | None:
        if value is not None and value != BUCKET_DEFAULT and (problem := kms_key_problem(value)):
            raise ValueError(problem)
        return value

    def upload_key(self) -> str | None:
        """The kmsKeyName of the upload: upload_kms_key, else kms_key unless Cloud Storage cannot use it."""
        if self.upload_kms_key == BUCKET_DEFAULT:
            return None
        if self.upload_kms_key:
            return self.upload_kms_key
        if self.kms_key and kms_key_location(self.kms_key) != "global":
            return self.kms_key
        return None

    @field_validator("object_prefix")
    @classmethod
    def _object_prefix(cls, value: str) -> str:
        if value.startswith("/") or "\n" in value:
            raise ValueError("object_prefix must not start with '/' or contain newlines")
        return value

    def identity(self) -> dict[str, Any]:
        """Registration only: where the tarball goes, labels, sharing and deprecation change no bytes."""
        out = self.model_dump(mode="json", exclude=_NOT_IN_IDENTITY)
        if self.gvnic:  # the default, as before the setting existed: digests of earlier publishes hold
            del out["gvnic"]
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


__all__ = ["BUCKET_DEFAULT", "GUEST_OS_FEATURES", "GcpSettings", "ShieldedState"]
