"""One set of local back ends for the end-to-end tests (tests/e2e/stack.py), started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e.stack import Clouds, running_clouds


@pytest.fixture(scope="session")
def clouds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clouds]:
    with running_clouds(tmp_path_factory.mktemp("e2e")) as stack:
        yield stack
    assert stack.gce.state.crashes == [], "the GCE fake crashed"
