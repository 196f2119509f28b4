"""The azure provider through imgpub's own pipeline: a manifest in, a published image out."""

from __future__ import annotations

from pathlib import Path

import pytest

import imgpub
from imaging import MiB, gpt_raw, pattern
from imgpub import plugins
from imgpub.retry import FAST
from imgpub_azure import AzureProvider


@pytest.fixture
def stub_provider(stack):
    """`azure` as the pipeline constructs it (no arguments), with the test credential."""

    class StubbedAzure(AzureProvider):
        def __init__(self) -> None:
            super().__init__(credential=stack.credential)

    plugins.register(StubbedAzure)
    yield StubbedAzure
    plugins.unregister("azure")


def test_publish_a_manifest(stack, stub_provider, tmp_path: Path):
    raw_disk = gpt_raw(tmp_path / "gpt.raw", 24 * MiB, [(5 * MiB, pattern(3 * MiB, 2))])  # with an ESP
    manifest = tmp_path / "imgpub.yaml"
    manifest.write_text(f"""
image:
  name: golden
  version: 2.0.1
  source: {raw_disk.name}
  arch: x86_64
  boot: uefi
targets:
  - name: az
    provider: azure
    subscription_id: 00000000-0000-0000-0000-0000000000a1
    resource_group: rg
    location: westeurope
    storage_account: devstoreaccount1
    container: {stack.container}
    blob_endpoint: {stack.proxy.url}/devstoreaccount1
    resource_manager_endpoint: {stack.arm.url}
    storage_api_version: "2025-11-05"
    gallery:
      name: g1
""")
    first = imgpub.publish(manifest, state_dir=tmp_path / "state", retry=FAST)
    assert first.ok, [t.error for t in first.targets]
    (target,) = first.targets
    assert target.published is not None and target.published.changed
    assert stack.arm.get("images/golden-2.0.1") is not None
    assert stack.arm.get("galleries/g1/images/golden/versions/2.0.1") is not None

    again = imgpub.publish(manifest, state_dir=tmp_path / "state", retry=FAST)
    assert again.ok and again.targets[0].plan is not None and again.targets[0].plan.up_to_date
