"""imgpub provider for Google Cloud: a streamed sparse tar.gz in GCS becomes a GCE image."""

from imgpub_gcp.provider import GcpProvider
from imgpub_gcp.settings import GcpSettings

__all__ = ["GcpProvider", "GcpSettings"]
