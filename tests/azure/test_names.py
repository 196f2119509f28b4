"""Names Azure refuses are bad input (a field error at the manifest line, exit 2), locations are
checked against a list kept in the code, and that list is pinned to its documented source."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from azure.identity import _enums as identity_enums
from pydantic import ValidationError

from imgpub.provider import ImageInfo
from imgpub_azure import AzureProvider, AzureSettings
from imgpub_azure.locations import AZURE_LOCATIONS, LOCATION_PATTERN

SUB = "00000000-0000-0000-0000-0000000000a1"
BASE = {
    "name": "az",
    "subscription_id": SUB,
    "resource_group": "rg",
    "location": "westeurope",
    "storage_account": "acct",
}
DES = f"/subscriptions/{SUB}/resourceGroups/keys/providers/Microsoft.Compute/diskEncryptionSets/des_1"
IMAGE = ImageInfo(
    name="golden", version="1.2.3", arch="x86_64", boot="uefi", virtual_size=1 << 30, content_digest="c"
)


def _error(**fields) -> str:
    with pytest.raises(ValidationError) as caught:
        AzureSettings.model_validate({**BASE, **fields})
    (error,) = caught.value.errors()
    return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg'].removeprefix('Value error, ')}"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"resource_group": "golden images/prod."},
            "resource_group: resource group names take 1-90 letters, "
            "digits, '_', '-', '.', '(' and ')', and do "
            "not end in '.'; ' ' and '/' are not allowed",
        ),
        (
            {"resource_group": "prod."},
            "resource_group: resource group names take 1-90 letters, digits, '_', '-', "
            "'.', '(' and ')', and do not end in '.'",
        ),
        (
            {"resource_group": "x" * 91},
            "resource_group: resource group names take 1-90 letters, digits, '_', '-', "
            "'.', '(' and ')', and do not end in '.'",
        ),
        (
            {"storage_resource_group": "a/b"},
            "storage_resource_group: resource group names take 1-90 letters, "
            "digits, '_', '-', '.', '(' and ')', and do not end in '.'; '/' is not allowed",
        ),
        (
            {"storage_account": "My_Account"},
            "storage_account: storage account names are 3-24 lowercase letters and digits",
        ),
        (
            {"storage_account": "ab"},
            "storage_account: storage account names are 3-24 lowercase letters and digits",
        ),
        (
            {"container": "a--b"},
            "container: container names are 3-63 lowercase letters, digits and hyphens, start "
            "and end with a letter or digit, and have no '--'",
        ),
        (
            {"container": "-vhds"},
            "container: container names are 3-63 lowercase letters, digits and hyphens, start "
            "and end with a letter or digit, and have no '--'",
        ),
        (
            {"subscription_id": "my-subscription"},
            "subscription_id: a subscription ID is a GUID, e.g. 00000000-0000-0000-0000-000000000000",
        ),
        (
            {"gallery": {"name": "my-gallery"}},
            "gallery.name: gallery names are 1-80 letters, digits, '_' and '.', "
            "starting and ending with a letter or digit",
        ),
        (
            {"gallery": {"name": "g", "image_definition": "def."}},
            "gallery.image_definition: image definition names "
            "are 1-80 letters, digits, '_', '-' and '.', starting and ending with a letter or digit",
        ),
        (
            {"gallery": {"name": "g", "version": "1.2"}},
            "gallery.version: '1.2' is not MAJOR.MINOR.PATCH (digits only)",
        ),
        (
            {"gallery": {"name": "g", "version": "1.2.2147483648"}},
            "gallery.version: '1.2.2147483648': each part must be at most 2147483647",
        ),
        (
            {"image_name": "image-"},
            "image_name: 'image-' is not a valid managed image name (1-80 of A-Z a-z 0-9 _ . "
            "-, starting alphanumeric, ending alphanumeric or _)",
        ),
        (
            {"disk_encryption_set": "des_1"},
            "disk_encryption_set: a disk encryption set is its resource ID: "
            "/subscriptions/<subscription "
            "id>/resourceGroups/<group>/providers/Microsoft.Compute/diskEncryptionSets/"
            "<name>",
        ),
        (
            {"disk_encryption_set": DES.replace(SUB, "sub")},
            "disk_encryption_set: a disk encryption set is its resource ID: /subscriptions/<subscription id>/"
            "resourceGroups/<group>/providers/Microsoft.Compute/diskEncryptionSets/<name> "
            "(a subscription ID is a GUID, e.g. 00000000-0000-0000-0000-000000000000)",
        ),
        (
            {
                "gallery": {
                    "name": "g",
                    "target_regions": [{"name": "eastus", "disk_encryption_set": DES + "/x"}],
                }
            },
            "gallery.target_regions.0.disk_encryption_set: a disk "
            "encryption set is its resource ID: /subscriptions/"
            "<subscription id>/resourceGroups/<group>/providers/Microsoft.Compute/diskEncryptionSets/<name>",
        ),
    ],
)
def test_names_azure_refuses_are_field_errors(fields, expected):
    assert _error(**fields) == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"resource_group": "Golden_Images-(prod).v2"},
        {"resource_group": "images-épreuve"},  # letters of any script
        {"storage_account": "abc", "container": "a-b"},
        {
            "gallery": {
                "name": "golden_images.prod",
                "image_definition": "ubuntu_24.04-lts",
                "version": "2147483647.0.1",
            }
        },
        {"disk_encryption_set": DES},
        {
            "disk_encryption_set": DES.replace("/resourceGroups/", "/resourcegroups/").replace(
                "Compute", "compute"
            )
        },
    ],
)
def test_names_azure_takes(fields):
    AzureSettings.model_validate({**BASE, **fields})


def _problems(**fields) -> dict[str, tuple[str, bool]]:
    settings = AzureSettings.model_validate({**BASE, **fields})
    return {p.field: (p.message, p.warning) for p in AzureProvider().check(IMAGE, settings)}


@pytest.mark.parametrize(
    ("location", "message"),
    [
        (
            "eu-west-1",
            "'eu-west-1' is not a region name: Azure locations are lowercase letters and digits without "
            "spaces, e.g. westeurope ('eu-west-1' is an AWS-style region name)",
        ),
        (
            "west europe",
            "'west europe' is not a region name: Azure locations are lowercase letters and digits "
            "without spaces, e.g. westeurope; did you mean 'westeurope'?",
        ),
        (
            "West Europe",
            "'West Europe' is not a region name: Azure locations are lowercase letters and digits "
            "without spaces, e.g. westeurope; did you mean 'westeurope'?",
        ),
        ("westeruope", "unknown region 'westeruope'; did you mean 'westeurope'?"),
    ],
)
def test_bad_locations_are_errors(location, message):
    assert _problems(location=location)["location"] == (message, False)
    gallery = {"name": "g", "target_regions": [{"name": "westeurope"}, {"name": location}]}
    assert _problems(gallery=gallery)["gallery.target_regions[1].name"] == (message, False)


def test_a_new_well_formed_location_is_a_warning():
    message, warning = _problems(location="westus9")["location"]
    assert warning and message.startswith("region 'westus9' is not in imgpub's list of Azure locations")
    assert "location" not in _problems(location="usgovvirginia")


def test_the_location_list_keeps_its_form():
    assert list(AZURE_LOCATIONS) == sorted(set(AZURE_LOCATIONS))
    assert all(re.fullmatch(LOCATION_PATTERN, name) for name in AZURE_LOCATIONS)
    assert 60 <= len(AZURE_LOCATIONS) <= 120


def test_the_location_list_is_pinned_to_its_sources():
    """Every region the Azure SDK itself names (azure-identity's RegionalAuthority) is in the list, but
    the retired Azure Germany regions and usgoviowa; the module names its documented source and date."""
    sdk = {str(r.value) for r in identity_enums.RegionalAuthority} - {"tryautodetect"}
    retired = {"germanycentral", "germanynortheast", "usgoviowa"}
    assert sdk - retired <= set(AZURE_LOCATIONS)
    assert not retired & set(AZURE_LOCATIONS)
    source = (Path(__file__).parents[2] / "providers/azure/src/imgpub_azure/locations.py").read_text()
    assert "https://learn.microsoft.com/azure/reliability/regions-list" in source and "2025-09-23" in source
    documented_2025_09 = {
        "austriaeast",
        "belgiumcentral",
        "chilecentral",
        "denmarkeast",
        "indonesiacentral",
        "israelcentral",
        "italynorth",
        "malaysiawest",
        "mexicocentral",
        "newzealandnorth",
        "polandcentral",
        "qatarcentral",
        "spaincentral",
        "swedencentral",
        "westus3",
    }
    assert documented_2025_09 <= set(AZURE_LOCATIONS)
