"""The manifest's models: the `image` section, and a model whose targets are the installed providers'
settings, discriminated on `provider`. The core never names a provider's own field."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from imgpub.provider import Arch, BootMode, Provider, TargetSettings
from imgpub.retention import Retention

__all__ = ["ImageFormat", "ImageSpec", "defaults_model", "is_url", "manifest_model"]

ImageFormat = Literal["auto", "raw", "qcow2", "vmdk", "vhd", "vhdx", "vdi", "ova", "ovf", "tar"]

_SHA256 = r"^[0-9a-f]{64}$"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(source: str) -> bool:
    return bool(_URL.match(source))


class ImageSpec(BaseModel):
    """The image being published: what it is called, where its bytes come from and how it boots."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        min_length=1,
        max_length=128,
        description="Image name (lowercase letters, digits, '-', '_' and '.' suit every cloud).",
    )
    version: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$",
        description="Image version, e.g. 1.4.0 or ${VERSION} from the CI environment.",
    )
    description: str = Field(default="", max_length=1000)
    source: str = Field(
        min_length=1,
        description="Disk image: a path relative to the manifest, or an https URL (then sha256 is required).",
    )
    sha256: str | None = Field(
        default=None, pattern=_SHA256, description="Expected sha256 of the source file (lowercase hex)."
    )
    format: ImageFormat = Field(
        default="auto",
        description="Source format; 'auto' detects it from the file's structure. A file without a "
        "partition table is taken as a raw disk only when this says raw.",
    )
    disk: int | str | None = Field(
        default=None,
        description="Which disk of an OVA/OVF with several: its index (0 first) or its file name.",
    )
    arch: Arch = "x86_64"
    boot: BootMode | None = Field(
        default=None,
        description="Firmware the image boots with; when left out, the OVF's firmware or the partition "
        "table decides (plan shows which).",
    )
    boot_check: Literal["error", "warn"] = Field(
        default="error",
        description="A disk that cannot boot the way `boot` says (no EFI system partition for UEFI, no "
        "BIOS boot code on GPT for bios) is an error; `warn` accepts unusual layouts.",
    )
    tpm: bool = Field(default=False, description="Expose a virtual TPM 2.0 (needs UEFI).")
    secure_boot: bool = Field(default=False, description="Enable UEFI Secure Boot (needs UEFI).")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels/tags put on every artifact.")

    @field_validator("source")
    @classmethod
    def _resolve_source(cls, value: str, info: ValidationInfo) -> str:
        if "\0" in value:
            raise ValueError("a path cannot hold a NUL byte")
        if is_url(value):
            if not value.startswith("https://"):
                raise ValueError("a URL source must use https://")
            return value
        base = (info.context or {}).get("base_dir")
        return value if base is None else os.path.normpath(Path(base) / value)

    @model_validator(mode="after")
    def _url_needs_sha256(self) -> ImageSpec:
        if is_url(self.source) and self.sha256 is None:
            raise ValueError("sha256 is required when the source is a URL")
        return self

    @property
    def is_url(self) -> bool:
        return is_url(self.source)


def defaults_model(providers: dict[str, type[Provider[Any]]]) -> type[BaseModel]:
    """`defaults:` - per provider, any of its settings (all optional), merged under each target."""
    fields: dict[str, Any] = {}
    for name, cls in sorted(providers.items()):
        partial: dict[str, Any] = {
            key: (
                Optional[info.annotation],  # noqa: UP045
                Field(default=None, description=info.description),
            )
            for key, info in cls.settings_model.model_fields.items()
            if key not in ("name", "provider")
        }
        model = create_model(
            f"{cls.settings_model.__name__}Defaults",
            __config__=ConfigDict(extra="forbid"),
            __doc__=f"Settings shared by every target whose provider is {name}.",
            **partial,
        )
        fields[name] = (model | None, None)
    result: type[BaseModel] = create_model("Defaults", __config__=ConfigDict(extra="forbid"), **fields)
    return result


def manifest_model(providers: dict[str, type[Provider[Any]]]) -> type[BaseModel]:
    """The whole manifest for these providers: `image`, `defaults` and a discriminated list of targets."""
    settings: list[type[TargetSettings]] = [cls.settings_model for _, cls in sorted(providers.items())]
    target: Any = (
        Annotated[Union[tuple(settings)], Field(discriminator="provider")]  # noqa: UP007
        if settings
        else TargetSettings
    )
    result: type[BaseModel] = create_model(
        "Manifest",
        __config__=ConfigDict(extra="forbid", title="imgpub manifest"),
        __doc__="An imgpub manifest: one image published to one or more targets.",
        image=(ImageSpec, ...),
        defaults=(defaults_model(providers), Field(default=None, description=_DEFAULTS_DOC)),
        retention=(
            Retention | None,
            Field(default=None, description="Retention policy for every target (a target's own fields win)."),
        ),
        targets=(list[target], Field(min_length=1, description="Where to publish the image.")),
    )
    return result


_DEFAULTS_DOC = "Settings per provider, shared by (deep-merged under) every target of that provider."
