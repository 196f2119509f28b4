"""PATCH of a gallery image version, as the Compute resource provider takes it.

The body is azure-mgmt-compute's GalleryImageVersionUpdate (checked by contract.py: read-only members
such as publishedDate refused, `properties.storageProfile` required, endOfLifeDate a date-time). On
top of the model, what the service does with it:

* members left out stay as they are (a PATCH merges): `tags` only when given; each publishing
  profile member given replaces the stored one (`targetRegions` as a whole, which starts replication
  to the regions it adds);
* the storage profile must be the version's own: its source cannot change once the version exists
  (409 PropertyChangeNotAllowed, as for a definition's identity);
* every target region is a location name (LocationNotAvailableForResourceType otherwise), and its
  disk encryption set exists in that region.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fakes.arm.rules import ArmError

if TYPE_CHECKING:
    from fakes.arm.server import FakeArm

__all__ = ["update_version"]

UPDATABLE = ("publishingProfile", "storageProfile", "safetyProfile")
"""The properties a version's PATCH may carry here (storageProfile only as it is)."""


def _pruned(value: Any) -> Any:
    """A JSON value without null members (an SDK leaves unset members out, a copy may send null)."""
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v is not None and k != "sizeInGB"}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def update_version(arm: FakeArm, res: dict[str, Any], props: dict[str, Any]) -> None:
    """Check a version PATCH's `properties` against the stored version, then apply them."""
    other = sorted(set(props) - set(UPDATABLE))
    if other:
        raise ArmError(
            400, "InvalidParameter", f"Property '{other[0]}' cannot be updated.", f"properties.{other[0]}"
        )
    stored = res["properties"]
    if _pruned(props.get("storageProfile")) != _pruned(stored.get("storageProfile")):
        raise ArmError(
            409,
            "PropertyChangeNotAllowed",
            "Changing property 'galleryImageVersion.properties.storageProfile' is not allowed.",
            "properties.storageProfile",
        )
    profile = props.get("publishingProfile") or {}
    regions = profile.get("targetRegions")
    if regions is not None:
        if not regions:
            raise ArmError(
                400,
                "InvalidParameter",
                "A gallery image version needs at least one target region.",
                "properties.publishingProfile.targetRegions",
            )
        for i, region in enumerate(regions):
            where = f"properties.publishingProfile.targetRegions[{i}]"
            arm.rules.location(region["name"], f"{where}.name")
            des = ((region.get("encryption") or {}).get("osDiskImage") or {}).get("diskEncryptionSetId")
            if des:
                arm.rules.encryption_set(
                    des, region["name"], f"{where}.encryption.osDiskImage.diskEncryptionSetId"
                )
    stored.setdefault("publishingProfile", {}).update(profile)
    if "safetyProfile" in props:
        stored["safetyProfile"] = {**(stored.get("safetyProfile") or {}), **(props["safetyProfile"] or {})}
    if regions is not None:
        res["_regions"] = [r["name"] for r in regions]
        res["_done"] = False
