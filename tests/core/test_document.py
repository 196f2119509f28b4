"""YAML to data with marks: anchors, merge keys and line:col for every key and value."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from imgpub.errors import ManifestError
from imgpub.manifest.document import Mark, format_loc, parse

F = Path("m.yaml")


def test_marks_for_keys_and_values() -> None:
    doc = parse(F, "a:\n  b: [1, two]\n  c: {d: x}\n", {})
    assert doc.data == {"a": {"b": ["1", "two"], "c": {"d": "x"}}}
    assert doc.keys[("a", "b")] == Mark(2, 3)
    assert doc.values[("a", "b", 1)] == Mark(2, 10)
    assert doc.values[("a", "c", "d")] == Mark(3, 10)
    assert doc.mark(("a", "c", "missing")) == Mark(3, 6)


def test_anchors_and_merge_keys() -> None:
    text = "base: &b {x: 1, y: 2}\nchild:\n  <<: *b\n  y: 3\n"
    assert parse(F, text, {}).data == {"base": {"x": "1", "y": "2"}, "child": {"x": "1", "y": "3"}}


def test_null_and_quoted() -> None:
    assert parse(F, "a: ~\nb: 'null'\nc:\n", {}).data == {"a": None, "b": "null", "c": None}


def test_expansion_in_quoted_scalar_reports_the_column() -> None:
    with pytest.raises(ManifestError) as err:
        parse(F, 'v: "x-${A}-${B}"\n', {"A": "1"})
    assert str(err.value) == (
        "m.yaml:1:12: v: environment variable B is not set (use ${B:-default} for a default)"
    )


def test_bad_reference() -> None:
    with pytest.raises(ManifestError, match=r"m.yaml:1:4: v: bad variable reference \$\{1X\}"):
        parse(F, "v: ${1X}\n", {})
    with pytest.raises(ManifestError, match=r"unterminated \$\{"):
        parse(F, "v: ${OPEN\n", {})


def test_empty_default_and_empty_value() -> None:
    assert parse(F, "v: a${E:-}b\n", {}).data == {"v": "ab"}
    assert parse(F, "v: a${E}b\n", {"E": ""}).data == {"v": "ab"}


def test_non_scalar_key() -> None:
    with pytest.raises(ManifestError, match="mapping keys must be plain strings"):
        parse(F, "? [a]\n: b\n", {})


def test_format_loc() -> None:
    assert format_loc(("targets", 1, "regions", 0)) == "targets[1].regions[0]"
    assert format_loc(()) == ""


def laughs(levels: int) -> str:
    """The billion-laughs document: each level an alias list of nine of the level below."""
    text = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    names = "abcdefghijklmnop"[: levels + 1]
    for prev, name in itertools.pairwise(names):
        text += f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]\n"
    return text


def test_an_alias_bomb_is_refused_quickly() -> None:
    with pytest.raises(ManifestError) as err:
        parse(F, laughs(9), {})
    assert str(err.value) == (
        "m.yaml:1:13: too many aliases expanded (more than 100,000 values); "
        "is an alias repeated inside aliases?"
    )


def test_aliases_that_expand_a_little_are_fine() -> None:
    assert len(parse(F, laughs(2), {}).data["c"]) == 9


def test_merge_keys_bomb_is_refused() -> None:
    text = "a: &a {k0: 1, k1: 2, k2: 3}\n"
    for prev, name in zip("abcdefghij", "bcdefghijk", strict=True):
        text += f"{name}: &{name} {{<<: [*{prev}], x: [{', '.join(['*' + prev] * 9)}]}}\n"
    with pytest.raises(ManifestError, match="too many aliases expanded"):
        parse(F, text, {})


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("image: " + "[" * 5000 + "]" * 5000 + "\n", "1:71"),
        ("image: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "1:260"),
        ("".join("  " * i + f"k{i}:\n" for i in range(100)) + "  " * 100 + "x: 1\n", "65:129"),
    ],
    ids=["sequences", "flow-maps", "block-maps"],
)
def test_deep_nesting_is_one_line_with_its_place(text: str, where: str) -> None:
    with pytest.raises(ManifestError) as err:
        parse(F, text, {})
    assert str(err.value) == f"m.yaml:{where}: nested more than 64 levels deep"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("base: &b {<<: *b}\nimage: *b\n", "m.yaml:1:7: base: a merge key (<<) merges a mapping into itself"),
        ("base: &b {a: 1, c: *b}\nimage: *b\n", "m.yaml:1:14: an alias refers to itself"),
        ("base: &b [1, *b]\n", "m.yaml:1:11: an alias refers to itself"),
    ],
)
def test_recursive_aliases(text: str, message: str) -> None:
    with pytest.raises(ManifestError) as err:
        parse(F, text, {})
    assert str(err.value) == message


def test_a_huge_manifest_is_refused_unread(tmp_path: Path) -> None:
    from imgpub.manifest import load_manifest

    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ManifestError) as err:
        load_manifest(path, env={})
    assert str(err.value) == f"{path}: the manifest is larger than 1,048,576 bytes"


@pytest.mark.parametrize(
    ("text", "env", "value"),
    [
        ("v: ${REF#v}", {"REF": "v1.2.3"}, "1.2.3"),
        ("v: ${REF#v}", {"REF": "1.2.3"}, "1.2.3"),
        ("v: ${REF#refs/tags/}", {"REF": "refs/tags/v2.0.0"}, "v2.0.0"),
        ("v: ${REF##*/}", {"REF": "refs/tags/v2.0.0"}, "v2.0.0"),
        ("v: ${REF#*/}", {"REF": "refs/tags/v2.0.0"}, "tags/v2.0.0"),
        ("v: ${REF%-*}", {"REF": "1.2.3-rc.1-build"}, "1.2.3-rc.1"),
        ("v: ${REF%%-*}", {"REF": "1.2.3-rc.1-build"}, "1.2.3"),
        ("v: ${REF#}", {"REF": "x"}, "x"),
        ("v: image-${REF#v}-amd64", {"REF": "v3"}, "image-3-amd64"),
    ],
)
def test_shell_prefix_and_suffix_removal(text: str, env: dict[str, str], value: str) -> None:
    assert parse(F, text + "\n", env).data == {"v": value}


def test_trimming_an_unset_variable_is_an_error() -> None:
    with pytest.raises(ManifestError, match="environment variable REF is not set"):
        parse(F, "v: ${REF#v}\n", {})
