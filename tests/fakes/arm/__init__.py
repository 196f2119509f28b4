"""The fake Azure Resource Manager (Microsoft.Compute): a server held to the SDK's contract.

server.py   FakeArm: HTTPS, routing, resources, failure modes (failed LROs, lag, throttling)
contract.py the azure-mgmt-compute models and pinned api-versions, checked on every body
rules.py    ARM's documented rules beyond the models (names, tags, IDs, encryption sets, sources)
operations.py / disks.py  long-running operations; disk access for direct upload
views.py / http.py  resources as ARM returns them; the error document and the request handler
"""

from fakes.arm.contract import check_body, unknown_fields
from fakes.arm.server import ArmError, Call, FakeArm

__all__ = ["ArmError", "Call", "FakeArm", "check_body", "unknown_fields"]
