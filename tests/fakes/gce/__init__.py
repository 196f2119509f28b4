"""The fake Compute Engine images API (server.py), split by concept: the compute v1 contract every
request is checked against (contract.py), images (images.py), operations (operations.py) and what
the fake remembers (state.py)."""

from fakes.gce.contract import ApiError
from fakes.gce.server import FakeGce

__all__ = ["ApiError", "FakeGce"]
