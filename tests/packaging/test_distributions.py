"""What PyPI gets: LICENSE in every sdist and wheel, complete metadata, descriptions whose links work
off GitHub, providers pinned to a compatible core, and a root sdist without the repository's
lock file, tests and CI files."""

from __future__ import annotations

import re
import tarfile
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest

from packaging_tools import DISTRIBUTIONS, ROOT, Dists, run

LICENSE = (ROOT / "LICENSE").read_bytes()
PROVIDERS = ("aws", "gcp", "azure")
URLS = {"Homepage", "Documentation", "Repository", "Issues", "Changelog"}
LINK = re.compile(r"\]\(([^)\s]+)\)|^\[[^\]]+\]:\s*(\S+)", re.MULTILINE)


def test_license_is_the_apache_2_text_everywhere() -> None:
    assert LICENSE.startswith(b"\n                                 Apache License\n")
    assert b"END OF TERMS AND CONDITIONS" in LICENSE
    for provider in PROVIDERS:
        assert (ROOT / "providers" / provider / "LICENSE").read_bytes() == LICENSE


def wheel_files(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def sdist_names(path: Path) -> list[str]:
    with tarfile.open(path) as t:
        return [m.name.split("/", 1)[1] for m in t.getmembers() if "/" in m.name]


def metadata(dists: Dists, dist: str) -> Message:
    files = wheel_files(dists.wheel(dist))
    name = f"{dist.replace('-', '_')}-{dists.version}.dist-info/METADATA"
    return Parser().parsestr(files[name].decode())


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_license_ships_in_wheel_and_sdist(dists: Dists, dist: str) -> None:
    files = wheel_files(dists.wheel(dist))
    assert files[f"{dist.replace('-', '_')}-{dists.version}.dist-info/licenses/LICENSE"] == LICENSE
    assert "LICENSE" in sdist_names(dists.sdist(dist))


def test_root_sdist_holds_no_lock_file_tests_or_ci(dists: Dists) -> None:
    names = sdist_names(dists.sdist("imgpub"))
    tops = {n.split("/")[0] for n in names}
    assert {"src", "README.md", "LICENSE", "pyproject.toml", "PKG-INFO"} <= tops
    unwanted = {
        "uv.lock",
        "tests",
        ".ci",
        ".github",
        ".cache",
        "benchmarks",
        "examples",
        "providers",
        "scripts",
    }
    assert not tops & unwanted, sorted(tops & unwanted)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_metadata(dists: Dists, dist: str) -> None:
    meta = metadata(dists, dist)
    assert meta["License-Expression"] == "Apache-2.0"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL", []))
    assert set(urls) == URLS and all(u.startswith("https://github.com/imgpub/imgpub") for u in urls.values())
    classifiers = meta.get_all("Classifier", [])
    assert "Typing :: Typed" in classifiers and "Programming Language :: Python :: 3.11" in classifiers
    assert len(meta["Keywords"].split(",")) >= 5
    assert meta["Description-Content-Type"] == "text/markdown"


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_description_is_the_readme_with_absolute_links(dists: Dists, dist: str) -> None:
    body = metadata(dists, dist).get_payload()
    assert isinstance(body, str)
    readme = ROOT / (
        "README.md" if dist == "imgpub" else f"providers/{dist.removeprefix('imgpub-')}/README.md"
    )
    assert body.strip().splitlines()[0] == readme.read_text().splitlines()[0]
    links = [a or b for a, b in LINK.findall(body)]
    relative = [link for link in links if not re.match(r"https?://|mailto:|#", link) and "/" in link]
    assert not relative, f"{dist}: relative links on PyPI: {relative}"


def test_providers_require_a_compatible_core_and_the_extras_pin_them(dists: Dists) -> None:
    for provider in PROVIDERS:
        requires = metadata(dists, f"imgpub-{provider}").get_all("Requires-Dist", [])
        assert "imgpub<1,>=0.1" in requires
    core = metadata(dists, "imgpub").get_all("Requires-Dist", [])
    for provider in PROVIDERS:
        assert f"imgpub-{provider}<1,>=0.1; extra == '{provider}'" in core
        assert f"imgpub-{provider}<1,>=0.1; extra == 'all'" in core


READMES = run("git", "ls-files", "--cached", "--others", "--exclude-standard", "*README.md").stdout.split()


@pytest.mark.parametrize("readme", READMES)
def test_readme_relative_links_point_at_files(readme: str) -> None:
    """On GitHub the relative links stay; each must name a file or folder of the repository."""
    for a, b in LINK.findall((ROOT / readme).read_text()):
        link = (a or b).split("#")[0]
        if link and not re.match(r"[a-z]+:", link) and re.fullmatch(r"[\w./-]+", link):
            assert (ROOT / readme).parent.joinpath(link).exists(), f"{readme}: broken link {link}"
