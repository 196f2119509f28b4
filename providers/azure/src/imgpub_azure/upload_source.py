"""Where an uploaded VHD lives: a page blob in a storage account, or a managed disk."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["UploadedVhd"]


@dataclass(frozen=True)
class UploadedVhd:
    kind: Literal["blob", "disk"]
    name: str
    uri: str
    """The blob URL without any SAS, or the disk's ARM id."""
    storage_account_id: str | None = None
