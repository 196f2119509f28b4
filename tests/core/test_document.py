"""YAML to data with marks: anchors, merge keys and line:col for every key and value."""

from __future__ import annotations

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
