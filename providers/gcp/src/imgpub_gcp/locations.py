"""Where Google Cloud keeps things: Compute Engine regions and Cloud Storage locations, kept in the code
(the provider must not need google-api-python-client) and pinned by tests to the documents below.

Checked with imgpub.names.region_problem: a malformed name or a typo of a known one is an error
with a did-you-mean; a well-formed name the lists do not hold yet is a warning (a new region).
"""

from __future__ import annotations

from imgpub.names import region_problem
from imgpub.provider import Problem

GCE_REGIONS = frozenset(
    {
        "africa-south1",
        "asia-east1",
        "asia-east2",
        "asia-northeast1",
        "asia-northeast2",
        "asia-northeast3",
        "asia-south1",
        "asia-south2",
        "asia-southeast1",
        "asia-southeast2",
        "asia-southeast3",
        "australia-southeast1",
        "australia-southeast2",
        "europe-central2",
        "europe-north1",
        "europe-north2",
        "europe-southwest1",
        "europe-west1",
        "europe-west10",
        "europe-west12",
        "europe-west2",
        "europe-west3",
        "europe-west4",
        "europe-west6",
        "europe-west8",
        "europe-west9",
        "me-central1",
        "me-central2",
        "me-west1",
        "northamerica-northeast1",
        "northamerica-northeast2",
        "northamerica-south1",
        "southamerica-east1",
        "southamerica-west1",
        "us-central1",
        "us-east1",
        "us-east4",
        "us-east5",
        "us-south1",
        "us-west1",
        "us-west2",
        "us-west3",
        "us-west4",
    }
)
"""Compute Engine regions (43), as the compute v1 discovery document revision 20261106 lists them in
its regional `endpoints` (the one google-api-python-client ships; the same names as the region table
of https://cloud.google.com/compute/docs/regions-zones). tests/gcp/test_locations.py keeps them equal."""

GCS_MULTI_REGIONS = frozenset({"asia", "eu", "us"})
GCS_DUAL_REGIONS = frozenset({"asia1", "eur4", "eur5", "eur7", "eur8", "nam4"})
"""Cloud Storage multi-regions and predefined dual-regions, https://cloud.google.com/storage/docs/locations."""
GCS_ONLY_REGIONS = frozenset({"us-west8"})
"""Regions with a Cloud Storage regional endpoint in storage v1 revision 20261009 but no Compute one."""
STORAGE_LOCATIONS = GCE_REGIONS | GCS_ONLY_REGIONS | GCS_MULTI_REGIONS | GCS_DUAL_REGIONS
KMS_LOCATIONS = STORAGE_LOCATIONS | {"global"}

REGION_PATTERN = r"[a-z]+-[a-z]+[1-9][0-9]*"
LOCATION_PATTERN = rf"{REGION_PATTERN}|[a-z]+[0-9]*"
LOCATION_FORM = (
    "a lowercase region such as 'us-central1', dual-region such as 'nam4' or multi-region such as 'us'"
)
SOURCE = "the Compute Engine regions and Cloud Storage locations imgpub knows"


def storage_location_problem(field: str, location: str) -> Problem | None:
    """An image storage location: a Cloud Storage region, dual-region or multi-region."""
    return region_problem(
        field, location, STORAGE_LOCATIONS, pattern=LOCATION_PATTERN, form=LOCATION_FORM, source=SOURCE
    )


def kms_location_problem(field: str, location: str) -> Problem | None:
    """A Cloud KMS key's location: a typo of a known location is an error; an unknown well-formed one
    passes silently (Cloud KMS has multi-regions of its own, such as nam6)."""
    problem = region_problem(
        field,
        location,
        KMS_LOCATIONS,
        pattern=LOCATION_PATTERN,
        form=LOCATION_FORM + " or 'global'",
        source=SOURCE,
    )
    return None if problem is None or problem.warning else problem
