"""provisioningState, and when a resource was created.

A resource whose last operation failed or was canceled is not usable. ARM leaves it in place in that
state (a gallery version cannot be made from a Failed image, a Failed
version serves nothing): imgpub never counts it as published, deletes it and makes it again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from imgpub_azure.names import text

__all__ = ["UNUSABLE", "created_at", "failed_state", "state_of"]

UNUSABLE = ("failed", "canceled")


def state_of(resource: Any) -> str:
    """The resource's provisioningState ('Succeeded', 'Failed', 'Creating'...), or '' if it has none."""
    props = getattr(resource, "properties", None)
    return text(getattr(props, "provisioning_state", None))


def failed_state(resource: Any) -> str | None:
    """'Failed' or 'Canceled' when the resource is not usable, else None."""
    state = state_of(resource)
    return state if state.lower() in UNUSABLE else None


def created_at(resource: Any) -> datetime | None:
    """Resource Manager's record of when a resource was created (systemData.createdAt), when it
    sends one (the Compute provider does for images, galleries, versions and disks)."""
    system = getattr(resource, "system_data", None)
    value = system.created_at if system is not None else None
    return value if isinstance(value, datetime) else None
