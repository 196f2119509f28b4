"""The sparse page-blob upload: zero pages skipped, 4 MiB limit, resume after interruption, throttling."""

from __future__ import annotations

import os
import subprocess

import pytest
from azure.storage.blob import BlobClient

from imgpub.errors import CloudError
from imgpub_azure.page_upload import MAX_PAGE, _Ranges, unique_id


def _blob(stack, name="golden-1.2.3.vhd"):
    return BlobClient.from_connection_string(
        os.environ["AZURE_STORAGE_CONNECTION_STRING"], stack.container, name, api_version="2025-11-05"
    )


def _starts(requests):
    return {int(r.range.split("=")[1].split("-")[0]) for r in requests}


def test_resume_sends_only_missing_pages(stack, disk, info, raw_disk, tmp_path):
    settings = stack.settings(keep_upload=True, concurrency=1)
    image = info()
    provider = stack.provider()
    stack.proxy.fail("PUT", "comp=page", 500, times=1000, after=3, code="InternalError")

    with pytest.raises(CloudError, match=r"page\(s\) failed"):
        provider.publish(image, settings, disk, stack.context(settings, image))
    first = _starts(stack.proxy.pages())
    assert len(first) == 3
    assert stack.arm.get("images/golden-1.2.3") is None

    stack.proxy.rules.clear()
    stack.proxy.requests.clear()
    ctx = stack.context(settings, image)
    provider.publish(image, settings, disk, ctx)
    second = _starts(stack.proxy.pages())

    assert second and not (first & second)
    assert any("resuming" in n for n in ctx.progress.notes)
    ranges = [(r.start, r.end + 1) for r in _blob(stack).list_page_ranges()]
    covered = _Ranges(ranges)
    assert all(covered.covers(s, 512) for s in first | second)
    dest = tmp_path / "blob.vhd"
    with open(dest, "wb") as f:
        _blob(stack).download_blob().readinto(f)
    subprocess.run(["qemu-img", "compare", "-f", "vpc", "-F", "raw", dest, raw_disk], check=True)


def test_complete_blob_is_not_read_again(stack, disk, info):
    settings = stack.settings(keep_upload=True)
    image = info()
    provider = stack.provider()
    provider.publish(image, settings, disk, stack.context(settings, image))
    stack.arm.resources.clear()  # the image is gone, the complete blob stays
    stack.proxy.requests.clear()

    ctx = stack.context(settings, image)
    provider.publish(image, settings, disk, ctx)

    assert stack.proxy.pages() == []
    assert stack.arm.get("images/golden-1.2.3") is not None


def test_stale_blob_of_another_digest_is_recreated(stack, disk, info):
    blob = _blob(stack)
    blob.create_page_blob(4 << 20, metadata={"imgpub_digest": "someone-else"})
    settings = stack.settings(keep_upload=True)
    image = info()
    ctx = stack.context(settings, image)

    stack.provider().publish(image, settings, disk, ctx)

    props = blob.get_blob_properties()
    assert props.metadata["imgpub_digest"] == ctx.digest
    assert props.metadata["imgpub_complete"] == "true"
    assert props.size % (1 << 20) == 512


def test_throttled_pages_are_retried(stack, disk, info):
    stack.proxy.fail("PUT", "comp=page", 429, times=2, retry_after=1, code="TooManyRequests")
    stack.proxy.fail("PUT", "comp=page", 503, times=2, code="ServerBusy")
    settings = stack.settings()
    image = info()

    stack.provider().publish(image, settings, disk, stack.context(settings, image))

    assert all(rule.times == 0 for rule in stack.proxy.rules)
    assert stack.arm.get("images/golden-1.2.3") is not None


def test_pages_respect_the_4_mib_limit_and_carry_md5(stack, disk, info):
    settings = stack.settings()
    image = info()
    stack.provider().publish(image, settings, disk, stack.context(settings, image))
    assert all(r.md5 for r in stack.proxy.pages())  # transactional MD5 on every Put Page
    lengths = [r.length for r in stack.proxy.pages()]
    assert max(lengths) == MAX_PAGE  # the 4.5 MiB run was split
    assert all(n % 512 == 0 for n in lengths)


def test_unique_id_is_stable_per_digest():
    assert unique_id("abc") == unique_id("abc") != unique_id("abd")
    assert len(unique_id("abc")) == 16


def test_ranges_merge_adjacent_puts():
    ranges = _Ranges([(0, 512), (512, 1024), (4096, 8192)])
    assert ranges.covers(0, 1024)
    assert not ranges.covers(512, 1024)
    assert ranges.covers(4096, 4096)
    assert not ranges.covers(2048, 512)
