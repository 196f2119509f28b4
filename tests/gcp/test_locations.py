"""The region and location lists kept in imgpub_gcp.locations, pinned to the discovery documents
google-api-python-client ships (their regional `endpoints`), and checked for their own form."""

from __future__ import annotations

import re

from fakes.gce.contract import discovery
from imgpub_gcp.locations import (
    GCE_REGIONS,
    GCS_DUAL_REGIONS,
    GCS_MULTI_REGIONS,
    GCS_ONLY_REGIONS,
    LOCATION_PATTERN,
    REGION_PATTERN,
    STORAGE_LOCATIONS,
)


def endpoint_locations(api: str) -> set[str]:
    return {e["location"] for e in discovery(api).get("endpoints", [])}


def test_gce_regions_are_the_compute_v1_regional_endpoints() -> None:
    doc = discovery("compute.v1")
    assert doc["revision"] >= "20261106"
    assert endpoint_locations("compute.v1") == GCE_REGIONS


def test_every_cloud_storage_regional_endpoint_is_a_known_storage_location() -> None:
    storage = endpoint_locations("storage.v1")
    assert storage <= STORAGE_LOCATIONS
    assert storage - GCE_REGIONS - GCS_MULTI_REGIONS == GCS_ONLY_REGIONS


def test_the_lists_have_the_form_of_their_kind() -> None:
    for region in GCE_REGIONS | GCS_ONLY_REGIONS:
        assert re.fullmatch(REGION_PATTERN, region), region
    for location in GCS_MULTI_REGIONS:
        assert re.fullmatch(r"[a-z]+", location), location
    for location in GCS_DUAL_REGIONS:
        assert re.fullmatch(r"[a-z]+[0-9]+", location), location
    for location in STORAGE_LOCATIONS:
        assert re.fullmatch(LOCATION_PATTERN, location), location
    kinds = [GCE_REGIONS, GCS_ONLY_REGIONS, GCS_MULTI_REGIONS, GCS_DUAL_REGIONS]
    assert sum(len(k) for k in kinds) == len(STORAGE_LOCATIONS)  # no name is of two kinds
