"""imgpub: publish golden VM images to AWS, GCP, Azure and local folders from one manifest.

    >>> import imgpub
    >>> manifest = imgpub.load_manifest("imgpub.yaml")     # ManifestError: file:line:col field: what
    >>> result = imgpub.publish(manifest, replace=False)   # never raises for one failing target
    >>> imgpub.build_report(result)["targets"][0]["artifacts"]

Names are imported on first use, so `import imgpub.disk` (and `imgpub --help`) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ImageInfo",
    "ImageSpec",
    "Manifest",
    "RunResult",
    "TargetResult",
    "build_report",
    "json_schema",
    "load_manifest",
    "plan",
    "publish",
    "status",
    "validate",
]

_WHERE = {
    "ImageInfo": "imgpub.provider",
    "ImageSpec": "imgpub.manifest",
    "Manifest": "imgpub.manifest",
    "RunResult": "imgpub.pipeline",
    "TargetResult": "imgpub.pipeline",
    "build_report": "imgpub.report",
    "json_schema": "imgpub.manifest.schema",
    "load_manifest": "imgpub.manifest",
    "plan": "imgpub.pipeline",
    "publish": "imgpub.pipeline",
    "status": "imgpub.pipeline",
    "validate": "imgpub.pipeline",
}

if TYPE_CHECKING:
    from imgpub.manifest import ImageSpec, Manifest, load_manifest
    from imgpub.manifest.schema import json_schema
    from imgpub.pipeline import RunResult, TargetResult, plan, publish, status, validate
    from imgpub.provider import ImageInfo
    from imgpub.report import build_report


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'imgpub' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
