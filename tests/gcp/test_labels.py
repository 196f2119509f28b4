"""GCE name and label rules, and the derived image name."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from imgpub_gcp.labels import derived_image_name, label_problem, name_problem, slug


@settings(deadline=None)  # a loaded CI machine must not turn into a failure
@given(st.text(max_size=100), st.text(max_size=30))
def test_derived_names_are_always_valid(name: str, version: str) -> None:
    derived = derived_image_name(name, version)
    assert name_problem(derived) is None, derived


def test_derived_name_reads_like_the_input() -> None:
    assert derived_image_name("Ubuntu Server", "24.04.1") == "ubuntu-server-24-04-1"
    assert derived_image_name("9front", "1") == "img-9front-1"
    assert slug("--") == "img"


def test_label_rules() -> None:
    assert label_problem("team", "") is None
    assert label_problem("a" * 63, "b" * 63) is None
    assert label_problem("a" * 64, "") is not None
    problem = label_problem("t", "ÜBER")
    assert problem is not None and re.search(r"value 'ÜBER'", problem)
