"""Sharing an image: roles/compute.imageUser bindings merged into the image's IAM policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from imgpub.errors import CloudError
from imgpub.retry import RetryPolicy
from imgpub_gcp.clients import GcpClients
from imgpub_gcp.errors import call

if TYPE_CHECKING:
    from google.cloud import compute_v1

IMAGE_USER = "roles/compute.imageUser"
POLICY_ROUNDS = 5
"""Read-modify-write rounds before giving up on a policy that keeps changing."""


@dataclass
class ImageSharing:
    clients: GcpClients
    project: str
    target: str
    retry: RetryPolicy

    def missing(self, image: str, members: list[str]) -> list[str]:
        """Members that do not hold roles/compute.imageUser on the image yet."""
        have = _members(self._get_policy(image))
        return [m for m in members if m not in have]

    def grant(self, image: str, members: list[str]) -> list[str]:
        """Add `members` to the imageUser binding (read-modify-write with the etag); returns who was
        missing. A stale etag (412/409: a retry after a lost reply, or another run sharing too) means
        read the policy again: members it holds by then are done, the rest are added again."""
        missing: list[str] | None = None
        for _ in range(POLICY_ROUNDS):
            policy = self._get_policy(image)
            added = [m for m in members if m not in _members(policy)]
            missing = added if missing is None else missing
            if not added or self._set_policy(image, _with(policy, added)):
                return missing
        raise CloudError(
            self.target,
            f"share image {image}",
            f"its IAM policy kept changing under this run ({POLICY_ROUNDS} tries); run publish again",
            retryable=True,
        )

    def _set_policy(self, image: str, policy: compute_v1.Policy) -> bool:
        """False when the policy's etag was stale."""
        from google.api_core.exceptions import Conflict, PreconditionFailed
        from google.cloud import compute_v1

        request = compute_v1.GlobalSetPolicyRequest(policy=policy)

        def set_policy() -> bool:
            try:
                self.clients.images.set_iam_policy(
                    project=self.project,
                    resource=image,
                    global_set_policy_request_resource=request,
                    retry=None,
                )
            except (PreconditionFailed, Conflict):
                return False
            return True

        return call(self.target, f"share image {image}", self.retry, set_policy)

    def _get_policy(self, image: str) -> compute_v1.Policy:
        return call(
            self.target,
            f"get IAM policy of image {image}",
            self.retry,
            lambda: self.clients.images.get_iam_policy(project=self.project, resource=image, retry=None),
        )


def _with(policy: compute_v1.Policy, added: list[str]) -> compute_v1.Policy:
    from google.cloud import compute_v1

    binding = next((b for b in policy.bindings if b.role == IMAGE_USER and not b.condition), None)
    if binding is None:
        policy.bindings.append(compute_v1.Binding(role=IMAGE_USER, members=added))
    else:
        binding.members.extend(added)
    return policy


def _members(policy: compute_v1.Policy) -> set[str]:
    return {m for b in policy.bindings if b.role == IMAGE_USER and not b.condition for m in b.members}
