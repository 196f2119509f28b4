"""Rules across fields and clouds that a single field's type cannot say.

`check_manifest` runs when the manifest loads (no disk needed); `check_image` runs once the image
is measured, and asks every target's provider too (`Provider.check`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from imgpub.errors import ManifestError
from imgpub.manifest.boot import Boot
from imgpub.manifest.document import Loc
from imgpub.manifest.models import ImageSpec
from imgpub.provider import ImageInfo, Problem

if TYPE_CHECKING:
    from imgpub.manifest.loader import Manifest

__all__ = ["boot_rules", "check_image", "check_manifest", "problem_loc"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")
_RESERVED_PREFIX = "imgpub"
_MAX_LABEL_VALUE = 255


def check_manifest(manifest: Manifest) -> None:
    """Raise the first rule the manifest breaks, as a ManifestError at the offending line."""
    problems = [*_image_problems(manifest), *_target_problems(manifest)]
    if problems:
        raise _earliest(manifest, problems)


def check_image(
    manifest: Manifest, image: ImageInfo, targets: list[str] | None = None, boot: Boot | None = None
) -> list[str]:
    """The checks that need the measured image, the providers' own checks included, and whether the
    disk can boot as `boot` says. Raise the first problem; return the warnings, each a line that
    names the file, line and field."""
    problems: list[tuple[Loc, str]] = []
    warnings: list[tuple[Loc, str]] = []
    if boot is not None:
        lacks = warnings if manifest.image.boot_check == "warn" else problems
        lacks += [(("image", "boot"), p) for p in boot.problems]
        if manifest.image.boot is None and boot.mode is not None:
            problems += boot_rules(manifest.image, boot.mode, f" (from {boot.source})")
    if image.virtual_size <= 0:
        problems.append((("image", "source"), "the disk image is empty (virtual size 0)"))
    elif image.virtual_size % 512:
        problems.append((("image", "source"), f"virtual size {image.virtual_size} is not a multiple of 512"))
    for i, target in enumerate(manifest.targets):
        if targets and target.name not in targets:
            continue
        provider = manifest.providers[target.provider]()
        for problem in provider.check(image, target):
            loc = problem_loc(("targets", i), problem)
            into = warnings if problem.warning else problems
            if loc[2:3] == ("image",) and "image" not in type(target).model_fields:
                # `image.tpm`: the provider objects to the image section, for this target
                into.append((loc[2:], f"{problem.message} (target {target.name})"))
            else:
                into.append((loc, problem.message))
    if problems:
        raise _earliest(manifest, problems)
    return [str(manifest.error(loc, message)) for loc, message in warnings]


_FIELD_PART = re.compile(r"""\[(?:"([^"]*)"|'([^']*)')\]|([^.\[\]]+)""")


def problem_loc(base: Loc, problem: Problem) -> Loc:
    """`regions[1].kms_key` or `regions.1.kms_key` inside `base` (`image.tpm` names the image section);
    a key holding dots is quoted: `image.labels["app.tier"]`."""
    loc: list[str | int] = list(base)
    for double, single, part in _FIELD_PART.findall(problem.field):
        if part:
            loc.append(int(part) if part.isdigit() else part)
        else:
            loc.append(double or single)
    return tuple(loc)


def _earliest(manifest: Manifest, problems: list[tuple[Loc, str]]) -> ManifestError:
    # A label's problem is its key's; everything else points at the value.
    errors = [manifest.error(loc, message, key=loc[:2] == ("image", "labels")) for loc, message in problems]
    return ManifestError.first_of(errors)


def boot_rules(image: ImageSpec, boot: str | None, said: str = "") -> list[tuple[Loc, str]]:
    """What `boot` rules out (`said`: where a boot the manifest left out came from)."""
    out: list[tuple[Loc, str]] = []
    if image.arch == "arm64" and boot == "bios":
        out.append((("image", "boot"), f"arm64 images boot with UEFI only{said}; use boot: uefi"))
    if boot == "bios" and image.secure_boot:
        out.append((("image", "secure_boot"), f"Secure Boot needs UEFI, but boot is bios{said}"))
    if boot == "bios" and image.tpm:
        out.append((("image", "tpm"), f"a TPM needs UEFI, but boot is bios{said}"))
    if image.secure_boot and boot == "uefi-preferred":
        out.append((("image", "secure_boot"), f"Secure Boot needs boot: uefi (not uefi-preferred){said}"))
    return out


def _image_problems(manifest: Manifest) -> list[tuple[Loc, str]]:
    image = manifest.image
    out = boot_rules(image, image.boot)
    for key, value in image.labels.items():
        loc: Loc = ("image", "labels", key)
        if not _LABEL_KEY.match(key):
            out.append(
                (
                    loc,
                    f"label key {key!r} must be lowercase letters, digits, '_', '.', '-' (max 63), "
                    "starting with a letter",
                )
            )
        elif key.startswith(_RESERVED_PREFIX):
            out.append((loc, f"label keys starting with {_RESERVED_PREFIX!r} are reserved for imgpub"))
        if len(value) > _MAX_LABEL_VALUE:
            out.append((loc, f"label value is {len(value)} characters; at most {_MAX_LABEL_VALUE}"))
    return out


def _target_problems(manifest: Manifest) -> list[tuple[Loc, str]]:
    out: list[tuple[Loc, str]] = []
    seen: dict[str, int] = {}
    for i, target in enumerate(manifest.targets):
        if target.name in seen:
            first = manifest.document.mark(("targets", seen[target.name], "name"))
            where = f" (first at line {first.line})" if first else ""
            out.append((("targets", i, "name"), f"duplicate target name {target.name!r}{where}"))
        seen.setdefault(target.name, i)
        name = target.image_name or manifest.image.name
        if not _NAME.match(name):
            field: Any = ("targets", i, "image_name") if target.image_name else ("image", "name")
            out.append(
                (
                    field,
                    f"image name {name!r} must be letters, digits, '.', '_' or '-' "
                    "(at most 128, starting with a letter or digit)",
                )
            )
    return out
