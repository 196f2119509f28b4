"""Load a manifest: YAML with marks -> provider resolution -> defaults merge -> pydantic -> checks.

Every problem is one ManifestError that reads `file:line:col field.path: what is wrong`.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from imgpub import plugins
from imgpub.errors import ConfigurationError, ManifestError
from imgpub.manifest.document import MAX_BYTES, Document, Loc, parse
from imgpub.manifest.models import ImageSpec, manifest_model
from imgpub.names import did_you_mean
from imgpub.provider import Provider, TargetSettings

__all__ = ["Manifest", "load_manifest", "load_providers"]

CLOUD_EXTRAS = ("aws", "azure", "gcp")


@dataclass(frozen=True)
class Manifest:
    """A loaded, validated manifest. `document` keeps the marks for later checks' errors."""

    path: Path
    image: ImageSpec
    targets: tuple[TargetSettings, ...]
    providers: Mapping[str, type[Provider[Any]]]
    document: Document
    warnings: tuple[str, ...] = ()
    """What `validate` found worth a look that does not stop a publish (`file:line:col: field: what`)."""

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def select(self, names: list[str] | tuple[str, ...] | None) -> tuple[TargetSettings, ...]:
        """The targets named (all when `names` is empty); an unknown name is an error."""
        if not names:
            return self.targets
        known = [t.name for t in self.targets]
        for name in names:
            if name not in known:
                raise ManifestError(self.path, "", f"no target named {name!r}{did_you_mean(name, known)}")
        return tuple(t for t in self.targets if t.name in names)

    def error(self, loc: Loc, message: str, *, key: bool = False) -> ManifestError:
        return self.document.error(loc, message, key=key)


def load_manifest(path: str | Path, env: Mapping[str, str] | None = None) -> Manifest:
    """Read, expand, validate and check the manifest at `path`."""
    from imgpub.manifest.checks import check_manifest

    file = Path(path)
    try:
        with file.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise ManifestError(file, "", f"the manifest is larger than {MAX_BYTES:,} bytes")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ManifestError(file, "", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(file, "", f"cannot read: {exc}") from None
    doc = parse(file, text, env)
    if not isinstance(doc.data, dict):
        raise doc.error((), "the manifest must be a mapping with `image` and `targets`")
    providers = _resolve_providers(doc)
    _merge_defaults(doc)
    _merge_retention(doc)
    model = manifest_model(providers)
    try:
        parsed = model.model_validate(doc.data, context={"base_dir": file.parent.absolute()})
    except ValidationError as exc:
        raise _first_error(doc, model, exc) from None
    values = dict(parsed)
    manifest = Manifest(file, values["image"], tuple(values["targets"]), providers, doc)
    check_manifest(manifest)
    return manifest


def load_providers(names: list[str] | None = None) -> dict[str, type[Provider[Any]]]:
    """Provider classes by name: the ones named, or every installed (allow-listed) one."""
    return {name: plugins.load(name) for name in (names if names is not None else list(plugins.available()))}


def _not_installed(name: str) -> str:
    installed = list(plugins.available())
    hint = did_you_mean(name, installed)
    if hint:
        return f"unknown provider {name!r}{hint}"
    if name in CLOUD_EXTRAS:
        return f"provider {name!r} is not installed; pip install 'imgpub[{name}]'"
    return (
        f"provider {name!r} is not installed (installed: {', '.join(installed) or 'none'}); install the "
        "distribution that provides it"
    )


def _resolve_providers(doc: Document) -> dict[str, type[Provider[Any]]]:
    data = doc.data
    names: dict[str, Loc] = {}
    targets = data.get("targets")
    if isinstance(targets, list):
        for i, target in enumerate(targets):
            if isinstance(target, dict) and isinstance(target.get("provider"), str):
                names.setdefault(target["provider"], ("targets", i, "provider"))
            elif isinstance(target, dict):
                if "provider" not in target:
                    raise doc.error(("targets", i), "missing required field 'provider'")
                raise doc.error(("targets", i, "provider"), "must be a provider name")
            else:
                raise doc.error(("targets", i), "each target must be a mapping with `name` and `provider`")
    defaults = data.get("defaults")
    if isinstance(defaults, dict):
        for name in defaults:
            names.setdefault(name, ("defaults", name))
    available = plugins.available()
    providers: dict[str, type[Provider[Any]]] = {}
    for name, loc in names.items():
        if name not in available:
            raise doc.error(loc, _not_installed(name), key=loc[0] == "defaults")
        try:
            providers[name] = plugins.load(name)
        except ConfigurationError as exc:
            raise doc.error(loc, str(exc)) from None
    return providers


def _deep_merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = _deep_merge(base[key], value) if key in base else value
        return out
    return over


def _merge_defaults(doc: Document) -> None:
    defaults = doc.data.get("defaults")
    targets = doc.data.get("targets")
    if not isinstance(defaults, dict) or not isinstance(targets, list):
        return
    for i, target in enumerate(targets):
        shared = defaults.get(target.get("provider")) if isinstance(target, dict) else None
        if isinstance(shared, dict):
            targets[i] = _deep_merge(copy.deepcopy(shared), target)
            doc.copy_subtree(("defaults", target["provider"]), ("targets", i))


def _merge_retention(doc: Document) -> None:
    """The top-level `retention` under every target's own (whose fields win)."""
    top = doc.data.get("retention")
    targets = doc.data.get("targets")
    if not isinstance(top, dict) or not isinstance(targets, list):
        return
    for i, target in enumerate(targets):
        if isinstance(target, dict):
            own = target.get("retention")
            target["retention"] = {**top, **own} if isinstance(own, dict) else dict(top)
            doc.copy_subtree(("retention",), ("targets", i, "retention"))


_QUOTED = re.compile(r"'([^']*)'")


def _first_error(doc: Document, model: type[BaseModel], exc: ValidationError) -> ManifestError:
    # On a tie, a misspelt key explains the "missing" field it was meant to be.
    ranked = [(_to_manifest_error(doc, model, err), err["type"] != "extra_forbidden") for err in exc.errors()]
    ranked.sort(key=lambda r: (r[0].line or 0, r[0].column or 0, r[1]))
    return ManifestError.first_of([error for error, _ in ranked])


def _to_manifest_error(doc: Document, model: type[BaseModel], err: Any) -> ManifestError:
    raw_loc: Loc = tuple(err["loc"])
    loc = _strip_tags(doc.data, raw_loc)
    kind, msg = err["type"], str(err["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        known = _fields_at(model, raw_loc[:-1])
        return doc.error(loc, f"unknown field {loc[-1]!r}{did_you_mean(str(loc[-1]), known)}", key=True)
    if kind == "missing":
        return doc.error(loc, "required field is missing", key=True)
    value = err.get("input")
    if kind in ("literal_error", "enum") and isinstance(value, str):
        msg += did_you_mean(value, _QUOTED.findall(str(err.get("ctx", {}).get("expected", ""))))
    if isinstance(value, str | int | float | bool) and not msg.endswith("?"):
        msg += f" (got {value!r})"
    return doc.error(loc, msg)


def _strip_tags(data: Any, loc: Loc) -> Loc:
    """Drop the discriminator tag pydantic puts in a union member's location (targets.1.aws.x)."""
    if len(loc) >= 3 and loc[0] == "targets" and isinstance(loc[1], int):
        targets = data.get("targets") if isinstance(data, dict) else None
        if isinstance(targets, list) and loc[1] < len(targets):
            target = targets[loc[1]]
            if isinstance(target, dict) and loc[2] == target.get("provider"):
                return loc[:2] + loc[3:]
    return loc


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names of the model found at `loc` (following unions by their tag), for did-you-mean."""
    tp: Any = model
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return []
    models = [m for m in _members(tp) if isinstance(m, type) and issubclass(m, BaseModel)]
    return sorted({name for m in models for name in m.model_fields})


def _members(tp: Any) -> list[Any]:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _members(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [m for arg in typing.get_args(tp) for m in _members(arg)]
    return [tp]


def _discriminated(tp: Any) -> bool:
    if typing.get_origin(tp) is not typing.Annotated:
        return False
    return any(getattr(meta, "discriminator", None) for meta in typing.get_args(tp)[1:])


def _step(tp: Any, part: str | int) -> Any:
    members = _members(tp)
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    if _discriminated(tp):  # pydantic puts the member's tag in the location
        for model in models:
            provider = model.model_fields.get("provider")
            if provider is not None and typing.get_args(provider.annotation) == (part,):
                return model
    for member in members:
        if isinstance(member, type) and issubclass(member, BaseModel) and isinstance(part, str):
            field = member.model_fields.get(part)
            if field is not None:
                return field.annotation
        origin, args = typing.get_origin(member), typing.get_args(member)
        if origin in (list, tuple) and isinstance(part, int) and args:
            return args[0]
        if origin is dict and len(args) == 2:
            return args[1]
    return None
