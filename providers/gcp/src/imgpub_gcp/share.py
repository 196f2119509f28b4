"""Sharing an image: roles/compute.imageUser bindings merged into the image's IAM policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from imgpub.retry import RetryPolicy
from imgpub_gcp.clients import GcpClients
from imgpub_gcp.errors import call

if TYPE_CHECKING:
    from google.cloud import compute_v1

IMAGE_USER = "roles/compute.imageUser"


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
        """Add `members` to the imageUser binding (read-modify-write with the etag); returns who was added."""
        from google.cloud import compute_v1

        policy = self._get_policy(image)
        added = [m for m in members if m not in _members(policy)]
        if not added:
            return []
        binding = next((b for b in policy.bindings if b.role == IMAGE_USER and not b.condition), None)
        if binding is None:
            policy.bindings.append(compute_v1.Binding(role=IMAGE_USER, members=added))
        else:
            binding.members.extend(added)
        request = compute_v1.GlobalSetPolicyRequest(policy=policy)
        call(
            self.target,
            f"share image {image}",
            self.retry,
            lambda: self.clients.images.set_iam_policy(
                project=self.project, resource=image, global_set_policy_request_resource=request, retry=None
            ),
        )
        return added

    def _get_policy(self, image: str) -> compute_v1.Policy:
        return call(
            self.target,
            f"get IAM policy of image {image}",
            self.retry,
            lambda: self.clients.images.get_iam_policy(project=self.project, resource=image, retry=None),
        )


def _members(policy: compute_v1.Policy) -> set[str]:
    return {m for b in policy.bindings if b.role == IMAGE_USER and not b.condition for m in b.members}
