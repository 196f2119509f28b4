"""imgpub provider for Azure: a sparse fixed-VHD page blob, then a managed image and/or a gallery version."""

from imgpub_azure.provider import AzureProvider
from imgpub_azure.settings import AzureSettings

__all__ = ["AzureProvider", "AzureSettings"]
