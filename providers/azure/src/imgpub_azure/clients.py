"""Credentials and SDK clients for one Azure target; the only module that constructs SDK clients.

The SDKs' own retry policies are turned off (retry_total=0): imgpub.retry retries every call,
honouring Retry-After, instead of azure-storage-blob's 15 s x 3^n backoff.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from imgpub.errors import CredentialsError
from imgpub_azure.settings import AzureSettings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.mgmt.compute import ComputeManagementClient
    from azure.storage.blob import BlobClient, ContainerClient

__all__ = ["POLLING_INTERVAL_ENV", "AzureClients", "default_credential", "strip_query"]

POLLING_INTERVAL_ENV = "IMGPUB_AZURE_POLLING_INTERVAL"
"""Seconds between LRO polls when the service sends no Retry-After; honoured only when set (tests)."""

STORAGE_SCOPE = "https://storage.azure.com/.default"
STORAGE_ENV = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_KEY")


def default_credential(settings: AzureSettings) -> TokenCredential:
    """DefaultAzureCredential (environment, workload and managed identity, az CLI...)."""
    from azure.identity import DefaultAzureCredential

    if settings.authority_host:
        return DefaultAzureCredential(authority=settings.authority_host)
    return DefaultAzureCredential()


def strip_query(url: str) -> str:
    """`url` without its query string: a blob URL never carries its SAS into ARM or an error."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class AzureClients:
    """Lazily built clients for one target. `credential` is the ARM (and fallback storage) identity."""

    def __init__(self, settings: AzureSettings, credential: TokenCredential | None = None) -> None:
        self.settings = settings
        self._credential = credential

    @cached_property
    def credential(self) -> TokenCredential:
        return self._credential or default_credential(self.settings)

    @staticmethod
    def polling_interval(default: float) -> float:
        """`default`, unless IMGPUB_AZURE_POLLING_INTERVAL is set (tests poll fast)."""
        value = os.environ.get(POLLING_INTERVAL_ENV)
        return float(value) if value else default

    def _common(self) -> dict[str, Any]:
        return {"retry_total": 0}

    def _storage_kwargs(self) -> dict[str, Any]:
        kwargs = self._common()
        if self.settings.storage_api_version:
            kwargs["api_version"] = self.settings.storage_api_version
        return kwargs

    @cached_property
    def compute(self) -> ComputeManagementClient:
        from azure.mgmt.compute import ComputeManagementClient

        endpoint = self.settings.resource_manager_endpoint.rstrip("/")
        kwargs = self._common()
        if os.environ.get(POLLING_INTERVAL_ENV):
            kwargs["polling_interval"] = float(os.environ[POLLING_INTERVAL_ENV])
        return ComputeManagementClient(
            self.credential,
            self.settings.subscription_id,
            base_url=endpoint,
            credential_scopes=[f"{endpoint}/.default"],
            **kwargs,
        )

    @property
    def account_url(self) -> str:
        if self.settings.blob_endpoint:
            return self.settings.blob_endpoint.rstrip("/")
        return f"https://{self.settings.storage_account}.blob.core.windows.net"

    def blob(self, container: str, name: str) -> BlobClient:
        """The upload blob, authorised by the first of: connection string, SAS token, account key,
        then the token credential (which needs a Storage Blob Data role)."""
        from azure.storage.blob import BlobClient

        kwargs = self._storage_kwargs()
        conn = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
        if conn:
            blob = BlobClient.from_connection_string(conn, container, name, **kwargs)
            self._check_connection_string(blob)
            return blob
        return BlobClient(self.account_url, container, name, credential=self._storage_credential(), **kwargs)

    def container(self, name: str) -> ContainerClient:
        """The upload container, authorised as `blob()` is."""
        from azure.storage.blob import ContainerClient

        kwargs = self._storage_kwargs()
        conn = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
        if conn:
            self.blob(name, "probe")  # refuses a connection string for another account or endpoint
            return ContainerClient.from_connection_string(conn, name, **kwargs)
        return ContainerClient(self.account_url, name, credential=self._storage_credential(), **kwargs)

    def _storage_credential(self) -> Any:
        sas = os.environ.get("AZURE_STORAGE_SAS_TOKEN")
        key = os.environ.get("AZURE_STORAGE_KEY")
        if sas:
            return sas.lstrip("?")
        if key:
            return {"account_name": self.settings.storage_account, "account_key": key}
        return self.credential

    def _check_connection_string(self, blob: BlobClient) -> None:
        """The connection string names its own account and endpoint: they must be the target's."""
        s = self.settings
        where = None
        if s.storage_account and blob.account_name != s.storage_account:
            where = f"storage account {blob.account_name!r}, not storage_account {s.storage_account!r}"
        elif s.blob_endpoint and not strip_query(blob.url).startswith(self.account_url + "/"):
            endpoint = strip_query(blob.url).rsplit("/", 2)[0]
            where = f"blob endpoint {endpoint}, not blob_endpoint {self.account_url}"
        if where is not None:
            raise CredentialsError(
                s.name, f"AZURE_STORAGE_CONNECTION_STRING is for {where}; unset it or fix the target"
            )

    def blob_from_url(self, sas_url: str) -> BlobClient:
        """A blob addressed by a SAS URL (a managed disk opened for upload)."""
        from azure.storage.blob import BlobClient

        return BlobClient.from_blob_url(sas_url, **self._storage_kwargs())

    def storage_account_id(self) -> str:
        s = self.settings
        group = s.storage_resource_group or s.resource_group
        return (
            f"/subscriptions/{s.subscription_id}/resourceGroups/{group}"
            f"/providers/Microsoft.Storage/storageAccounts/{s.storage_account}"
        )

    def compute_id(self, path: str) -> str:
        """ARM id of a Microsoft.Compute resource, e.g. compute_id("images/NAME")."""
        s = self.settings
        group = f"/subscriptions/{s.subscription_id}/resourceGroups/{s.resource_group}"
        return f"{group}/providers/Microsoft.Compute/{path}"
