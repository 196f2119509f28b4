"""Every error imgpub raises on purpose, and the exit code each one means.

    ImgpubError                      exit 1: something failed
    ├── BadInputError                exit 2: the user must change something before a re-run helps
    │   ├── ManifestError            file:line:col field: what is wrong
    │   ├── (ImageFormatError)       from imgpub.disk; see below
    │   ├── ChecksumMismatchError    source bytes differ from the sha256 the manifest promised
    │   └── ConfigurationError       a combination of settings that cannot work
    └── TargetError                  exit 1: one target failed; the others go on
        ├── CredentialsError         no usable credentials for a cloud
        ├── CloudError               a cloud API said no (code, operation, region)
        └── ImageConflictError       same name+version exists with other content (use --replace)

The disk engine imports nothing from the rest of imgpub, so its errors live in `imgpub.disk.errors`:

    DiskError                        exit 2
    └── ImageFormatError             path: format structure at byte offset: what is wrong
        └── UnsupportedImageError    a valid image using a feature imgpub refuses (with advice)

Each class builds its one-line message from its fields; only the CLI turns one into output
and an exit code.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from imgpub.disk.errors import DiskError, ImageFormatError, UnsupportedImageError

__all__ = [
    "BadInputError",
    "ChecksumMismatchError",
    "CloudError",
    "ConfigurationError",
    "CredentialsError",
    "DiskError",
    "ImageConflictError",
    "ImageFormatError",
    "ImgpubError",
    "ManifestError",
    "TargetError",
    "UnsupportedImageError",
]


MAX_SHOWN = 20
"""Problems listed at once; past that the first ones are the ones to fix."""


class ImgpubError(Exception):
    exit_code: ClassVar[int] = 1


class BadInputError(ImgpubError):
    exit_code = 2


class ManifestError(BadInputError):
    def __init__(
        self,
        file: Path | str,
        field: str,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        where = str(file)
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")
        self.file, self.field, self.message, self.line, self.column = file, field, message, line, column
        self.also: tuple[ManifestError, ...] = ()
        """More problems found in the same pass (`validate` shows them all); this one is the first."""

    @classmethod
    def first_of(cls, errors: list[ManifestError], cap: int = MAX_SHOWN) -> ManifestError:
        """The earliest error (by line, column), carrying the others (duplicates dropped) in `also`."""
        unique: dict[tuple[int, int, str], ManifestError] = {}
        for error in sorted(errors, key=lambda e: (e.line or 0, e.column or 0)):
            unique.setdefault((error.line or 0, error.column or 0, error.message), error)
        first, *rest = unique.values()
        first.also = tuple(rest[: cap - 1])
        return first

    @property
    def all(self) -> tuple[ManifestError, ...]:
        return (self, *self.also)


class ChecksumMismatchError(BadInputError):
    def __init__(self, source: str, expected: str, actual: str) -> None:
        super().__init__(f"{source}: sha256 is {actual}, but the manifest expects {expected}")
        self.source, self.expected, self.actual = source, expected, actual


class ConfigurationError(BadInputError):
    pass


class TargetError(ImgpubError):
    def __init__(self, target: str, message: str) -> None:
        super().__init__(f"target {target}: {message}")
        self.target, self.message = target, message


class CredentialsError(TargetError):
    pass


class CloudError(TargetError):
    def __init__(
        self,
        target: str,
        operation: str,
        message: str,
        *,
        code: str | None = None,
        region: str | None = None,
        retryable: bool = False,
    ) -> None:
        where = f" in {region}" if region else ""
        coded = f" [{code}]" if code else ""
        super().__init__(target, f"{operation}{where} failed{coded}: {message}")
        self.operation, self.code, self.region, self.retryable = operation, code, region, retryable


class ImageConflictError(TargetError):
    """`what` says what exists and where; the message adds how to go on (the only place that does)."""

    HINT: ClassVar[str] = "publish a new version, or re-run with --replace to replace it"

    def __init__(self, target: str, what: str, hint: str | None = None) -> None:
        super().__init__(target, f"{what}; {hint or self.HINT}")
        self.what, self.hint = what, hint or self.HINT
