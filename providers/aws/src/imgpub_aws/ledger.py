"""What this run made, and what it found made by another run publishing the same image at once.

Two runs of one manifest may overlap (two CI jobs for one tag, on machines that share no state dir).
Neither may destroy the other's work, so every removal on a failure path, and the removal of an
upload this run turned out not to need, is limited to what the ledger says this run made: the
snapshot it started (or resumed from its own journal), the AMIs its RegisterImage or CopyImage
calls made. An AMI that another run made first (RegisterImage or CopyImage answered
`InvalidAMIName.Duplicate` and the AMI of that name carries this digest) is adopted, not made: the
result says it was published by another run.

`machine_nonce` keeps one random id per target in its journal: the ClientTokens and S3 keys made from
it are the same for every run on this machine (a re-run after a kill finds what the killed run
started) and differ from any other machine's, so two machines never share a pending snapshot,
an import or an S3 object.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

from imgpub.journal import Journal

NONCE_KEY = "ebs_token_nonce"
"""The journal key of the machine nonce (named when only the EBS upload used it)."""


def machine_nonce(journal: Journal) -> str:
    nonce = journal.get(NONCE_KEY)
    if nonce is None:
        nonce = uuid.uuid4().hex
        journal.update({NONCE_KEY: nonce})
    return str(nonce)


@dataclass(frozen=True)
class Adoption:
    region: str
    image_id: str
    operation: str


class Ledger:
    """Thread-safe: the copies run in parallel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: set[str] = set()
        self._adopted: list[Adoption] = []

    def made(self, resource_id: str) -> None:
        """This run created `resource_id` (an AMI, a snapshot, an S3 key)."""
        with self._lock:
            self._made.add(resource_id)

    def ours(self, resource_id: str) -> bool:
        with self._lock:
            return resource_id in self._made

    def adopt(self, region: str, image_id: str, operation: str) -> None:
        """`image_id` holds our AMI's name and digest, and another run made it."""
        with self._lock:
            self._adopted.append(Adoption(region, image_id, operation))

    def adopted(self) -> list[Adoption]:
        with self._lock:
            return list(self._adopted)

    def notes(self) -> list[str]:
        """One line per adopted AMI, for the result's warnings."""
        return [
            f"{a.region}: {a.image_id} was published by another run at the same time "
            f"(its {a.operation} came first); adopted it"
            for a in self.adopted()
        ]
