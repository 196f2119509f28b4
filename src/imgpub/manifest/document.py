"""YAML to plain data, keeping the line and column of every key and value, and expanding ${VAR}.

PyYAML's composer gives nodes with marks; we build the data ourselves (safe: only the core YAML
tags) so a pydantic error's location maps back to `file:line:col`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from imgpub.errors import ManifestError

Loc = tuple[str | int, ...]

_VAR = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*)|(##?|%%?)(.*))?$", re.DOTALL)
_MAX_DEPTH = 64
"""Nesting deeper than any manifest needs; deeper is a mistake or an attack (`[[[[...]]]]`)."""
_MAX_VALUES = 100_000
"""Values a manifest may expand to once aliases are followed: a real one has hundreds, a
billion-laughs file (aliases of aliases) trillions."""
MAX_BYTES = 1 << 20
"""The largest manifest read (a real one is a few KB)."""
_T = "tag:yaml.org,2002:"


@dataclass(frozen=True)
class Mark:
    line: int
    column: int

    @classmethod
    def of(cls, mark: yaml.Mark) -> Mark:
        return cls(mark.line + 1, mark.column + 1)


def format_loc(loc: Loc) -> str:
    """`targets[0].regions[1]`; a key that is not a plain word is quoted: `image.labels["app.tier"]`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out and not re.fullmatch(r"[\w-]+", part):
            out += f"[{json.dumps(part)}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass
class Document:
    """Plain data of a YAML file, with the mark of every value and every mapping key."""

    file: Path
    data: Any = None
    values: dict[Loc, Mark] = field(default_factory=dict)
    keys: dict[Loc, Mark] = field(default_factory=dict)
    shown: dict[Loc, Loc] = field(default_factory=dict)
    """Where a value really came from, when it is not where it is used (defaults merged into targets)."""

    def mark(self, loc: Loc, *, key: bool = False) -> Mark | None:
        """The mark of `loc` (its key if asked and known), or of its nearest located ancestor."""
        if key and loc in self.keys:
            return self.keys[loc]
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.values:
                return self.values[loc[:n]]
        return None

    def error(self, loc: Loc, message: str, *, key: bool = False, mark: Mark | None = None) -> ManifestError:
        where = mark or self.mark(loc, key=key)
        shown = self.shown.get(loc, loc)
        return ManifestError(
            self.file,
            format_loc(shown),
            message,
            line=where.line if where else None,
            column=where.column if where else None,
        )

    def copy_subtree(self, src: Loc, dst: Loc) -> None:
        """Make the marks of everything under `src` answer for the same paths under `dst`."""
        for table in (self.values, self.keys):
            for loc, mark in list(table.items()):
                if loc[: len(src)] == src:
                    new = dst + loc[len(src) :]
                    if new not in table:
                        table[new] = mark
                        self.shown.setdefault(new, self.shown.get(loc, loc))


def parse(file: Path, text: str, env: Mapping[str, str] | None = None) -> Document:
    """Parse one YAML document into a Document; every problem is a ManifestError with line:col."""
    doc = Document(file)
    try:
        _check_depth(file, text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ManifestError(
            file,
            "",
            f"invalid YAML: {exc.problem or exc.context}",
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise ManifestError(file, "", f"invalid YAML: {exc}") from None
    if node is None:
        raise ManifestError(file, "", "the manifest is empty", line=1, column=1)
    doc.data = _Builder(doc, os.environ if env is None else env).build(node, (), 0)
    return doc


def _check_depth(file: Path, text: str) -> None:
    """Refuse nesting deeper than _MAX_DEPTH before composing: PyYAML's composer recurses once per
    level, and a few thousand `[` exhaust the interpreter's stack. The parser's events come from a
    loop, so counting them is safe."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > _MAX_DEPTH:
                mark = event.start_mark
                raise ManifestError(
                    file,
                    "",
                    f"nested more than {_MAX_DEPTH} levels deep",
                    line=mark.line + 1 if mark else None,
                    column=mark.column + 1 if mark else None,
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


class _Builder:
    def __init__(self, doc: Document, env: Mapping[str, str]) -> None:
        self.doc, self.env = doc, env
        self.values = 0

    def build(self, node: yaml.Node, loc: Loc, depth: int) -> Any:
        self.doc.values.setdefault(loc, Mark.of(node.start_mark))
        self.values += 1
        if self.values > _MAX_VALUES:
            raise self.doc.error(
                (),
                f"too many aliases expanded (more than {_MAX_VALUES:,} values); is an alias repeated "
                "inside aliases?",
                mark=Mark.of(node.start_mark),
            )
        if depth > _MAX_DEPTH:  # only aliases get here: the text's own nesting was checked
            raise self.doc.error((), "an alias refers to itself", mark=Mark.of(node.start_mark))
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, loc)
        if isinstance(node, yaml.SequenceNode):
            self.check_tag(node, loc, "seq")
            return [self.build(item, (*loc, i), depth + 1) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.MappingNode)
        self.check_tag(node, loc, "map")
        out: dict[str, Any] = {}
        for key_node, value_node in self.pairs(node, loc):
            key = self.key(key_node, loc)
            if key in out:
                first = self.doc.keys[(*loc, key)]
                raise self.doc.error(
                    (*loc, key),
                    f"duplicate key {key!r} (first at line {first.line})",
                    mark=Mark.of(key_node.start_mark),
                )
            self.doc.keys[(*loc, key)] = Mark.of(key_node.start_mark)
            out[key] = self.build(value_node, (*loc, key), depth + 1)
        return out

    def pairs(
        self, node: yaml.MappingNode, loc: Loc, merging: tuple[yaml.Node, ...] = ()
    ) -> list[tuple[yaml.Node, yaml.Node]]:
        """The mapping's pairs with YAML merge keys (`<<: *base`) applied; explicit keys win."""
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        own: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            self.values += 1
            if key_node.tag == _T + "merge":
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for src in sources:
                    if not isinstance(src, yaml.MappingNode):
                        raise self.doc.error(
                            loc, "a merge key (<<) needs a mapping", mark=Mark.of(src.start_mark)
                        )
                    if src is node or any(src is m for m in merging) or len(merging) > _MAX_DEPTH:
                        raise self.doc.error(
                            loc, "a merge key (<<) merges a mapping into itself", mark=Mark.of(src.start_mark)
                        )
                    if self.values > _MAX_VALUES:
                        raise self.doc.error(
                            (),
                            f"too many aliases expanded (more than {_MAX_VALUES:,} values)",
                            mark=Mark.of(src.start_mark),
                        )
                    merged.extend(self.pairs(src, loc, (*merging, node)))
            else:
                own.append((key_node, value_node))
        explicit = {k.value for k, _ in own if isinstance(k, yaml.ScalarNode)}
        seen: set[str] = set()
        inherited = []
        for k, v in merged:
            if k.value not in explicit and k.value not in seen:
                seen.add(k.value)
                inherited.append((k, v))
        return inherited + own

    def key(self, node: yaml.Node, loc: Loc) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise self.doc.error(loc, "mapping keys must be plain strings", mark=Mark.of(node.start_mark))
        value = self.scalar(node, loc)
        return value if isinstance(value, str) else str(node.value)

    def check_tag(self, node: yaml.Node, loc: Loc, kind: str) -> None:
        if node.tag != _T + kind:
            raise self.doc.error(loc, f"unsupported YAML tag {node.tag}", mark=Mark.of(node.start_mark))

    def scalar(self, node: yaml.ScalarNode, loc: Loc) -> Any:
        raw: str = node.value
        if "$" in raw and node.tag in (_T + "str", _T + "int", _T + "float", _T + "timestamp"):
            return self.expand(node, loc)
        tag = node.tag.removeprefix(_T)
        if tag == "null":
            return None
        if tag in ("str", "int", "float", "timestamp", "bool"):
            # Scalars stay text: `version: 1.10` must not become 1.1, nor `country: no` False.
            # pydantic converts text to a number or a boolean where a field wants one.
            return raw
        raise self.doc.error(loc, f"unsupported YAML tag {node.tag}", mark=Mark.of(node.start_mark))

    def expand(self, node: yaml.ScalarNode, loc: Loc) -> str:
        """`${VAR}` and `${VAR:-default}` from the environment; `$${` is a literal `${`."""
        raw: str = node.value

        def column_of(index: int) -> Mark:
            start = Mark.of(node.start_mark)
            if node.start_mark.line != node.end_mark.line:
                return start
            quoted = 1 if node.style in ("'", '"') else 0
            return Mark(start.line, start.column + quoted + index)

        def replace(match: re.Match[str]) -> str:
            text = match.group(0)
            if text == "$${":
                return "${"
            inner = match.group(1)
            if inner is None:
                raise self.doc.error(
                    loc, "unterminated ${ (write $${ for a literal ${)", mark=column_of(match.start())
                )
            name = _NAME.match(inner)
            if name is None:
                raise self.doc.error(
                    loc,
                    f"bad variable reference ${{{inner}}}: use ${{NAME}}, ${{NAME:-default}}, "
                    "${NAME#prefix} or ${NAME%suffix}",
                    mark=column_of(match.start()),
                )
            value = self.env.get(name.group(1))
            if value is not None and name.group(3):
                return _trim(value, name.group(3), name.group(4))
            if value:
                return value
            if name.group(2) is not None:
                return name.group(2)
            if value is not None:
                return value
            raise self.doc.error(
                loc,
                f"environment variable {name.group(1)} is not set (use ${{{name.group(1)}:-default}} "
                "for a default)",
                mark=column_of(match.start()),
            )

        return _VAR.sub(replace, raw)


def _trim(value: str, op: str, pattern: str) -> str:
    """Shell pattern removal: `#` the shortest matching prefix, `##` the longest, `%` the shortest
    matching suffix, `%%` the longest (`${GITHUB_REF_NAME#v}`: v1.2.3 -> 1.2.3)."""
    cuts = range(len(value) + 1)
    if op in ("#", "##"):
        order = cuts if op == "#" else reversed(cuts)
        cut = next((i for i in order if fnmatch.fnmatchcase(value[:i], pattern)), None)
        return value if cut is None else value[cut:]
    order = reversed(cuts) if op == "%" else cuts
    cut = next((i for i in order if fnmatch.fnmatchcase(value[i:], pattern)), None)
    return value if cut is None else value[:cut]
