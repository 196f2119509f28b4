"""Every region of a target looked at once, for the lifecycle commands (releases, retire, reconcile).

A required region that does not answer fails the call; an optional one is skipped with a note, as
publish does: its versions are then left out (the version matrix shows the region missing, with why).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from imgpub.errors import TargetError
from imgpub.provider import Context
from imgpub_aws.catalog import Catalog, catalog
from imgpub_aws.clients import AwsClients
from imgpub_aws.errors import Caller
from imgpub_aws.settings import AwsSettings

__all__ = ["Account", "Scan", "scan"]

MAX_PARALLEL_REGIONS = 8


class Account:
    """One target's clients and retried calls."""

    def __init__(self, settings: AwsSettings, ctx: Context) -> None:
        self.settings, self.ctx = settings, ctx
        self.clients = AwsClients(settings)
        self.call = Caller(ctx.target, ctx.retry)

    def ec2(self, region: str) -> Any:
        return self.clients.client("ec2", region)


@dataclass
class Scan:
    settings: AwsSettings | None = None
    catalogs: dict[str, Catalog] = field(default_factory=dict)
    """Region -> what imgpub holds there, in the settings' order (home, copies, optional)."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Optional region -> why it was not looked at."""

    def skip(self, region: str, exc: TargetError) -> bool:
        """Leave out an optional region that failed to answer (True); a required one is not (False)."""
        settings = self.settings
        if settings is None or region not in settings.optional_regions:
            return False
        if region in (settings.region, *settings.regions):
            return False
        self.skipped[region] = exc.message
        self.catalogs.pop(region, None)
        return True

    def notes(self) -> list[str]:
        return [f"optional region {r} skipped: {why}" for r, why in self.skipped.items()]


def scan(account: Account, name: str, version: str | None = None) -> Scan:
    """imgpub's AMIs and snapshots of `name` (or of one `version`) in every region of the settings."""
    regions = account.settings.all_regions
    out = Scan(account.settings)

    def one(region: str) -> Catalog | None:
        try:
            return catalog(account.ec2(region), account.call, region, name, version)
        except TargetError as exc:
            if not out.skip(region, exc):
                raise
            account.ctx.log.warning("optional region %s skipped: %s", region, exc.message)
            return None

    with ThreadPoolExecutor(
        min(MAX_PARALLEL_REGIONS, len(regions)), thread_name_prefix="imgpub-scan"
    ) as pool:
        found = list(pool.map(one, regions))
    out.catalogs = {c.region: c for c in found if c is not None}
    return out
