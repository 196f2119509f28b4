"""The rules ARM and the Compute resource provider apply beyond the model's shape, each documented:

names in the URL (resource-name-rules), locations, tags (tag-resources: <= 50, names <= 512
without `<>%&\\?/`, values <= 256, names case-insensitive), resource IDs (LinkedInvalidPropertyId),
disk encryption sets (must exist, same region as what they encrypt), Trusted Launch / Confidential
security types (hyperVGeneration V2), sources that must be usable (not Failed, a real fixed VHD),
immutable definition properties, and parents that must exist before their children.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobClient

if TYPE_CHECKING:
    from fakes.arm.server import FakeArm

__all__ = ["ArmError", "Rules"]

MIN_UPLOAD = 20 * (1 << 20) + 512
MAX_UPLOAD = 32 * (1 << 40) + 512
LOCATION = re.compile(r"^[a-z][a-z0-9]*$")
RESOURCE_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/[A-Za-z.]+/[A-Za-z]+/[^/]+(/[A-Za-z]+/[^/]+)*$",
    re.IGNORECASE,
)
DES_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Compute/diskEncryptionSets/[^/]+$",
    re.IGNORECASE,
)
NAMES: dict[str, re.Pattern[str]] = {
    # resource-name-rules, Microsoft.Compute; galleries: the REST API's own pattern.
    "images": re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$"),
    "galleries": re.compile(r"^[^_\W][\w.-]{0,79}(?<![-.])$"),
    "images@gallery": re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9])?$"),
    "versions": re.compile(r"^\d+\.\d+\.\d+$"),
    "disks": re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$"),
}
RESOURCE_GROUP = re.compile(r"^[-\w._()]{1,90}$")
TAG_NAME_FORBIDDEN = re.compile(r"[<>%&\\?/\x00-\x1f]")
SECURE_TYPES = ("TrustedLaunch", "ConfidentialVM", "ConfidentialVMSupported", "TrustedLaunchSupported",
                "TrustedLaunchAndConfidentialVMSupported", "Standard")  # fmt: skip
IMMUTABLE = ("osType", "osState", "hyperVGeneration", "architecture", "identifier")


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.target = status, code, message, target


def _bad(code: str, message: str, target: str | None = None, status: int = 400) -> ArmError:
    return ArmError(status, code, message, target)


class Rules:
    def __init__(self, arm: FakeArm) -> None:
        self.arm = arm

    # ---- request-level --------------------------------------------------------------------------

    def names(self, resource_group: str, rest: str) -> None:
        if not RESOURCE_GROUP.match(resource_group) or resource_group.endswith("."):
            raise _bad("InvalidResourceName", f"Resource group name '{resource_group}' is invalid.")
        parts = rest.split("/")
        for kind, name in zip(parts[::2], parts[1::2], strict=False):
            key = "images@gallery" if kind == "images" and parts[0].lower() == "galleries" else kind.lower()
            pattern = NAMES.get(key)
            if pattern is not None and not pattern.match(name):
                raise _bad("InvalidResourceName", f"The resource name '{name}' is invalid for '{kind}'.")
            if kind == "versions" and any(int(p) > 2**31 - 1 for p in name.split(".")):
                raise _bad("InvalidParameter", f"Each part of version '{name}' must be a 32-bit integer.")

    def location(self, location: str, where: str = "location") -> None:
        if not LOCATION.match(location):
            raise _bad(
                "LocationNotAvailableForResourceType",
                f"The provided location '{location}' is not available for resource type "
                "'Microsoft.Compute'. Use a location name such as 'westeurope'.",
                where,
            )

    def tags(self, tags: dict[str, str]) -> None:
        if len(tags) > 50:
            raise _bad("InvalidTag", f"{len(tags)} tags: a resource takes at most 50.", "tags")
        seen: dict[str, str] = {}
        for name, value in tags.items():
            if TAG_NAME_FORBIDDEN.search(name):
                raise _bad(
                    "InvalidTagNameCharacters",
                    f"The tag name '{name}' has reserved characters '<,>,%,&,\\,?,/' or control characters.",
                    "tags",
                )
            if not 1 <= len(name) <= 512 or len(value) > 256:
                raise _bad(
                    "InvalidTag", f"Tag '{name[:40]}': names take 1-512 characters, values 256.", "tags"
                )
            if name.lower() in seen:
                raise _bad(
                    "InvalidTag", f"Tag names '{seen[name.lower()]}' and '{name}' are the same.", "tags"
                )
            seen[name.lower()] = name

    def resource_id(self, value: str, where: str) -> None:
        if not RESOURCE_ID.match(value):
            raise _bad(
                "LinkedInvalidPropertyId",
                f"Property id '{value}' at path '{where}' is invalid. Expect fully qualified resource Id "
                "that start with '/subscriptions/{subscriptionId}'.",
                where,
            )

    def encryption_set(self, des_id: str, location: str, where: str) -> None:
        if not DES_ID.match(des_id):
            self.resource_id(des_id, where)
            raise _bad("InvalidParameter", f"'{des_id}' at '{where}' is not a disk encryption set.", where)
        found = self.arm.disk_encryption_sets.get(des_id.lower())
        if found is None:
            raise _bad("NotFound", f"Disk encryption set '{des_id}' was not found.", where, status=404)
        if found != location.replace(" ", "").lower():
            raise _bad(
                "InvalidParameter",
                f"Disk encryption set '{des_id}' is in '{found}'; "
                f"it must be in '{location}' to encrypt there.",
                where,
            )

    def parent(self, rest: str) -> None:
        parent = rest.rsplit("/", 2)[0] if rest.count("/") >= 3 else None
        if parent and self.arm.visible(parent) is None:
            raise _bad("ParentResourceNotFound", f"Can not perform requested operation on nested resource. "
                       f"Parent resource '{parent}' not found.", status=404)  # fmt: skip

    # ---- per resource type ----------------------------------------------------------------------

    def checks(self) -> dict[str, Callable[[dict[str, Any], dict[str, Any], str], None]]:
        return {
            "Microsoft.Compute/images": self.image,
            "Microsoft.Compute/galleries/images": self.definition,
            "Microsoft.Compute/galleries/images/versions": self.version,
            "Microsoft.Compute/disks": self.disk,
        }

    def image(self, doc: dict[str, Any], props: dict[str, Any], rest: str) -> None:
        os_disk = props.get("storageProfile", {}).get("osDisk") or {}
        des = (os_disk.get("diskEncryptionSet") or {}).get("id")
        if des:
            self.encryption_set(des, doc["location"], "properties.storageProfile.osDisk.diskEncryptionSet.id")
        if os_disk.get("blobUri"):
            self.vhd_blob(os_disk["blobUri"])
        elif os_disk.get("managedDisk", {}).get("id"):
            self.source_disk(os_disk["managedDisk"]["id"], "properties.storageProfile.osDisk.managedDisk.id")
        else:
            raise _bad(
                "InvalidParameter", "osDisk needs blobUri or managedDisk.", "properties.storageProfile.osDisk"
            )

    def definition(self, doc: dict[str, Any], props: dict[str, Any], rest: str) -> None:
        features = {f.get("name", ""): f.get("value", "") for f in props.get("features") or []}
        security = features.get("SecurityType")
        if security is not None:
            if security not in SECURE_TYPES:
                raise _bad(
                    "InvalidParameter", f"SecurityType '{security}' is not supported.", "properties.features"
                )
            if security != "Standard" and props.get("hyperVGeneration", "V1") != "V2":
                raise _bad(
                    "InvalidParameter",
                    f"SecurityType '{security}' requires hyperVGeneration 'V2'.",
                    "properties.hyperVGeneration",
                )
        existing = self.arm.get(rest)
        if existing is not None:
            old = existing["properties"]
            for name in IMMUTABLE:
                if old.get(name) != props.get(name):
                    raise _bad("PropertyChangeNotAllowed", f"Changing property '{name}' is not allowed.",
                               f"properties.{name}", status=409)  # fmt: skip

    def version(self, doc: dict[str, Any], props: dict[str, Any], rest: str) -> None:
        definition = self.arm.visible(rest.rsplit("/", 2)[0])
        if definition is not None and definition["properties"].get("provisioningState") == "Failed":
            raise _bad("InvalidParameter", "The gallery image definition is in provisioning state 'Failed'.")
        storage = props.get("storageProfile") or {}
        source = (storage.get("source") or {}).get("id")
        disk_source = (storage.get("osDiskImage") or {}).get("source") or {}
        if source:
            self.resource_id(source, "properties.storageProfile.source.id")
            image = self.arm.visible(source.split("/providers/Microsoft.Compute/", 1)[1])
            if image is None:
                raise _bad("NotFound", f"Source '{source}' was not found.", status=404)
            state = image["properties"].get("provisioningState")
            if state != "Succeeded":
                raise _bad("InvalidParameter", f"The source image is in provisioning state '{state}'.",
                           "properties.storageProfile.source.id")  # fmt: skip
            want = (definition or {}).get("properties", {}).get("hyperVGeneration", "V1")
            if image["properties"].get("hyperVGeneration", "V1") != want:
                raise _bad("InvalidParameter", f"The source image's Hyper-V generation is not {want}.")
        elif disk_source.get("uri"):
            if not disk_source.get("storageAccountId"):
                raise _bad("InvalidParameter", "osDiskImage.source.storageAccountId is required with uri.",
                           "properties.storageProfile.osDiskImage.source.storageAccountId")  # fmt: skip
            self.resource_id(disk_source["storageAccountId"], "properties.storageProfile.osDiskImage.source")
            self.vhd_blob(disk_source["uri"])
        elif disk_source.get("id"):
            self.source_disk(disk_source["id"], "properties.storageProfile.osDiskImage.source.id")
        else:
            raise _bad("InvalidParameter", "storageProfile needs source.id or osDiskImage.source.")
        for i, region in enumerate((props.get("publishingProfile") or {}).get("targetRegions") or []):
            where = f"properties.publishingProfile.targetRegions[{i}]"
            self.location(region["name"], f"{where}.name")
            des = ((region.get("encryption") or {}).get("osDiskImage") or {}).get("diskEncryptionSetId")
            if des:
                self.encryption_set(
                    des, region["name"], f"{where}.encryption.osDiskImage.diskEncryptionSetId"
                )

    def disk(self, doc: dict[str, Any], props: dict[str, Any], rest: str) -> None:
        creation = props.get("creationData") or {}
        if creation.get("createOption") != "Upload":
            raise _bad("InvalidParameter", "this fake only creates disks for upload")
        size = creation.get("uploadSizeBytes") or 0
        if not (MIN_UPLOAD <= size <= MAX_UPLOAD) or (size - 512) % (1 << 20):
            raise _bad("InvalidParameter", f"uploadSizeBytes {size} must be N MiB + 512 in range.",
                       "properties.creationData.uploadSizeBytes")  # fmt: skip
        encryption = props.get("encryption") or {}
        if encryption.get("diskEncryptionSetId"):
            if encryption.get("type") not in ("EncryptionAtRestWithCustomerKey",
                                              "EncryptionAtRestWithPlatformAndCustomerKeys"):  # fmt: skip
                raise _bad("InvalidParameter", "A disk encryption set needs a customer-key encryption type.",
                           "properties.encryption.type")  # fmt: skip
            self.encryption_set(encryption["diskEncryptionSetId"], doc["location"], "properties.encryption")
        security = (props.get("securityProfile") or {}).get("securityType")
        if security and props.get("hyperVGeneration") != "V2":
            raise _bad("InvalidParameter", f"securityType '{security}' requires hyperVGeneration 'V2'.",
                       "properties.hyperVGeneration")  # fmt: skip

    # ---- sources --------------------------------------------------------------------------------

    def vhd_blob(self, uri: str) -> None:
        parts = urlsplit(uri).path.split("/")
        try:
            blob = BlobClient.from_connection_string(
                self.arm.storage_conn, parts[2], "/".join(parts[3:]), api_version=self.arm.storage_api_version
            )
            props = blob.get_blob_properties()
        except (ValueError, IndexError, AzureError) as exc:
            raise _bad("InvalidParameter", f"The source blob '{uri}' cannot be read.") from exc
        if props.size < MIN_UPLOAD - (1 << 20) or (props.size - 512) % (1 << 20):
            raise _bad("InvalidParameter", f"unsupported virtual size of {props.size - 512} bytes")
        footer = blob.download_blob(offset=props.size - 512, length=512).readall()
        if footer[:8] != b"conectix":
            raise _bad("InvalidParameter", "the blob is not a fixed VHD (no footer)")

    def source_disk(self, disk_id: str, where: str) -> None:
        self.resource_id(disk_id, where)
        disk = self.arm.visible(disk_id.split("/providers/Microsoft.Compute/", 1)[1])
        if disk is None:
            raise _bad("NotFound", f"disk {disk_id} not found", status=404)
        state = disk["properties"]["diskState"]
        if state in ("ReadyToUpload", "ActiveUpload"):
            raise _bad("OperationNotAllowed", f"disk is in state {state}", status=409)
        if disk["properties"].get("provisioningState") != "Succeeded":
            raise _bad(
                "InvalidParameter", f"disk is in provisioning state {disk['properties']['provisioningState']}"
            )
