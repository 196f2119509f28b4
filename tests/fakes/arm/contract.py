"""What azure-mgmt-compute says a request may carry, checked the way ARM checks it.

The SDK (generated from the official TypeSpec) is the machine-readable contract: each model's
`rest_field`s give the wire names, the visibility (`["read"]` = read-only), the type (a member
whose type is not Optional is required) and the enums ("Known values"). The operations module
pins one api-version per operation group. A body that breaks them gets ARM's answer:

* unknown member, wrong JSON type -> 400 InvalidRequestContent ("could not be deserialized");
* read-only member sent, missing required member, value outside the enum -> 400 InvalidParameter
  (with `target`, the member's path), as the Compute resource provider answers.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from types import NoneType, UnionType
from typing import Any

import azure.mgmt.compute.models._models as _models_module
import azure.mgmt.compute.operations._operations as _operations_module
from azure.mgmt.compute import models as m
from azure.mgmt.compute._utils.model_base import Model, _RestField

__all__ = ["Member", "Violation", "check_body", "enum_of", "members", "pinned_api_version", "unknown_fields"]


@dataclass(frozen=True)
class Member:
    rest: str
    hint: Any
    read_only: bool
    required: bool


@dataclass(frozen=True)
class Violation:
    code: str
    target: str
    message: str


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    """(the hint without None, whether None was allowed)."""
    if typing.get_origin(hint) in (typing.Union, UnionType):
        args = [a for a in typing.get_args(hint) if a is not NoneType]
        optional = len(args) < len(typing.get_args(hint))
        return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), optional  # noqa: UP007
    return hint, False


@functools.cache
def members(cls: type) -> dict[str, Member]:
    """The wire members of an SDK model, inherited ones included."""
    hints = typing.get_type_hints(cls, globalns={**vars(_models_module), "_models": m})
    out: dict[str, Member] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            if isinstance(value, _RestField):
                hint = hints.get(attr)
                _, optional = _strip_optional(hint)
                rest = value._rest_name_input or attr
                out[rest] = Member(rest, hint, value._visibility == ["read"], not optional)
    return out


def enum_of(hint: Any) -> type[Enum] | None:
    base, _ = _strip_optional(hint)
    for arg in typing.get_args(base) if typing.get_origin(base) in (typing.Union, UnionType) else ():
        if isinstance(arg, type) and issubclass(arg, Enum):
            return arg
    return None


def _type_error(value: Any, hint: Any) -> str | None:
    """Why `value` cannot be deserialized as `hint` (JSON types only), or None."""
    base, _ = _strip_optional(hint)
    if value is None:
        return None
    if enum_of(hint) is not None or base is str:
        return None if isinstance(value, str) else "string"
    if base is bool:
        return None if isinstance(value, bool) else "boolean"
    if base is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "integer"
    if base is float:
        return None if isinstance(value, int | float) and not isinstance(value, bool) else "number"
    if base is datetime:
        if not isinstance(value, str):
            return "date-time"
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return "date-time"
        return None
    origin = typing.get_origin(base)
    if origin is list:
        return None if isinstance(value, list) else "array"
    if origin is dict or (isinstance(base, type) and issubclass(base, Model)):
        return None if isinstance(value, dict) else "object"
    return None


def check_body(body: Any, cls: type, path: str = "") -> list[Violation]:
    """Every way `body` breaks the SDK model `cls` (recursively), in document order."""
    if not isinstance(body, dict):
        return [Violation("InvalidRequestContent", path, f"Error converting value to type '{cls.__name__}'.")]
    known = members(cls)
    found: list[Violation] = []
    for key, value in body.items():
        where = f"{path}.{key}" if path else key
        member = known.get(key)
        if member is None:
            found.append(
                Violation(
                    "InvalidRequestContent",
                    where,
                    f"The request content was invalid and could not be deserialized: 'Could not find "
                    f"member '{key}' on object of type '{cls.__name__}'. Path '{where}'.'",
                )
            )
            continue
        if member.read_only:
            found.append(
                Violation("InvalidParameter", where, f"Property '{where}' is read-only and cannot be set.")
            )
            continue
        found += _check_value(value, member.hint, where)
    for member in known.values():
        if member.required and not member.read_only and body.get(member.rest) is None:
            where = f"{path}.{member.rest}" if path else member.rest
            found.append(
                Violation("InvalidParameter", where, f"Required parameter '{where}' is missing (null).")
            )
    return found


def _check_value(value: Any, hint: Any, where: str) -> list[Violation]:
    wrong = _type_error(value, hint)
    if wrong is not None:
        return [
            Violation(
                "InvalidRequestContent",
                where,
                f"The request content was invalid and could not be deserialized: 'Error converting value "
                f"{value!r} to type '{wrong}'. Path '{where}'.'",
            )
        ]
    if value is None:
        return []
    enum = enum_of(hint)
    if enum is not None:
        allowed = [str(e.value) for e in enum]
        if value.lower() not in {a.lower() for a in allowed}:
            listed = ", ".join(f"'{a}'" for a in allowed)
            return [
                Violation(
                    "InvalidParameter",
                    where,
                    f"The value '{value}' of parameter '{where}' is not allowed. "
                    f"Allowed values are {listed}.",
                )
            ]
        return []
    base, _ = _strip_optional(hint)
    origin = typing.get_origin(base)
    if origin is list:
        (item,) = typing.get_args(base)
        return [v for i, x in enumerate(value) for v in _check_value(x, item, f"{where}[{i}]")]
    if origin is dict:
        _, item = typing.get_args(base)
        return [v for k, x in value.items() for v in _check_value(x, item, f"{where}.{k}")]
    if isinstance(base, type) and issubclass(base, Model):
        return check_body(value, base, where)
    return []


def unknown_fields(body: Any, cls: type, path: str = "") -> list[str]:
    """Dotted paths of members of `body` that the SDK model `cls` (recursively) does not define."""
    return [v.target for v in check_body(body, cls, path) if "Could not find member" in v.message]


_GROUPS = {
    "Microsoft.Compute/images": "images",
    "Microsoft.Compute/disks": "disks",
    "Microsoft.Compute/galleries": "galleries",
    "Microsoft.Compute/galleries/images": "gallery_images",
    "Microsoft.Compute/galleries/images/versions": "gallery_image_versions",
}


@functools.cache
def _api_versions() -> dict[str, str]:
    source = inspect.getsource(_operations_module)
    out: dict[str, str] = {}
    for group in _GROUPS.values():
        match = re.search(
            rf"def build_{group}_get_request\(.*?_params\.pop\(\"api-version\", \"([^\"]+)\"\)", source, re.S
        )
        assert match, f"no api-version found for {group} in azure-mgmt-compute"
        out[group] = match[1]
    return out


def pinned_api_version(resource_type: str) -> str:
    """The api-version azure-mgmt-compute sends for this resource type (e.g. 2026-04-01 for images)."""
    return _api_versions()[_GROUPS[resource_type]]
