"""The compute v1 contract, read from the discovery document google-api-python-client ships.

Every request the fake receives is checked here before any handler runs: the method's path
parameters against their `pattern`, its query parameters against their type, enum, minimum and
the document's standard parameters, `requestId` as a non-zero UUID (the parameter's description
says so), and the body against the request schema: unknown fields, types, enums, `byte` and
`int64` formats, `pattern`s, and the members the schema annotates as required for the method
(Image.name for images.insert). Failures are 400s in Google's JSON error format with the reason
codes GCE uses ("invalid", "required").
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from functools import cache
from importlib import resources
from typing import Any

REASONS = {
    400: "invalid",
    403: "forbidden",
    404: "notFound",
    409: "alreadyExists",
    412: "conditionNotMet",
    429: "rateLimitExceeded",
    500: "backendError",
    503: "backendError",
}
EXTRA_QUERY = {"$alt", "$fields"}
"""System parameters the REST client sends besides the document's own (`$alt=json;enum-encoding=int`)."""
ZERO_UUID = uuid.UUID(int=0)


@cache
def discovery(api: str = "compute.v1") -> dict[str, Any]:
    """A discovery document google-api-python-client ships: compute.v1 (the default), storage.v1..."""
    doc = resources.files("googleapiclient") / "discovery_cache" / "documents" / f"{api}.json"
    return json.loads(doc.read_text())  # type: ignore[no-any-return]


def schema(name: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    return (doc or discovery())["schemas"][name]  # type: ignore[no-any-return]


class ApiError(Exception):
    """An error answer: `code`, the first error's `reason`, and extra response headers (Retry-After)."""

    def __init__(
        self, code: int, message: str, reason: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.reason = reason or REASONS.get(code, "error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
            }
        }


def invalid(field: str, value: str, why: str) -> ApiError:
    return ApiError(400, f"Invalid value for field '{field}': '{value}'. {why}")


def check_parameters(
    method: dict[str, Any],
    path_args: dict[str, str],
    query: dict[str, str],
    *,
    doc: dict[str, Any] | None = None,
    extra: frozenset[str] = frozenset(),
) -> None:
    """Path and query parameters of one call, as the discovery document `doc` (compute v1 by default)
    declares them; `extra` names protocol parameters the document does not list (upload_id)."""
    params: dict[str, Any] = method.get("parameters", {})
    standard = set((doc or discovery())["parameters"]) | EXTRA_QUERY | extra
    for key in query:
        if key not in params and key not in standard:
            raise ApiError(
                400,
                f'Invalid JSON payload received. Unknown name "{key}": Cannot bind query parameter. '
                f"Field '{key}' could not be found in request message.",
            )
    for name, spec in params.items():
        value = path_args.get(name) if spec.get("location") == "path" else query.get(name)
        if value is None:
            if spec.get("required"):
                raise ApiError(400, f"Required field '{name}' not specified", "required")
            continue
        _check_parameter(name, value, spec)
    if "requestId" in query:
        _check_request_id(query["requestId"])


def _check_parameter(name: str, value: str, spec: dict[str, Any]) -> None:
    pattern = spec.get("pattern")
    if pattern and not re.fullmatch(f"(?:{pattern})", value):
        raise invalid(name, value, f"Must be a match of regex '(?:{pattern})'")
    kind = spec.get("type")
    if kind == "boolean" and value not in ("true", "false"):
        raise ApiError(400, f"Invalid value at '{name}' (TYPE_BOOL), \"{value}\"")
    if spec.get("format") in ("int64", "uint64") and not re.fullmatch(r"-?\d+", value):
        raise ApiError(400, f"Invalid value at '{name}' (TYPE_INT64), \"{value}\"")
    if kind == "integer":
        if not re.fullmatch(r"-?\d+", value):
            raise ApiError(400, f"Invalid value at '{name}' (TYPE_UINT32), \"{value}\"")
        low, high = spec.get("minimum"), spec.get("maximum")
        if (low is not None and int(value) < int(low)) or (high is not None and int(value) > int(high)):
            raise invalid(name, value, f"Must be between {low} and {high}.")
    if "enum" in spec and value not in spec["enum"]:
        raise invalid(name, value, f"Must be one of {', '.join(spec['enum'])}.")


def _check_request_id(value: str) -> None:
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise invalid("requestId", value, "The request ID must be a valid UUID.") from None
    if parsed == ZERO_UUID or str(parsed) != value.lower():
        raise invalid("requestId", value, "The request ID must be a valid, non-zero UUID.")


def check_body(method: dict[str, Any], method_id: str, raw: bytes) -> Any:
    """The parsed request body, or None for a method without one; ApiError(400) when it breaks the schema."""
    if "request" not in method:
        if raw.strip() not in (b"", b"{}"):
            raise ApiError(400, f"{method_id} takes no request body")
        return None
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise ApiError(400, "Invalid JSON payload received.") from None
    ref = method["request"]["$ref"]
    validate(body, method["request"], ref)
    _check_required(body, schema(ref), "resource", f"compute.{method_id}")
    return body


def _check_required(value: Any, spec: dict[str, Any], where: str, method_id: str) -> None:
    if not isinstance(value, dict):
        return
    for key, prop in spec.get("properties", {}).items():
        if method_id in prop.get("annotations", {}).get("required", []) and value.get(key) in (None, ""):
            raise ApiError(400, f"Required field '{where}.{key}' not specified", "required")


def validate(value: Any, spec: dict[str, Any], where: str, doc: dict[str, Any] | None = None) -> None:
    """Check a JSON value against a discovery-document schema; raise ApiError(400) on the first problem."""
    if "$ref" in spec:
        spec = schema(spec["$ref"], doc)
    kind, fmt = spec.get("type"), spec.get("format")

    def bad(what: str) -> ApiError:
        return ApiError(400, f"Invalid value at '{where}' ({what}): {json.dumps(value)[:80]}")

    if kind == "object":
        if not isinstance(value, dict):
            raise bad("expected an object")
        props, extra = spec.get("properties", {}), spec.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                validate(item, props[key], f"{where}.{key}", doc)
            elif extra is not None:
                validate(item, extra, f"{where}[{key!r}]", doc)
            else:
                raise ApiError(
                    400,
                    f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field.",
                )
    elif kind == "array":
        if not isinstance(value, list):
            raise bad("expected a list")
        for i, item in enumerate(value):
            validate(item, spec["items"], f"{where}[{i}]", doc)
    elif kind == "string":
        _validate_string(value, spec, fmt, bad)
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad("expected an integer")
    elif kind == "number":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise bad("expected a number")
    elif kind == "boolean" and not isinstance(value, bool):
        raise bad("expected a boolean")


def _validate_string(value: Any, spec: dict[str, Any], fmt: str | None, bad: Any) -> None:
    if fmt in ("int64", "uint64") and isinstance(value, int) and not isinstance(value, bool):
        return
    if not isinstance(value, str):
        raise bad("expected a string")
    if "enum" in spec and value not in spec["enum"]:
        raise bad(f"not one of {', '.join(spec['enum'])}")
    if fmt in ("int64", "uint64") and not re.fullmatch(r"-?\d+", value):
        raise bad("expected an integer string")
    if fmt == "byte":
        try:
            base64.b64decode(value, validate=True)
        except binascii.Error:
            raise bad("expected base64") from None
    pattern = spec.get("pattern")
    if pattern and not spec.get("readOnly") and not re.fullmatch(f"(?:{pattern})", value):
        raise bad(f"must be a match of regex '(?:{pattern})'")
