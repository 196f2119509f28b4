"""The manifest: YAML in, validated models out, with `file:line:col field: what` errors."""

from imgpub.manifest.loader import Manifest, load_manifest, load_providers
from imgpub.manifest.models import ImageSpec

__all__ = ["ImageSpec", "Manifest", "load_manifest", "load_providers"]
