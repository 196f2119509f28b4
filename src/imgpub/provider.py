"""The contract between the core and a cloud: one Provider class and one settings model per plugin.

A provider distribution declares `name = "module:Class"` in the entry-point group
`imgpub.providers`. The core hands it plain data (never YAML), an opened disk image and a Context;
the provider hands back a Plan, a Published record or a Status. It never prints and never exits.

Example, a complete (if useless) provider::

    class NullSettings(TargetSettings):
        provider: Literal["null"] = "null"

    class NullProvider(Provider[NullSettings]):
        name = "null"
        settings_model = NullSettings

        def plan(self, image, settings, ctx):
            return Plan(ctx.target, self.name, actions=[Action("create", "nothing", "nowhere")])

        def publish(self, image, settings, disk, ctx):
            return Published(ctx.target, self.name, artifacts=[Artifact("nothing", "none")])

        def status(self, image, settings, ctx):
            return Status(ctx.target, self.name)
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo

from imgpub.disk import DiskImage
from imgpub.journal import Journal
from imgpub.progress import NullProgress, Progress
from imgpub.retention import Retention
from imgpub.retry import RetryPolicy

__all__ = [
    "Action",
    "Arch",
    "Artifact",
    "BootMode",
    "Context",
    "DiskImage",
    "ImageInfo",
    "ManifestPath",
    "Plan",
    "Problem",
    "Provider",
    "Published",
    "Release",
    "ReleaseState",
    "Retention",
    "RetireAction",
    "Status",
    "TargetSettings",
]

Arch = Literal["x86_64", "arm64"]
BootMode = Literal["bios", "uefi", "uefi-preferred"]


def _relative_to_manifest(value: Path, info: ValidationInfo) -> Path:
    if "\0" in str(value):
        raise ValueError("a path cannot hold a NUL byte")
    base = (info.context or {}).get("base_dir")
    return value if value.is_absolute() or base is None else Path(os.path.normpath(Path(base) / value))


ManifestPath = Annotated[Path, AfterValidator(_relative_to_manifest)]
"""A path in the manifest: relative paths are resolved against the manifest's folder (the loader
validates with `context={"base_dir": <manifest folder>}`)."""

ActionKind = Literal["upload", "create", "copy", "share", "tag", "deprecate", "delete", "replace", "wait"]


class TargetSettings(BaseModel):
    """Base of every provider's settings model. Subclasses add `provider: Literal["<name>"]`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="Unique name of this target in the manifest (used in reports and --target).",
    )
    provider: str = Field(description="Which provider publishes this target.")
    image_name: str | None = Field(
        default=None,
        description="Name of the image on this target, when the manifest's image name does not suit "
        "this cloud.",
    )
    retention: Retention | None = Field(
        default=None,
        description="This target's retention policy; its fields win over the manifest's top-level one.",
    )

    def identity(self) -> dict[str, Any]:
        """The settings that change what is registered; part of the image digest.

        Providers override this to leave out what can change without a new upload (regions,
        sharing, tags).
        """
        return self.model_dump(mode="json", exclude={"name", "retention"})


@dataclass(frozen=True)
class ImageInfo:
    """What the image is: the manifest's `image` section plus facts measured from the disk."""

    name: str
    version: str
    arch: Arch
    boot: BootMode
    virtual_size: int
    content_digest: str
    description: str = ""
    tpm: bool = False
    secure_boot: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    source: str = ""
    boot_source: str = "image.boot"
    """Where `boot` came from: "image.boot", "the OVF firmware" or "the partition table"."""


@dataclass(frozen=True)
class Problem:
    """A semantic error in a target's settings; `field` is a dotted path inside the target.

    A warning (`warning=True`) is shown but publishes anyway: a well-formed region name the SDK's
    list does not know yet, say.
    """

    field: str
    message: str
    warning: bool = False


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    resource: str
    detail: str
    region: str | None = None


@dataclass(frozen=True)
class Artifact:
    """Something that exists in a cloud (or folder) for this image: an AMI, a GCE image, a file."""

    kind: str
    id: str
    region: str | None = None
    uri: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    target: str
    provider: str
    actions: list[Action] = field(default_factory=list)
    existing: list[Artifact] = field(default_factory=list)
    conflict: str | None = None
    """Set when the same name and version exists with other content; publish then needs --replace.
    Say what exists (and where); the core adds how to go on, once: `conflict_hint`, or by default
    ImageConflictError.HINT (a new version, or --replace)."""
    conflict_hint: str | None = None

    @property
    def up_to_date(self) -> bool:
        return not self.actions and self.conflict is None


@dataclass
class Published:
    target: str
    provider: str
    artifacts: list[Artifact] = field(default_factory=list)
    changed: bool = True
    warnings: list[str] = field(default_factory=list)


@dataclass
class Status:
    target: str
    provider: str
    artifacts: list[Artifact] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    """What differs from the manifest: missing regions or shares, another digest, ..."""


ReleaseState = Literal["active", "deprecated", "pending", "failed", "deleting"]


@dataclass(frozen=True)
class Release:
    """One version of this image on a target, found by imgpub's name tag/label (never by name alone).

    `state`: "active"; "deprecated" (every artifact is); "pending" (still being made); "failed" (an
    artifact is in a failed state); "deleting" (a delete stopped half-way left pieces, such as a
    snapshot without its AMI: the next prune finishes it whatever the policy says).
    """

    version: str
    state: ReleaseState
    created: datetime | None
    """When its oldest artifact on this target was made (None: the cloud does not say)."""
    regions: tuple[str | None, ...] = (None,)
    """Where it exists (None for a cloud or folder without regions)."""
    digest: str | None = None
    artifacts: tuple[Artifact, ...] = ()
    drift: tuple[str, ...] = ()
    """What differs from the settings for this version (missing tags, sharing), said by the provider."""


RetireAction = Literal["deprecate", "delete"]


@dataclass
class Context:
    """What the core gives a provider for one target of one run."""

    target: str
    digest: str
    """Identity of this publish: content digest + registration settings (see imgpub.identity)."""
    journal: Journal
    progress: Progress = field(default_factory=NullProgress)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("imgpub"))
    replace: bool = False
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    """The clock for ages and deprecation times (tests inject one)."""


S = TypeVar("S", bound=TargetSettings)


class Provider(ABC, Generic[S]):
    name: ClassVar[str]
    settings_model: ClassVar[type[TargetSettings]]

    def check(self, image: ImageInfo, settings: S) -> list[Problem]:
        """Semantic checks that need the image (TPM needs uefi, name rules...). Run by `validate`."""
        return []

    @abstractmethod
    def plan(self, image: ImageInfo, settings: S, ctx: Context) -> Plan:
        """What exists for this image and what `publish` would do. Makes no change."""

    @abstractmethod
    def publish(self, image: ImageInfo, settings: S, disk: DiskImage, ctx: Context) -> Published:
        """Make the target match the manifest. Safe to re-run; resumes from the journal."""

    @abstractmethod
    def status(self, image: ImageInfo, settings: S, ctx: Context) -> Status:
        """What is published for this image, and how it drifts from the manifest."""

    # -- lifecycle: every version of the image (prune, status --all-versions, reconcile) ------------
    # Optional: a provider without them publishes, plans and reports status, but `prune`,
    # `status --all-versions` and `reconcile` say it does not support them.

    def regions(self, settings: S) -> list[str | None]:
        """Where every version should exist (`[None]` for a cloud or folder without regions)."""
        return [None]

    def releases(self, name: str, settings: S, ctx: Context) -> list[Release]:
        """Every version of the image `name` (the manifest's image name: apply the target's
        `image_name` where the provider tags with it) on this target, found by imgpub's tags or
        labels only. Makes no change."""
        raise NotImplementedError(f"provider {self.name} does not list versions")

    def retire(
        self,
        name: str,
        settings: S,
        release: Release,
        action: RetireAction,
        ctx: Context,
        *,
        replacement: str | None,
    ) -> list[str]:
        """Deprecate (`replacement`: the newest version kept, for clouds that point to one) or delete
        one version's artifacts everywhere on this target; what was done, one line each. Safe to
        repeat: a delete stopped half-way is finished by the next call, and what is already gone is
        done. Touches nothing without imgpub's tags/labels."""
        raise NotImplementedError(f"provider {self.name} does not prune")

    def reconcile(self, name: str, settings: S, release: Release, ctx: Context) -> list[str]:
        """Bring a published version in line with the settings without uploading it again: copy it to
        the regions it lacks from one that has it, re-apply sharing, tags and deprecation. What was
        done, one line each."""
        raise NotImplementedError(f"provider {self.name} does not reconcile")
