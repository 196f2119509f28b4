"""The built-in `local` provider (registered through the core's own `imgpub.providers` entry point)."""

from imgpub.local.provider import LocalProvider, LocalSettings

__all__ = ["LocalProvider", "LocalSettings"]
