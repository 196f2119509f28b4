"""Fixtures for the core tests: a small disk, manifest writing, the fake and example providers."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imaging import MiB, gpt_raw, pattern
from imgpub import plugins

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_PLUGIN = REPO / "examples" / "third-party-provider"


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    """A 4 MiB sparse raw GPT disk with an EFI system partition (so it boots UEFI) and two data runs."""
    return gpt_raw(
        tmp_path / "disk.raw", 4 * MiB, [(MiB, pattern(64 * 1024, 1)), (3 * MiB, pattern(8192, 2))]
    )


ManifestWriter = Callable[..., Path]


@pytest.fixture
def write_manifest(tmp_path: Path, disk: Path) -> ManifestWriter:
    """write_manifest(targets_yaml, image_extra="", name="imgpub.yaml") -> path of a manifest."""

    def write(targets: str, image_extra: str = "", name: str = "imgpub.yaml", version: str = "1.0.0") -> Path:
        text = (
            "image:\n"
            "  name: demo\n"
            f"  version: {version}\n"
            f"  source: {disk.name}\n"
            + textwrap.indent(textwrap.dedent(image_extra), "  ")
            + "targets:\n"
            + textwrap.indent(textwrap.dedent(targets), "  ")
        )
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def fake_provider() -> Iterator[type]:
    from fakes.provider import FakeProvider

    FakeProvider.calls.clear()
    FakeProvider.barriers.clear()
    plugins.register(FakeProvider)
    try:
        yield FakeProvider
    finally:
        plugins.unregister("fake")


@pytest.fixture
def catalog_plugin(tmp_path: Path) -> Iterator[str]:
    """The example third-party provider, installed the light way: its src on sys.path and a
    .dist-info with its entry point, so discovery goes through importlib.metadata like pip's."""
    site = tmp_path / "site"
    info = site / "imgpub_catalog-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: imgpub-catalog\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[imgpub.providers]\ncatalog = imgpub_catalog:CatalogProvider\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(site))
        mp.syspath_prepend(str(EXAMPLE_PLUGIN / "src"))
        plugins._entry_points.cache_clear()
        plugins.available.cache_clear()
        try:
            yield "catalog"
        finally:
            sys.modules.pop("imgpub_catalog", None)
    plugins._entry_points.cache_clear()
    plugins.available.cache_clear()
