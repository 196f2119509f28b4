"""Region names: known, misspelt, malformed, or new (a warning, so new regions keep working)."""

from __future__ import annotations

import pytest

from imgpub.names import did_you_mean, region_problem

AWS_LIKE = {"ca-central-1", "eu-west-1", "eu-west-2", "us-east-1", "ap-southeast-1"}
AZURE_LIKE = {"westeurope", "eastus", "eastus2", "westus3"}


def aws(region: str) -> tuple[str, bool] | None:
    pattern, form = r"[a-z]{2}(-[a-z]+)+-\d+", "like eu-west-1"
    p = region_problem("region", region, AWS_LIKE, pattern=pattern, form=form, source="the list")
    return None if p is None else (p.message, p.warning)


def azure(region: str) -> tuple[str, bool] | None:
    form = "like westeurope"
    p = region_problem("location", region, AZURE_LIKE, pattern=r"[a-z]+\d*", form=form, source="x")
    return None if p is None else (p.message, p.warning)


def test_known_region_passes() -> None:
    assert aws("eu-west-1") is None and azure("eastus2") is None


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("ca-cnetral-1", "unknown region 'ca-cnetral-1'; did you mean 'ca-central-1'?"),
        ("eu-wset-1", "unknown region 'eu-wset-1'; did you mean 'eu-west-1'?"),
        ("EU-WEST-1", "'EU-WEST-1' is not a region name: like eu-west-1; did you mean 'eu-west-1'?"),
        ("eu_west_1", "'eu_west_1' is not a region name: like eu-west-1; did you mean 'eu-west-1'?"),
    ],
)
def test_typos_are_errors_with_a_suggestion(region: str, expected: str) -> None:
    assert aws(region) == (expected, False)


@pytest.mark.parametrize("region", ["ap-southeast-9", "mx-central-1", "eu-west-7"])
def test_a_well_formed_new_region_is_a_warning(region: str) -> None:
    message, warning = aws(region) or ("", False)
    assert warning and message == f"region {region!r} is not in the list; publishing anyway"


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("west europe", "'west europe' is not a region name: like westeurope; did you mean 'westeurope'?"),
        ("West Europe", "'West Europe' is not a region name: like westeurope; did you mean 'westeurope'?"),
        ("eu-west-1", "'eu-west-1' is not a region name: like westeurope"),
        ("westeruope", "unknown region 'westeruope'; did you mean 'westeurope'?"),
    ],
)
def test_azure_display_names_and_aws_codes_are_errors(location: str, expected: str) -> None:
    assert azure(location) == (expected, False)


def test_azure_new_numbered_location_is_a_warning() -> None:
    assert azure("westeurope2") == ("region 'westeurope2' is not in x; publishing anyway", True)


def test_did_you_mean() -> None:
    assert did_you_mean("regoins", ["regions", "region"]) == "; did you mean 'regions'?"
    assert did_you_mean("zzz", ["regions"]) == ""
