"""--replace: the old AMIs of a version make way for the new ones, with the shortest gap and a way back.

1. The new snapshot is uploaded first (the long step, the likeliest to fail): until it is complete
   the old AMIs and their snapshots are untouched.
2. Before anything is deregistered, each old AMI is recorded in the journal: the RegisterImage
   parameters that make it again from its snapshots (UefiData included), its launch permissions and
   its deprecation time.
3. AMI names are unique per account and region, and the new AMI takes the old one's name, so in each
   region the old AMI of that name is deregistered right before RegisterImage (or CopyImage) of the
   new one; old AMIs with other names go right after the new one is available.
4. If making the new AMI fails after that (the call, or the AMI ending `failed`), the new one is
   removed (when this run made it: one adopted from another run is that run's) and the old one
   registered again from its kept snapshots with its recorded parameters
   and permissions (it gets a new id); if that fails too, the error says what is kept and what to run.
5. The old snapshots are deleted only once every new AMI (home and copies) is available. Until then
   the journal keeps them, so a run that stops in between deletes them next time (and a run on
   another machine, without this journal, finds them as orphans: orphans.py).

Two runs replacing the same version at once: each records the old AMIs; the second DeregisterImage
and DeleteSnapshot find them gone (done); the second RegisterImage finds the name taken by the
first run's AMI of the same digest and adopts it (register.make_image).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from imgpub.errors import TargetError
from imgpub.journal import Journal
from imgpub.progress import Progress
from imgpub_aws.errors import Caller, with_note
from imgpub_aws.inventory import snapshot_ids
from imgpub_aws.ledger import Ledger
from imgpub_aws.register import recorded_params, register_image, wait_available
from imgpub_aws.removal import delete_snapshot, deregister
from imgpub_aws.replicate import Make
from imgpub_aws.share import current_permissions

JOURNAL_KEY = "replace"


@dataclass
class Retired:
    """An old AMI that --replace removes, and what it takes to bring it back."""

    region: str
    image_id: str
    name: str
    snapshots: list[str]
    params: dict[str, Any]
    permissions: list[dict[str, str]] = field(default_factory=list)
    deprecation: str | None = None
    deregistered: bool = False


class Retirement:
    def __init__(
        self,
        ec2: Callable[[str], Any],
        call: Caller,
        journal: Journal,
        progress: Progress,
        *,
        name: str,
        ledger: Ledger,
    ) -> None:
        self.ec2, self.call, self.journal, self.progress = ec2, call, journal, progress
        self.name = name
        self.ledger = ledger
        """The new AMIs' name."""
        self._lock = threading.Lock()
        saved = journal.get(JOURNAL_KEY) or []
        self.retired: list[Retired] = [Retired(**r) for r in saved]

    def record(self, old: list[tuple[str, dict[str, Any]]]) -> None:
        """Write down every old AMI (parameters, permissions) before anything is deregistered."""
        known = {r.image_id for r in self.retired}
        for region, img in old:
            if img["ImageId"] in known:
                continue
            ec2 = self.ec2(region)
            self.retired.append(
                Retired(
                    region,
                    img["ImageId"],
                    img.get("Name") or "",
                    snapshot_ids(img),
                    recorded_params(img, self._uefi_data(ec2, region, img)),
                    current_permissions(ec2, self.call, region, img["ImageId"]),
                    img.get("DeprecationTime"),
                )
            )
        self._save()

    def swap(self, region: str, make: Make, operation: str) -> dict[str, Any]:
        """Make the new AMI in `region` in place of the old ones there; returns it once available."""
        ec2 = self.ec2(region)
        with self._lock:
            olds = [r for r in self.retired if r.region == region and not r.deregistered]
        clashing = [r for r in olds if r.name == self.name]
        for r in clashing:
            self._deregister(r)
        made: str | None = None
        try:
            made = make()
            image = wait_available(ec2, self.call, region, made, operation)
        except TargetError as exc:
            if not clashing:
                raise
            raise self._restore(exc, region, clashing, made) from exc
        for r in olds:
            if not r.deregistered:
                self._deregister(r)
        return image

    def finish(self, regions: Collection[str]) -> bool:
        """The new AMIs in `regions` are available: remove what is left of the old ones there,
        snapshots last. Old AMIs elsewhere (an optional region whose copy failed) stay, and stay
        recorded: the old AMI may be all that region has. True when anything was removed."""
        done = [r for r in self.retired if r.region in regions]
        for r in done:
            if not r.deregistered:
                self._deregister(r)
        for r in done:
            ec2 = self.ec2(r.region)
            for snap in r.snapshots:
                if delete_snapshot(ec2, self.call, r.region, snap) == "in use":
                    # an AMI uses it again (registered from it by hand, or brought back): not ours
                    self.progress.note(f"kept snapshot {snap} in {r.region}: an AMI uses it")
            with self._lock:
                self.retired.remove(r)
            self._save()
            self.progress.note(f"deleted the snapshots of replaced {r.image_id} in {r.region}")
        return bool(done)

    # -- steps ----------------------------------------------------------------------------------
    def _uefi_data(self, ec2: Any, region: str, img: dict[str, Any]) -> str | None:
        if img.get("BootMode") not in ("uefi", "uefi-preferred"):
            return None
        resp = self.call(
            "DescribeImageAttribute",
            region,
            lambda: ec2.describe_image_attribute(ImageId=img["ImageId"], Attribute="uefiData"),
        )
        value = (resp.get("UefiData") or {}).get("Value")
        return str(value) if value else None

    def _deregister(self, r: Retired) -> None:
        # gone already: deregistered by hand, by another run replacing it too, or by a retry of ours
        deregister(self.ec2(r.region), self.call, r.region, r.image_id)
        with self._lock:
            r.deregistered = True
        self._save()
        self.progress.note(f"deregistered {r.image_id} in {r.region} (--replace)")

    def _restore(self, exc: TargetError, region: str, olds: list[Retired], made: str | None) -> TargetError:
        """Take the failed new AMI away and register the old ones again; the note says what happened."""
        ec2 = self.ec2(region)
        notes = []
        if made is not None and self.ledger.ours(made):  # an adopted AMI is another run's to remove
            try:
                deregister(ec2, self.call, region, made)
            except TargetError as err:
                notes.append(f"the new AMI {made} could not be deregistered ({err.message})")
        for r in olds:
            try:
                image_id = register_image(ec2, self.call, region, r.params, self.ledger)
                self._reapply(ec2, region, image_id, r)
            except TargetError as err:
                notes.append(
                    f"the replaced AMI {r.image_id} could not be registered again ({err.message}); "
                    f"its snapshots {', '.join(r.snapshots)} are kept, its parameters are in the journal: "
                    "re-run publish --replace, or register them again with `aws ec2 register-image "
                    f"--region {region} --name {r.name!r} --block-device-mappings ...`"
                )
                continue
            with self._lock:
                self.retired.remove(r)
            self._save()
            notes.append(f"the replaced AMI {r.image_id} is registered again as {image_id}")
        return with_note(exc, "; ".join(notes))

    def _reapply(self, ec2: Any, region: str, image_id: str, r: Retired) -> None:
        if r.permissions:
            self.call(
                "ModifyImageAttribute",
                region,
                partial(
                    ec2.modify_image_attribute, ImageId=image_id, LaunchPermission={"Add": r.permissions}
                ),
            )
        when = datetime.fromisoformat(r.deprecation.replace("Z", "+00:00")) if r.deprecation else None
        if when is not None and when > datetime.now(UTC):
            self.call(
                "EnableImageDeprecation",
                region,
                partial(ec2.enable_image_deprecation, ImageId=image_id, DeprecateAt=when),
            )

    def _save(self) -> None:
        with self._lock:
            records = [asdict(r) for r in self.retired]
        if records:
            self.journal.update({JOURNAL_KEY: records})
        else:
            self.journal.delete(JOURNAL_KEY)
