"""Reconcile one published version on AWS without uploading it again.

The regions that lack it get a CopyImage from a region that has it (the home region's AMI first),
with the per-region KMS keys and the image and snapshot TagSpecifications publish uses (replicate.py).
Then every AMI and its snapshots get the tags they lack (tags.py via replicate.tag_image), and the
launch permissions, snapshot permissions and deprecation the settings ask for (share.py). The
deprecation is the settings' time or, when a copy is deprecated sooner (by prune, or by hand), that
time: a copy made for a deprecated version is deprecated too, and nothing is postponed.

A region holding this version with other content (another digest) is left alone and named: that is
a conflict for `publish --replace`, not something reconcile may settle.
"""

from __future__ import annotations

from typing import Any

from imgpub.errors import TargetError
from imgpub.identity import TAG_DIGEST
from imgpub.provider import Context, Release
from imgpub_aws.kms import key_for
from imgpub_aws.ledger import Ledger
from imgpub_aws.releases import deprecation_origin, earliest_deprecation, release_tags, source_image
from imgpub_aws.replicate import CopyRequest, copy_images, tag_image
from imgpub_aws.scan import Account, scan
from imgpub_aws.settings import AwsSettings
from imgpub_aws.share import share_image
from imgpub_aws.tags import tag_dict

__all__ = ["reconcile"]


def reconcile(name: str, settings: AwsSettings, release: Release, ctx: Context) -> list[str]:
    account = Account(settings, ctx)
    scanned = scan(account, name, release.version)
    done = scanned.notes()
    holders: dict[str, dict[str, Any]] = {}
    conflicts: dict[str, str] = {}
    ours: list[dict[str, Any]] = []
    for region, found in scanned.catalogs.items():
        for img in found.images[release.version]:
            digest = tag_dict(img).get(TAG_DIGEST)
            if release.digest and digest != release.digest:
                conflicts[region] = f"{region}: {img['ImageId']} holds {release.version} with digest {digest}"
                continue
            ours.append(img)
            if img.get("State") == "available":
                holders.setdefault(region, img)
    source = source_image(settings, holders)
    if source is None:
        raise TargetError(ctx.target, f"{release.version}: no available AMI to copy or repair from")
    src_region, src = source
    tags = release_tags(name, release.version, release.digest, settings, src)
    missing = [r for r in scanned.catalogs if r not in holders and r not in conflicts]
    images = dict(holders)
    if missing:
        ledger = Ledger()
        outcome = copy_images(
            account.clients,
            account.call,
            ctx.progress,
            _copy_request(settings, src_region, src, release, tags),
            required=[r for r in missing if r not in settings.optional_regions],
            optional=[r for r in missing if r in settings.optional_regions],
            ledger=ledger,
        )
        images.update(outcome.images)
        done += [
            f"{r}: copied {src['ImageId']} from {src_region} as {img['ImageId']}"
            for r, img in outcome.images.items()
        ]
        done += outcome.warnings + ledger.notes()
    earliest = earliest_deprecation(ours)
    created = deprecation_origin(settings, source, release.created)
    for region, img in images.items():
        ec2 = account.ec2(region)
        if tag_image(ec2, account.call, region, img, tags):
            done.append(f"{region}: tagged {img['ImageId']} and its snapshots")
        lines = share_image(
            ec2, account.call, region, img, settings, created, now=ctx.now(), earliest=earliest
        )
        done += [f"{region}: {line}" for line in lines]
    if conflicts:
        raise TargetError(
            ctx.target,
            f"{release.version}: {'; '.join(conflicts.values())}: other content, left alone (publish "
            "--replace settles it)" + (f"; done meanwhile: {'; '.join(done)}" if done else ""),
        )
    return done


def _copy_request(
    settings: AwsSettings, source_region: str, source: dict[str, Any], release: Release, tags: dict[str, str]
) -> CopyRequest:
    encrypted = settings.encrypted or any(
        m.get("Ebs", {}).get("Encrypted") for m in source.get("BlockDeviceMappings", [])
    )
    keys = {r: k for r in settings.all_regions if r != source_region and (k := key_for(settings, r))}
    return CopyRequest(
        source_region=source_region,
        source_image_id=source["ImageId"],
        name=source["Name"],
        description=source.get("Description") or "",
        digest=release.digest or tag_dict(source).get(TAG_DIGEST, ""),
        tags=tags,
        encrypted=bool(encrypted),
        keys=keys,
    )
