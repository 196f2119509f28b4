"""Manifest loading: every error names file:line:col, the field path and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgpub.errors import ManifestError
from imgpub.local import LocalSettings
from imgpub.manifest import load_manifest

LOCAL = """\
- name: out
  provider: local
  path: out
"""


def error_of(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ManifestError) as info:
        load_manifest(path, env=env or {})
    return str(info.value)


def test_valid_manifest_loads_with_paths_resolved(write_manifest, tmp_path: Path) -> None:
    m = load_manifest(write_manifest(LOCAL), env={})
    assert m.image.name == "demo" and m.image.version == "1.0.0"
    assert m.image.source == str(tmp_path / "disk.raw")
    (target,) = m.targets
    assert isinstance(target, LocalSettings)
    assert target.path == tmp_path / "out"
    assert target.formats == ["raw", "vhd", "gce"]


def test_misspelt_image_key_suggests(write_manifest) -> None:
    path = write_manifest(LOCAL, image_extra="bot: uefi\n")
    assert error_of(path) == f"{path}:5:3: image.bot: unknown field 'bot'; did you mean 'boot'?"


def test_misspelt_provider_field_points_at_the_key(write_manifest) -> None:
    path = write_manifest(LOCAL + "  formts: [raw]\n")
    assert error_of(path) == f"{path}:9:5: targets[0].formts: unknown field 'formts'; did you mean 'formats'?"


def test_bad_literal_in_a_list_suggests(write_manifest) -> None:
    path = write_manifest(LOCAL + "  formats: [raw, vhdx]\n")
    assert error_of(path) == (
        f"{path}:9:20: targets[0].formats[1]: Input should be 'raw', 'vhd' or 'gce'; did you mean 'vhd'?"
    )


def test_missing_required_field(write_manifest) -> None:
    path = write_manifest("- name: out\n  provider: local\n")
    assert error_of(path) == f"{path}:6:5: targets[0].path: required field is missing"


def test_env_expansion_and_default(write_manifest) -> None:
    path = write_manifest(LOCAL, version="${VERSION:-0.0.1}")
    assert load_manifest(path, env={}).image.version == "0.0.1"
    assert load_manifest(path, env={"VERSION": "2.3.4"}).image.version == "2.3.4"
    path = write_manifest(LOCAL, version='"v${MAJOR}.${MINOR:-0}"')
    assert load_manifest(path, env={"MAJOR": "7"}).image.version == "v7.0"


def test_unset_variable_is_an_error_at_its_column(write_manifest) -> None:
    path = write_manifest(LOCAL, version="1.${BUILD}")
    assert error_of(path) == (
        f"{path}:3:14: image.version: environment variable BUILD is not set "
        "(use ${BUILD:-default} for a default)"
    )


def test_literal_dollar_brace(write_manifest) -> None:
    path = write_manifest(LOCAL, image_extra="description: costs $${HOME}\n")
    assert load_manifest(path, env={}).image.description == "costs ${HOME}"


def test_version_stays_text(write_manifest) -> None:
    assert load_manifest(write_manifest(LOCAL, version="1.10"), env={}).image.version == "1.10"


def test_duplicate_target_names(write_manifest) -> None:
    path = write_manifest(LOCAL + LOCAL)
    assert error_of(path) == f"{path}:9:11: targets[1].name: duplicate target name 'out' (first at line 6)"


def test_duplicate_yaml_key(write_manifest) -> None:
    path = write_manifest(LOCAL, image_extra="arch: x86_64\narch: arm64\n")
    assert error_of(path) == f"{path}:6:3: image.arch: duplicate key 'arch' (first at line 5)"


def test_arm64_bios(write_manifest) -> None:
    path = write_manifest(LOCAL, image_extra="arch: arm64\nboot: bios\n")
    assert error_of(path) == f"{path}:6:9: image.boot: arm64 images boot with UEFI only; use boot: uefi"


def test_url_needs_https_and_sha256(write_manifest, tmp_path: Path) -> None:
    path = tmp_path / "url.yaml"
    path.write_text(
        "image:\n  name: d\n  version: '1'\n  source: https://example.com/d.qcow2\ntargets:\n"
        + "  "
        + LOCAL.replace("\n", "\n  ")
    )
    assert error_of(path) == f"{path}:2:3: image: sha256 is required when the source is a URL"


def test_provider_not_installed(write_manifest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGPUB_PROVIDERS", "local")
    from imgpub import plugins

    plugins.available.cache_clear()
    try:
        path = write_manifest(LOCAL + "- name: ami\n  provider: aws\n")
        assert error_of(path) == (
            f"{path}:10:15: targets[1].provider: provider 'aws' is not installed; pip install 'imgpub[aws]'"
        )
    finally:
        monkeypatch.delenv("IMGPUB_PROVIDERS")
        plugins.available.cache_clear()


def test_unknown_provider_suggests(write_manifest) -> None:
    path = write_manifest(LOCAL.replace("local", "lcoal"))
    assert (
        error_of(path) == f"{path}:7:15: targets[0].provider: unknown provider 'lcoal'; did you mean 'local'?"
    )


def test_defaults_are_merged_under_each_target(write_manifest, tmp_path: Path) -> None:
    path = write_manifest(LOCAL + "- name: two\n  provider: local\n  path: two\n  formats: [gce]\n")
    text = path.read_text().replace("targets:", "defaults:\n  local:\n    formats: [raw]\ntargets:")
    path.write_text(text)
    m = load_manifest(path, env={})
    assert [t.formats for t in m.targets] == [["raw"], ["gce"]]  # type: ignore[attr-defined]


def test_error_in_defaults_names_the_defaults_line(write_manifest) -> None:
    path = write_manifest(LOCAL)
    path.write_text(path.read_text().replace("targets:", "defaults:\n  local:\n    formats: [tar]\ntargets:"))
    message = error_of(path)
    assert message.startswith(
        f"{path}:7:15: defaults.local.formats[0]: Input should be 'raw', 'vhd' or 'gce'"
    )


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("image:\n  name: [a\n")
    assert error_of(path).startswith(f"{path}:3:1: invalid YAML:")


def test_missing_file(tmp_path: Path) -> None:
    assert error_of(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: no such file"


def test_unsafe_tag_refused(write_manifest) -> None:
    path = write_manifest(LOCAL, image_extra="description: !!python/object:os.system ls\n")
    assert "unsupported YAML tag tag:yaml.org,2002:python/object:os.system" in error_of(path)


def test_select_unknown_target(write_manifest) -> None:
    m = load_manifest(write_manifest(LOCAL), env={})
    with pytest.raises(ManifestError, match="no target named 'uot'; did you mean 'out'"):
        m.select(["uot"])


def test_provider_check_problem_maps_to_line(write_manifest, fake_provider) -> None:
    from imgpub.manifest.checks import check_image
    from imgpub.provider import ImageInfo

    path = write_manifest("- name: f\n  provider: fake\n  regions: [r1, x2]\n")
    m = load_manifest(path, env={})
    info = ImageInfo("demo", "1.0.0", "x86_64", "uefi", 4 << 20, "")
    with pytest.raises(ManifestError) as err:
        check_image(m, info)
    assert str(err.value) == f"{path}:8:19: targets[0].regions[1]: no such region 'x2'"


def test_third_party_plugin_fields_and_checks(write_manifest, catalog_plugin) -> None:
    path = write_manifest("- name: cat\n  provider: catalog\n  catalog: c.json\n  chanel: beta\n")
    assert error_of(path) == f"{path}:9:5: targets[0].chanel: unknown field 'chanel'; did you mean 'channel'?"
    path = write_manifest("- name: cat\n  provider: catalog\n  catalog: c.json\n  channel: stabel\n")
    assert "targets[0].channel: Input should be 'stable' or 'beta'; did you mean 'stable'?" in error_of(path)


def test_yaml_booleans_stay_text_where_text_is_wanted(write_manifest) -> None:
    path = write_manifest(LOCAL, image_extra="tpm: yes\nboot: uefi\nlabels:\n  country: no\n")
    m = load_manifest(path, env={})
    assert m.image.tpm is True and m.image.labels == {"country": "no"}


def test_misspelt_required_key_wins_over_missing(write_manifest, tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("imgae:\n  name: demo\ntargets: []\n")
    assert error_of(path) == f"{path}:1:1: imgae: unknown field 'imgae'; did you mean 'image'?"
    path.write_text(
        "image:\n  nme: demo\n  version: '1'\n  source: d.raw\ntargets:\n"
        + "  "
        + LOCAL.replace("\n", "\n  ")
    )
    assert error_of(path) == f"{path}:2:3: image.nme: unknown field 'nme'; did you mean 'name'?"


def test_a_nul_byte_in_a_path_is_bad_input(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        'image:\n  name: d\n  version: "1"\n  source: "d\\0.raw"\n'
        'targets:\n  - {name: f, provider: local, path: "out\\0x"}\n'
    )
    with pytest.raises(ManifestError) as err:
        load_manifest(manifest, env={})
    assert "a path cannot hold a NUL byte" in str(err.value)
