"""Azure locations (regions) by their programmatic names, and the check of a location field.

The list is the "Programmatic name" column of https://learn.microsoft.com/azure/reliability/regions-list
(the public cloud; the page as of 2025-09-23), plus the sovereign clouds' regions from
https://learn.microsoft.com/azure/azure-government/documentation-government-get-started-connect-with-cli
(Azure Government) and https://docs.azure.cn/reliability/regions-list (Azure operated by 21Vianet),
plus the restricted regions that `az account list-locations` also lists (jioindiacentral,
jioindiawest, swedensouth). No Azure SDK ships the list: `az account list-locations -o tsv --query
"[].name"` on a subscription gives the current one. A well-formed name that is not here is a new
region: it passes with a warning (imgpub.names.region_problem), so a new region keeps working.
"""

from __future__ import annotations

import re

from imgpub.names import region_problem
from imgpub.provider import Problem

__all__ = ["AZURE_LOCATIONS", "LOCATION_PATTERN", "location_problem"]

AZURE_LOCATIONS: tuple[str, ...] = (
    "australiacentral", "australiacentral2", "australiaeast", "australiasoutheast", "austriaeast",
    "belgiumcentral", "brazilsouth", "brazilsoutheast", "canadacentral", "canadaeast", "centralindia",
    "centralus", "chilecentral", "chinaeast", "chinaeast2", "chinaeast3", "chinanorth", "chinanorth2",
    "chinanorth3", "denmarkeast", "eastasia", "eastus", "eastus2", "francecentral", "francesouth",
    "germanynorth", "germanywestcentral", "indonesiacentral", "israelcentral", "italynorth", "japaneast",
    "japanwest", "jioindiacentral", "jioindiawest", "koreacentral", "koreasouth", "malaysiawest",
    "mexicocentral", "newzealandnorth", "northcentralus", "northeurope", "norwayeast", "norwaywest",
    "polandcentral", "qatarcentral", "southafricanorth", "southafricawest", "southcentralus",
    "southeastasia", "southindia", "spaincentral", "swedencentral", "swedensouth", "switzerlandnorth",
    "switzerlandwest", "uaecentral", "uaenorth", "uksouth", "ukwest", "usdodcentral", "usdodeast",
    "usgovarizona", "usgovtexas", "usgovvirginia", "westcentralus", "westeurope", "westindia", "westus",
    "westus2", "westus3",
)  # fmt: skip

LOCATION_PATTERN = r"[a-z][a-z0-9]*"
"""A programmatic location name: lowercase letters and digits (no spaces: not the display name)."""
_FORM = "Azure locations are lowercase letters and digits without spaces, e.g. westeurope"
_SOURCE = "imgpub's list of Azure locations (learn.microsoft.com regions list, 2025-09)"
_OTHER_CLOUD = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+[a-z]?$")
"""eu-west-1, us-gov-west-1: an AWS region name."""


def location_problem(field: str, location: str) -> Problem | None:
    """None for a known location; an error for a malformed or misspelt one; a warning for a new one."""
    if _OTHER_CLOUD.match(location):  # a did-you-mean would only mislead here
        return Problem(
            field, f"{location!r} is not a region name: {_FORM} ({location!r} is an AWS-style region name)"
        )
    return region_problem(
        field, location, AZURE_LOCATIONS, pattern=LOCATION_PATTERN, form=_FORM, source=_SOURCE
    )
