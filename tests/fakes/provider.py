"""A provider defined in the tests (registered with imgpub.plugins.register): it plays MockTransport.

Its settings choose what it does, so one manifest can hold a succeeding and a failing target.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import ClassVar, Literal

from pydantic import Field

from imgpub.errors import CloudError, ImageConflictError
from imgpub.provider import (
    Action,
    Artifact,
    Context,
    DiskImage,
    ImageInfo,
    Plan,
    Problem,
    Provider,
    Published,
    Status,
    TargetSettings,
)

Behaviour = Literal["ok", "fail", "crash", "conflict", "slow", "leak"]


class FakeSettings(TargetSettings):
    provider: Literal["fake"]
    behaviour: Behaviour = "ok"
    regions: list[str] = Field(default_factory=lambda: ["r1"])
    rendezvous: int = Field(default=0, description="Wait until this many targets are publishing at once.")
    wait: float = 10.0
    max_size: int | None = None
    conflict_hint: str | None = None


class FakeProvider(Provider[FakeSettings]):
    name = "fake"
    settings_model = FakeSettings
    calls: ClassVar[list[tuple[str, str]]] = []
    barriers: ClassVar[dict[int, threading.Barrier]] = {}
    lock = threading.Lock()

    def check(self, image: ImageInfo, settings: FakeSettings) -> list[Problem]:
        problems = []
        if settings.max_size is not None and image.virtual_size > settings.max_size:
            problems.append(
                Problem("max_size", f"the image is {image.virtual_size} bytes, more than {settings.max_size}")
            )
        for i, region in enumerate(settings.regions):
            if region.startswith("new-"):
                problems.append(Problem(f"regions[{i}]", f"unknown region {region!r}", warning=True))
            elif not region.startswith("r"):
                problems.append(Problem(f"regions[{i}]", f"no such region {region!r}"))
        return problems

    def plan(self, image: ImageInfo, settings: FakeSettings, ctx: Context) -> Plan:
        self.calls.append(("plan", settings.name))
        plan = Plan(ctx.target, self.name)
        if settings.behaviour == "conflict":
            plan.conflict = "fake image exists with other content"
            plan.conflict_hint = settings.conflict_hint
        plan.actions = [Action("create", f"image-{r}", "fake image", region=r) for r in settings.regions]
        return plan

    def publish(self, image: ImageInfo, settings: FakeSettings, disk: DiskImage, ctx: Context) -> Published:
        self.calls.append(("publish", settings.name))
        ctx.progress.stage("upload", disk.allocation.data_bytes)
        if settings.rendezvous:
            with self.lock:
                barrier = self.barriers.setdefault(
                    settings.rendezvous, threading.Barrier(settings.rendezvous)
                )
            barrier.wait(timeout=settings.wait)
        if settings.behaviour == "fail":
            logging.getLogger("some.sdk").warning("sdk chatter that users should not see")
            time.sleep(0.05)
            raise CloudError(
                ctx.target, "CreateImage", "quota exceeded", code="Quota", region=settings.regions[0]
            )
        if settings.behaviour == "crash":
            raise RuntimeError("provider bug")
        if settings.behaviour == "leak":  # an SDK error that quotes a credential-bearing URL
            raise CloudError(
                ctx.target,
                "PutPage",
                "403 for https://acct.blob.core.windows.net/c/d.vhd?sv=2023&sig=SASSECRET and "
                "https://storage.googleapis.com/upload/o?upload_id=SESSIONSECRET",
            )
        if settings.behaviour == "slow":
            time.sleep(settings.wait)
            self.calls.append(("slept", settings.name))
        if settings.behaviour == "conflict" and not ctx.replace:
            raise ImageConflictError(ctx.target, "fake conflict")
        ctx.progress.advance(disk.allocation.data_bytes)
        ctx.journal.set("done", True)
        artifacts = [Artifact("image", f"img-{settings.name}-{r}", region=r) for r in settings.regions]
        return Published(ctx.target, self.name, artifacts=artifacts)

    def status(self, image: ImageInfo, settings: FakeSettings, ctx: Context) -> Status:
        return Status(ctx.target, self.name, drift=["not published"])
