"""The blob container of the page-blob upload: found in `plan`, created (private) by `publish`.

A container is private unless created with a public access level; imgpub never sets one, so the
VHD (a whole disk image) is never readable anonymously.
"""

from __future__ import annotations

from imgpub.errors import CloudError, CredentialsError
from imgpub_azure.clients import AzureClients
from imgpub_azure.errors import Caller

__all__ = ["UploadContainer"]


class UploadContainer:
    def __init__(self, clients: AzureClients, caller: Caller) -> None:
        self.clients = clients
        self.call = caller
        self.name = clients.settings.container

    def exists(self) -> bool | None:
        """Whether the container exists; None when these credentials may not look (a blob SAS)."""
        client = self.clients.container(self.name)
        try:
            return self.call(f"check container {self.name}", client.exists)
        except CredentialsError:
            return None

    def create(self) -> None:
        """Create the container, private (no public access); one made meanwhile is fine."""
        client = self.clients.container(self.name)
        try:
            self.call(f"create container {self.name}", lambda: client.create_container())
        except CloudError as exc:
            if exc.code != "ContainerAlreadyExists":
                raise
