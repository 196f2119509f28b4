"""The exact version in a GCE label: escaped into what a label value holds, and read back exactly."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from imgpub.identity import LABEL_VERSION, label_safe
from imgpub_gcp.versions import LABEL_EXACT, decode, encode, guess, version_of

LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")


@given(st.text(min_size=1, max_size=30))
@settings(max_examples=300)
def test_every_version_that_fits_reads_back_exactly(version: str) -> None:
    value = encode(version)
    if value is None:
        assert len(version.encode()) * 3 > 63, "only a long version may not fit"
        return
    assert LABEL_VALUE.fullmatch(value)
    assert decode(value) == version


def test_escaped_forms() -> None:
    assert encode("1.2.0-rc.1") == "1_2e2_2e0-rc_2e1"
    assert encode("V2_0+b") == "_562_5f0_2bb"
    assert encode("20261129") == "20261129"
    assert encode("1." * 20) is None  # 80 characters once escaped
    assert decode("1_2e2_2e0-rc_2e1") == "1.2.0-rc.1"
    assert decode("1_2") is None and decode("A") is None and decode("_ff") is None  # not encode's


def test_a_label_safe_version_is_guessed_back_when_there_is_no_exact_label() -> None:
    assert guess("1-2-0") == "1.2.0"
    assert guess("v10-0-3-rc1") == "v10.0.3-rc1"
    assert guess("1-2-0-rc-1") == "1.2.0-rc-1"  # hyphens after the patch number stay
    assert guess("2026-01-15") == "2026-01-15"  # a leading zero: not a semantic version
    assert guess("build-42") == "build-42"


def test_the_exact_label_wins_only_when_it_agrees_with_imgpub_version() -> None:
    exact = encode("1.2.0-RC.1")
    assert exact is not None
    assert version_of({LABEL_VERSION: label_safe("1.2.0-RC.1"), LABEL_EXACT: exact}) == ("1.2.0-RC.1", True)
    assert version_of({LABEL_VERSION: "1-2-0", LABEL_EXACT: exact}) == ("1.2.0", False)  # edited by hand
    assert version_of({LABEL_VERSION: "1-2-0"}) == ("1.2.0", False)
    assert version_of({LABEL_EXACT: exact}) is None
