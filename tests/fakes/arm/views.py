"""Resources as ARM returns them: read-only members filled in (provisioningState, publishedDate,
sizeInGB, a disk's timeCreated, every resource's systemData) and, with $expand=ReplicationStatus, a
version's per-region replication."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["UNKNOWN_TIME", "view"]

UNKNOWN_TIME = "2026-01-01T00:00:00+00:00"
"""The creation time of a resource a test put into the fake by hand (without `_created`)."""


def view(res: dict[str, Any], query: dict[str, str], fail_replication: dict[str, str]) -> dict[str, Any]:
    """The resource as ARM returns it, read-only members included."""
    out = {k: v for k, v in res.items() if not k.startswith("_")}
    out["properties"] = json.loads(json.dumps(res["properties"]))
    created = res.get("_created") or UNKNOWN_TIME
    out["systemData"] = {
        "createdBy": "imgpub-tests",
        "createdByType": "Application",
        "createdAt": created,
        "lastModifiedBy": "imgpub-tests",
        "lastModifiedByType": "Application",
        "lastModifiedAt": res.get("_modified") or created,
    }
    if res.get("type", "").endswith("versions"):
        profile = out["properties"].setdefault("publishingProfile", {})
        profile.setdefault("publishedDate", created)  # published when its create finished, here
        os_disk = out["properties"].get("storageProfile", {}).get("osDiskImage")
        if os_disk is not None:
            os_disk["sizeInGB"] = 1
    if res.get("type", "").endswith("disks"):
        out["properties"].setdefault("timeCreated", created)
    if "_regions" in res and query.get("$expand") == "ReplicationStatus":
        out["properties"]["replicationStatus"] = _replication(res, fail_replication)
    return out


def _replication(res: dict[str, Any], fail_replication: dict[str, str]) -> dict[str, Any]:
    done = res.get("_done", False)
    failures = res.get("_failed", fail_replication)  # as the last replication ended
    summary = []
    for region in res["_regions"]:
        failed = failures.get(region.replace(" ", "").lower())
        state = ("Failed" if failed else "Completed") if done else "Replicating"
        progress = 100 if done and not failed else 50
        summary.append({"region": region, "state": state, "details": failed or "", "progress": progress})
    failed_any = any(s["state"] == "Failed" for s in summary)
    aggregated = "InProgress" if not done else ("Failed" if failed_any else "Completed")
    return {"aggregatedState": aggregated, "summary": summary}
