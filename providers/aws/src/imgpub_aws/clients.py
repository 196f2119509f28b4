"""boto3 clients for one target: credentials (profile, assumed role), endpoints, timeouts, pools.

boto3 reads AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE> itself; `endpoint_url` is passed only
when the settings name one, so those variables keep working. boto3's own retries are switched off
(one attempt): imgpub.retry decides what is retried, so the back-off and budget are ours.
boto3 is imported on first use, so loading a manifest does not pay for it.
"""

from __future__ import annotations

import threading
from typing import Any

from imgpub_aws.errors import aws_errors, remember_reply
from imgpub_aws.settings import AwsSettings

CONNECT_TIMEOUT = 10
"""Seconds to open a connection; a dead endpoint should fail fast and be retried."""
READ_TIMEOUT = 60
"""Seconds to wait for a response: a 512 KiB PutSnapshotBlock takes well under a second."""


class AwsClients:
    """Creates and caches clients per (service, region, pool size); thread-safe."""

    def __init__(self, settings: AwsSettings, session: Any = None) -> None:
        self.settings = settings
        self._session = session
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str, int], Any] = {}

    def session(self) -> Any:
        with self._lock:
            if self._session is None:
                with aws_errors(self.settings.name, "load credentials", None):
                    self._session = self._make_session()
            return self._session

    def _make_session(self) -> Any:
        import boto3  # type: ignore[import-untyped]

        base = boto3.session.Session(profile_name=self.settings.profile)
        if not self.settings.role_arn:
            return base
        params: dict[str, Any] = {"RoleArn": self.settings.role_arn, "RoleSessionName": "imgpub"}
        if self.settings.external_id:
            params["ExternalId"] = self.settings.external_id
        sts = self._watched(
            base.client("sts", region_name=self.settings.region, config=self.config(), **self._endpoint())
        )
        with aws_errors(self.settings.name, "AssumeRole", self.settings.region):
            creds = sts.assume_role(**params)["Credentials"]
        return boto3.session.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )

    def _endpoint(self) -> dict[str, str]:
        return {"endpoint_url": self.settings.endpoint_url} if self.settings.endpoint_url else {}

    @staticmethod
    def config(pool: int = 10) -> Any:
        from botocore.config import Config  # type: ignore[import-untyped]

        return Config(
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=pool,
            user_agent_extra="imgpub",
        )

    def client(self, service: str, region: str | None = None, *, pool: int = 10) -> Any:
        key = (service, region or self.settings.region, pool)
        session = self.session()
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._watched(
                    session.client(service, region_name=key[1], config=self.config(pool), **self._endpoint())
                )
            return self._cache[key]

    def new_client(self, service: str, region: str, *, pool: int = 1) -> Any:
        """An uncached client (one per upload thread: botocore clients share a pool per client)."""
        session = self.session()
        with self._lock:  # creating clients from one boto3 session is not thread-safe
            return self._watched(
                session.client(service, region_name=region, config=self.config(pool), **self._endpoint())
            )

    @staticmethod
    def _watched(client: Any) -> Any:
        """Every reply's status and headers are kept for errors.py, also when botocore cannot parse it."""
        client.meta.events.register("before-parse", remember_reply)
        return client
