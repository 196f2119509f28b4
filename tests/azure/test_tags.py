"""image.labels become Azure tags on every resource imgpub makes, by Azure's tag rules; a label or
tag Azure cannot take is a clear error at its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgpub.identity import TAG_DIGEST, TAG_MANAGED, TAG_NAME, TAG_VERSION
from imgpub.provider import ImageInfo
from imgpub_azure import AzureProvider, AzureSettings

SUB = "00000000-0000-0000-0000-0000000000a1"
BASE = {
    "name": "az",
    "subscription_id": SUB,
    "resource_group": "rg",
    "location": "westeurope",
    "storage_account": "acct",
}


def _problems(labels: dict[str, str], tags: dict[str, str]) -> dict[str, str]:
    image = ImageInfo(
        name="golden",
        version="1",
        arch="x86_64",
        boot="uefi",
        virtual_size=1 << 30,
        content_digest="c",
        labels=labels,
    )
    settings = AzureSettings.model_validate({**BASE, "tags": tags})
    return {p.field: p.message for p in AzureProvider().check(image, settings) if not p.warning}


def test_labels_and_tags_reach_every_resource(stack, disk, info):
    settings = stack.settings(
        upload="managed-disk",
        storage_account=None,
        blob_endpoint=None,
        keep_upload=True,
        gallery={"name": "g1"},
        tags={"cost-center": "42", "team": "images"},
    )
    image = info(labels={"team": "platform", "os": "ubuntu"}, tpm=True)
    ctx = stack.context(settings, image)
    stack.provider().publish(image, settings, disk, ctx)

    wanted = {"team": "images", "os": "ubuntu", "cost-center": "42"}  # the target's tag wins over the label
    identity = {TAG_NAME: "golden", TAG_VERSION: "1.2.3", TAG_DIGEST: ctx.digest, TAG_MANAGED: "imgpub"}
    for rest in (
        "images/golden-1.2.3",
        "galleries/g1/images/golden/versions/1.2.3",
        f"disks/{stack.upload_disk(settings)}",
    ):
        assert stack.arm.get(rest)["tags"] == {**wanted, **identity}, rest
    holders = {**wanted, TAG_NAME: "golden", TAG_MANAGED: "imgpub"}
    assert stack.arm.get("galleries/g1/images/golden")["tags"] == holders
    assert stack.arm.get("galleries/g1")["tags"] == holders


def test_tags_azure_cannot_take_are_errors():
    assert _problems({"team": "a"}, {"Team": "b"}) == {
        "tags.Team": "tag 'Team' is the same Azure tag as label 'team' (tag names are case-insensitive)"
    }
    assert _problems({}, {"Env": "a", "env": "b"}) == {
        "tags.env": "tag 'env' is the same Azure tag as tag 'Env' (tag names are case-insensitive)"
    }
    assert _problems({}, {"a/b": "x"}) == {
        "tags.a/b": "Azure tag names cannot contain < > % & \\ ? / or control characters ('a/b')"
    }
    assert _problems({}, {"imgpub:digest": "x"}) == {
        "tags.imgpub:digest": "tag names starting with 'imgpub:' are reserved for imgpub"
    }
    assert _problems({}, {"IMGPUB:Name": "x"}) == {
        "tags.IMGPUB:Name": "tag names starting with 'imgpub:' are reserved for imgpub"
    }
    assert _problems({}, {"n" * 513: "x"}) == {
        f"tags.{'n' * 513}": "Azure tag names take 1-512 characters (513)"
    }
    assert _problems({}, {"k": "v" * 257}) == {"tags.k": "Azure tag values take at most 256 characters (257)"}
    many = {f"label{i}": "x" for i in range(40)}
    assert _problems(many, {f"tag{i}": "y" for i in range(7)}) == {
        "tags": "51 tags with image.labels and imgpub's 4; Azure takes 50 per resource"
    }
    assert _problems(many, {f"tag{i}": "y" for i in range(6)}) == {}
    assert _problems({"team": "a"}, {"team": "b"}) == {}  # the very same name: the target's tag wins


def test_a_tag_problem_points_at_its_line(tmp_path):
    from imgpub.errors import ManifestError
    from imgpub.manifest import load_manifest
    from imgpub.pipeline import validate

    quickstart = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "disk.qcow2"
    path = tmp_path / "imgpub.yaml"
    path.write_text(
        "image:\n"
        "  name: demo\n"
        '  version: "1.0.0"\n'
        f"  source: {quickstart}\n"
        "  labels: {cost.center: a}\n"
        "targets:\n"
        "  - name: azure\n"
        "    provider: azure\n"
        f"    subscription_id: {SUB}\n"
        "    resource_group: images\n"
        "    location: westeurope\n"
        "    storage_account: imgpubuploads\n"
        "    tags:\n"
        "      team: x\n"
        "      Cost.Center: b\n"
    )
    with pytest.raises(ManifestError) as caught:
        validate(load_manifest(path, env={}))
    assert str(caught.value) == (
        f"{path}:15:20: targets[0].tags[\"Cost.Center\"]: tag 'Cost.Center' is the same Azure tag as label "
        "'cost.center' (tag names are case-insensitive)"
    )


def test_changed_labels_reach_what_is_already_published(stack, disk, info):
    settings = stack.settings(gallery={"name": "g1"})
    provider = stack.provider()
    before = info(labels={"team": "platform"})
    provider.publish(before, settings, disk, stack.context(settings, before))
    stack.arm.get("images/golden-1.2.3")["tags"]["owner"] = "someone else"  # a tag imgpub did not set
    pages = len(stack.proxy.pages())

    after = info(labels={"team": "images", "os": "ubuntu"})
    ctx = stack.context(settings, after)
    assert ctx.digest == stack.context(settings, before).digest  # labels are not part of the identity
    assert (
        "image golden-1.2.3 lacks tags team=images, os=ubuntu" in provider.status(after, settings, ctx).drift
    )
    plan = provider.plan(after, settings, ctx)
    assert [(a.kind, a.resource, a.detail) for a in plan.actions] == [
        ("tag", "image golden-1.2.3", "team=images, os=ubuntu"),
        ("tag", "gallery image version g1/golden/1.2.3", "team=images, os=ubuntu"),
    ]
    assert provider.publish(after, settings, disk, ctx).changed

    image_tags = stack.arm.get("images/golden-1.2.3")["tags"]
    assert (
        image_tags["team"] == "images"
        and image_tags["os"] == "ubuntu"
        and image_tags["owner"] == "someone else"
    )
    assert stack.arm.get("galleries/g1/images/golden/versions/1.2.3")["tags"]["team"] == "images"
    assert len(stack.proxy.pages()) == pages
    assert stack.arm.count("PATCH", r"/images/golden-1\.2\.3$") == 1
    assert provider.plan(after, settings, stack.context(settings, after)).up_to_date
    assert provider.status(after, settings, stack.context(settings, after)).drift == []
