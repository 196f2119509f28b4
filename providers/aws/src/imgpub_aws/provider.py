"""AwsProvider: what exists, what to do, and doing it (upload, register, copy, share) idempotently.

A publish first looks up imgpub's AMIs by tag in every region. A finished publish changes nothing; a
run that stopped between steps continues (a completed snapshot is found by its digest tag, a pending
one through the journal); the same name and version with another digest is a conflict.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from imgpub.errors import ImageConflictError, TargetError
from imgpub.provider import (
    Action,
    Artifact,
    Context,
    DiskImage,
    ImageInfo,
    Plan,
    Problem,
    Provider,
    Published,
    Release,
    RetireAction,
    Status,
    TargetSettings,
)
from imgpub_aws.backfill import reconcile
from imgpub_aws.checks import problems
from imgpub_aws.clients import AwsClients
from imgpub_aws.ebs_upload import GIB, JOURNAL_KEY, EbsUploader, volume_gib
from imgpub_aws.errors import Caller
from imgpub_aws.inventory import Found, find_region, find_snapshot, snapshot_ids
from imgpub_aws.kms import key_for
from imgpub_aws.ledger import Ledger
from imgpub_aws.orphans import delete_leftovers, leftovers, survey, why
from imgpub_aws.recovery import clear_failed, wrecks
from imgpub_aws.register import register_image, register_params, wait_available
from imgpub_aws.releases import list_releases
from imgpub_aws.removal import delete_snapshot
from imgpub_aws.replace import Retirement
from imgpub_aws.replicate import CopyRequest, Swap, copy_images, tag_image
from imgpub_aws.retire import retire
from imgpub_aws.s3_import import S3Importer
from imgpub_aws.settings import AwsSettings
from imgpub_aws.share import share_drift, share_image, wanted_permissions
from imgpub_aws.tags import all_tags, ami_name, image_name, tag_dict


class _Run:
    """One target's clients, names and tags for one call of plan/publish/status."""

    def __init__(self, image: ImageInfo, settings: AwsSettings, ctx: Context) -> None:
        self.image, self.settings, self.ctx = image, settings, ctx
        self.clients = AwsClients(settings)
        self.call = Caller(ctx.target, ctx.retry)
        self.name = image_name(image, settings)
        self.ami_name = ami_name(image, settings)
        self.tags = all_tags(image, settings, ctx.digest)
        self.warnings: list[str] = []
        self.ledger = Ledger()
        """What this run made (the only things its failure paths remove) and what it adopted."""

    def retirement(self) -> Retirement:
        return Retirement(
            self.ec2, self.call, self.ctx.journal, self.ctx.progress, name=self.ami_name, ledger=self.ledger
        )

    def ec2(self, region: str) -> Any:
        return self.clients.client("ec2", region)

    def find_all(self) -> dict[str, Found]:
        """imgpub's AMIs of this name+version per region; an optional region that fails is left out."""
        regions = self.settings.all_regions

        def one(region: str) -> Found | None:
            try:
                return find_region(self.ec2(region), self.call, region, self.name, self.image.version)
            except TargetError as exc:
                if region not in self.settings.optional_regions:
                    raise
                self.warnings.append(f"optional region {region} skipped: {exc.message}")
                return None

        with ThreadPoolExecutor(min(8, len(regions))) as pool:
            found = dict(zip(regions, pool.map(one, regions), strict=True))
        return {r: f for r, f in found.items() if f is not None}

    def conflicts(self, found: dict[str, Found]) -> list[tuple[str, dict[str, Any]]]:
        return [(r, img) for r, f in found.items() for img in f.others(self.ctx.digest)]

    def conflict_text(self, conflicts: list[tuple[str, dict[str, Any]]]) -> str:
        where = ", ".join(f"{img['ImageId']} in {r}" for r, img in conflicts)
        return f"{self.name} {self.image.version} is already published with other content ({where})"

    def snapshot(self, disk: DiskImage) -> tuple[str, int]:
        """A completed snapshot for this digest in the home region: found, resumed or uploaded."""
        region, s = self.settings.region, self.settings
        existing = find_snapshot(self.ec2(region), self.call, region, self.ctx.digest)
        if existing is not None:
            self.ctx.progress.note(f"reusing uploaded snapshot {existing['SnapshotId']}")
            return str(existing["SnapshotId"]), int(existing["VolumeSize"])
        size = volume_gib(disk.virtual_size)
        key = key_for(s, region)
        if s.upload == "s3-import":
            importer = S3Importer(
                self.clients,
                self.call,
                region,
                self.ctx.progress,
                self.ctx.journal,
                self.ledger,
                bucket=s.s3_bucket or "",
                prefix=s.s3_prefix,
                digest=self.ctx.digest,
                tags=self.tags,
                encrypted=s.encrypted,
                kms_key_id=key,
            )
            return importer.upload(disk), size
        uploader = EbsUploader(
            self.clients,
            self.call,
            region,
            self.ctx.journal,
            self.ctx.progress,
            concurrency=s.concurrency,
            digest=self.ctx.digest,
            description=f"imgpub {self.name} {self.image.version}",
            tags=self.tags,
            encrypted=s.encrypted,
            kms_key_id=key,
            ledger=self.ledger,
        )
        result = uploader.upload(disk, size)
        self.ctx.log.info(
            "uploaded %d blocks (%d bytes) to %s", result.blocks_sent, result.bytes_sent, result.snapshot_id
        )
        return result.snapshot_id, size

    def register(self, snapshot_id: str, size: int, swap: Swap) -> dict[str, Any]:
        region = self.settings.region
        params = register_params(
            self.image,
            self.settings,
            name=self.ami_name,
            snapshot_id=snapshot_id,
            volume_size=size,
            tags=self.tags,
        )
        self.ctx.progress.stage(f"register {region}")
        ec2 = self.ec2(region)
        return swap(
            region, lambda: register_image(ec2, self.call, region, params, self.ledger), "RegisterImage"
        )

    def drop_upload(self, snapshot_id: str, home: dict[str, Any]) -> None:
        """This run's upload, when the AMI is another run's (adopted) and uses its own: delete it."""
        region = self.settings.region
        if not self.ledger.ours(snapshot_id) or snapshot_id in snapshot_ids(home):
            return
        if delete_snapshot(self.ec2(region), self.call, region, snapshot_id) == "deleted":
            self.ctx.progress.note(
                f"deleted this run's snapshot {snapshot_id}: {home['ImageId']} of another run uses its own"
            )

    def sweep(self, found: dict[str, Found], regions: list[str], skip: set[str]) -> bool:
        """Delete this version's orphans (orphans.py) where this version's AMI is available."""
        deleted = False
        for region in regions:
            if region in found:
                ec2, home = self.ec2(region), region == self.settings.region
                orphans = leftovers(ec2, self.call, found[region], self.ctx.digest, home=home, skip=skip)
                deleted = (
                    delete_leftovers(ec2, self.call, self.ctx.progress, orphans, self.ctx.digest) or deleted
                )
        return deleted

    def copy_request(self, home: dict[str, Any]) -> CopyRequest:
        s = self.settings
        keys = {r: k for r in s.all_regions if r != s.region and (k := key_for(s, r))}
        return CopyRequest(
            source_region=s.region,
            source_image_id=home["ImageId"],
            name=self.ami_name,
            description=home.get("Description") or "",
            digest=self.ctx.digest,
            tags=self.tags,
            encrypted=s.encrypted,
            keys=keys,
        )

    def drift(self, f: Found, img: dict[str, Any], created: Any) -> list[str]:
        """Tags the AMI or its snapshots lack, launch permissions, deprecation."""
        region, have = f.region, tag_dict(img)
        drift = [
            f"{region}: {img['ImageId']} lacks tag {k}={v}" for k, v in self.tags.items() if have.get(k) != v
        ]
        for snap in snapshot_ids(img):
            tags = tag_dict(f.snapshots.get(snap, {}))
            lacking = [f"{k}={v}" for k, v in self.tags.items() if tags.get(k) != v]
            if lacking:
                drift.append(f"{region}: snapshot {snap} of {img['ImageId']} lacks tags {', '.join(lacking)}")
        return drift + share_drift(
            self.ec2(region), self.call, region, img, self.settings, created, self.ctx.now()
        )

    def artifacts(self, images: dict[str, dict[str, Any]]) -> list[Artifact]:
        return [
            Artifact(
                "ami",
                img["ImageId"],
                region,
                extra={"name": img.get("Name"), "snapshots": snapshot_ids(img), "digest": self.ctx.digest},
            )
            for region, img in images.items()
        ]


class AwsProvider(Provider[AwsSettings]):
    name: ClassVar[str] = "aws"
    settings_model: ClassVar[type[TargetSettings]] = AwsSettings

    def check(self, image: ImageInfo, settings: AwsSettings) -> list[Problem]:
        return problems(image, settings)

    def plan(self, image: ImageInfo, settings: AwsSettings, ctx: Context) -> Plan:
        run = _Run(image, settings, ctx)
        found = run.find_all()
        plan = Plan(ctx.target, self.name)
        plan.actions += [
            Action("delete", w.resource, f"{w.detail}: remove, then make again", w.region)
            for w in wrecks(found)
        ]
        conflicts = run.conflicts(found)
        if conflicts:
            plan.conflict = run.conflict_text(conflicts)
            plan.actions += [
                Action(
                    "replace",
                    img["ImageId"],
                    "deregister as the new AMI takes its place; its snapshots go once all are available",
                    r,
                )
                for r, img in conflicts
            ]
        retired = run.retirement().retired
        plan.actions += [
            Action("delete", ", ".join(r.snapshots), f"snapshots of replaced {r.image_id}", r.region)
            for r in retired
            if r.deregistered
        ]
        skip = {s for r in retired for s in r.snapshots}
        plan.actions += [
            Action("delete", o.snapshot_id, f"orphan snapshot {why(o, ctx.digest)}", r)
            for r, f in found.items()
            for o in leftovers(run.ec2(r), run.call, f, ctx.digest, home=r == settings.region, skip=skip)
        ]
        home = found[settings.region].matching(ctx.digest)
        created = home.get("CreationDate") if home else None
        if home is None:
            snap = find_snapshot(run.ec2(settings.region), run.call, settings.region, ctx.digest)
            pending = ctx.journal.get(JOURNAL_KEY) or {}
            if snap is None and pending.get("digest") == ctx.digest:
                detail = f"resume pending snapshot {pending.get('snapshot_id')}"
                plan.actions.append(Action("upload", "snapshot", detail, settings.region))
            elif snap is None:
                detail = f"{settings.upload} of a {image.virtual_size / GIB:.2f} GiB disk"
                plan.actions.append(Action("upload", "snapshot", detail, settings.region))
            plan.actions.append(Action("create", "ami", f"register {run.ami_name}", settings.region))
        for region, f in found.items():
            img = f.matching(ctx.digest)
            if img is not None:
                plan.existing += run.artifacts({region: img})
                plan.actions += [
                    Action("share" if "permission" in d else "tag", img["ImageId"], d, region)
                    for d in run.drift(f, img, created)
                ]
            elif region != settings.region:
                plan.actions.append(
                    Action("copy", "ami", f"copy {run.ami_name} from {settings.region}", region)
                )
            if img is None and (wanted_permissions(settings) or settings.deprecate_after):
                plan.actions.append(Action("share", "ami", "launch permissions / deprecation", region))
        return plan

    def publish(self, image: ImageInfo, settings: AwsSettings, disk: DiskImage, ctx: Context) -> Published:
        run = _Run(image, settings, ctx)
        found = run.find_all()
        conflicts = run.conflicts(found)
        if conflicts and not ctx.replace:
            raise ImageConflictError(ctx.target, run.conflict_text(conflicts))
        changed = clear_failed(
            run.ec2, run.call, ctx.progress, found, home=settings.region, digest=ctx.digest
        )
        retirement = run.retirement()
        images = {r: img for r, f in found.items() if (img := f.matching(ctx.digest)) is not None}
        for region, img in images.items():
            if img.get("State") != "available":  # made by another run now, or by one that stopped
                ctx.progress.note(
                    f"{region}: waiting for {img['ImageId']}, made by an earlier or another run"
                )
                images[region] = wait_available(run.ec2(region), run.call, region, img["ImageId"])
        if settings.region not in images:
            snapshot_id, size = run.snapshot(disk)  # the old AMIs stay untouched until this is done
            retirement.record(conflicts)
            images[settings.region] = run.register(snapshot_id, size, retirement.swap)
            run.drop_upload(snapshot_id, images[settings.region])
        else:
            retirement.record(conflicts)
        home = images[settings.region]
        missing = [r for r in found if r not in images]
        warnings = run.warnings
        if missing:
            outcome = copy_images(
                run.clients,
                run.call,
                ctx.progress,
                run.copy_request(home),
                required=[r for r in missing if r in settings.regions],
                optional=[r for r in missing if r not in settings.regions],
                ledger=run.ledger,
                swap=retirement.swap,
            )
            images.update(outcome.images)
            warnings += outcome.warnings
        # made here, not adopted from another run that published the same image at the same time
        changed = changed or any(run.ledger.ours(img["ImageId"]) for img in images.values())
        for region, img in images.items():
            ec2 = run.ec2(region)
            changed = tag_image(ec2, run.call, region, img, run.tags) or changed
            done = share_image(ec2, run.call, region, img, settings, home.get("CreationDate"), now=ctx.now())
            for line in done:
                ctx.progress.note(f"{region}: {line}")
            changed = changed or bool(done)
        kept = {s for r in retirement.retired for s in r.snapshots}
        changed = retirement.finish(images) or changed
        changed = run.sweep(found, list(images), kept) or changed
        warnings += run.ledger.notes()
        return Published(ctx.target, self.name, run.artifacts(images), changed=changed, warnings=warnings)

    def status(self, image: ImageInfo, settings: AwsSettings, ctx: Context) -> Status:
        run = _Run(image, settings, ctx)
        found = run.find_all()
        status = Status(ctx.target, self.name)
        status.drift += [f"{w} (not checked)" for w in run.warnings]
        status.drift += [w.drift for w in wrecks(found)]
        for region, img in run.conflicts(found):
            status.drift.append(
                f"{region}: {img['ImageId']} has digest {tag_dict(img).get('imgpub:digest')}, "
                f"the manifest gives {ctx.digest}"
            )
        origin = found[settings.region].matching(ctx.digest) if settings.region in found else None
        created = origin.get("CreationDate") if origin else None
        for region, f in found.items():
            current = f.matching(ctx.digest)
            home = region == settings.region
            status.drift += survey(
                run.ec2(region), run.call, region, run.name, image.version, ctx.digest, current, home=home
            )
            if current is None:
                kind = "optional region" if region in settings.optional_regions else "region"
                status.drift.append(f"{region}: missing ({kind})")
                continue
            status.artifacts += run.artifacts({region: current})
            status.drift += run.drift(f, current, created)
        return status

    # -- every version: prune, status --all-versions, reconcile (releases.py, retire.py, backfill.py)
    def regions(self, settings: AwsSettings) -> list[str | None]:
        return list(settings.all_regions)

    # `name` is the manifest's image name; AWS tags its artifacts with the target's image_name when set
    def releases(self, name: str, settings: AwsSettings, ctx: Context) -> list[Release]:
        return list_releases(settings.image_name or name, settings, ctx)

    def retire(
        self,
        name: str,
        settings: AwsSettings,
        release: Release,
        action: RetireAction,
        ctx: Context,
        *,
        replacement: str | None,
    ) -> list[str]:
        return retire(settings.image_name or name, settings, release, action, ctx, replacement)

    def reconcile(self, name: str, settings: AwsSettings, release: Release, ctx: Context) -> list[str]:
        return reconcile(settings.image_name or name, settings, release, ctx)


__all__ = ["AwsProvider"]
