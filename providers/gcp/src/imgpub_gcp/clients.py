"""Authenticated Google clients for one target, pointed at real Google or at local stand-ins.

Credentials rule (explicit, so a typo can never send real data anonymously):
  * anonymous (no Authorization header) only when IMGPUB_GCP_ANONYMOUS=1 AND an endpoint is
    overridden (settings storage_endpoint/compute_endpoint or STORAGE_EMULATOR_HOST);
  * IMGPUB_GCP_ANONYMOUS=1 without any override is a CredentialsError;
  * otherwise google.auth.default() (ADC: GOOGLE_APPLICATION_CREDENTIALS, gcloud, metadata server).
STORAGE_EMULATOR_HOST is honoured as the GCS client does; settings.storage_endpoint wins over it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from imgpub.errors import CredentialsError
from imgpub_gcp.errors import gcp_errors
from imgpub_gcp.settings import GcpSettings

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.auth.transport.requests import AuthorizedSession
    from google.cloud import compute_v1, storage  # type: ignore[attr-defined]

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
PUBLIC_STORAGE = "https://storage.googleapis.com"
ANONYMOUS_ENV = "IMGPUB_GCP_ANONYMOUS"
REQUEST_TIMEOUT = 120.0
"""Seconds for one HTTP request (a chunk PUT of 16 MiB at 1 Mbit/s would need longer; raise it then)."""


def storage_endpoint(settings: GcpSettings) -> str | None:
    if settings.storage_endpoint:
        return settings.storage_endpoint.rstrip("/")
    env = os.environ.get("STORAGE_EMULATOR_HOST")
    if env:
        return (env if "://" in env else f"http://{env}").rstrip("/")
    return None


def credentials(settings: GcpSettings, target: str) -> Credentials:
    overridden = bool(storage_endpoint(settings) or settings.compute_endpoint)
    if os.environ.get(ANONYMOUS_ENV) == "1":
        if not overridden:
            raise CredentialsError(
                target,
                f"{ANONYMOUS_ENV}=1 is only allowed with storage_endpoint/compute_endpoint or "
                "STORAGE_EMULATOR_HOST pointing at local stand-ins",
            )
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()  # type: ignore[no-untyped-call]
    import google.auth

    with gcp_errors(target, "find credentials"):
        creds, _project = google.auth.default(scopes=list(SCOPES))
    return creds


@dataclass
class GcpClients:
    """The three clients one target needs, built lazily from the same credentials."""

    settings: GcpSettings
    target: str

    @cached_property
    def credentials(self) -> Credentials:
        return credentials(self.settings, self.target)

    @cached_property
    def storage(self) -> storage.Client:
        from google.cloud import storage  # type: ignore[attr-defined]

        endpoint = storage_endpoint(self.settings)
        options = {"api_endpoint": endpoint} if endpoint else None
        return storage.Client(
            project=self.settings.project, credentials=self.credentials, client_options=options
        )

    @cached_property
    def session(self) -> AuthorizedSession:
        """Raw HTTP session for the resumable upload protocol (same credentials, same endpoint)."""
        from google.auth.transport.requests import AuthorizedSession

        return AuthorizedSession(self.credentials)  # type: ignore[no-untyped-call]

    @cached_property
    def images(self) -> compute_v1.ImagesClient:
        from google.cloud import compute_v1

        return compute_v1.ImagesClient(
            transport="rest", credentials=self.credentials, client_options=self._compute_options()
        )

    @cached_property
    def operations(self) -> compute_v1.GlobalOperationsClient:
        from google.cloud import compute_v1

        return compute_v1.GlobalOperationsClient(
            transport="rest", credentials=self.credentials, client_options=self._compute_options()
        )

    def _compute_options(self) -> dict[str, str] | None:
        endpoint = self.settings.compute_endpoint
        return {"api_endpoint": endpoint.rstrip("/")} if endpoint else None
