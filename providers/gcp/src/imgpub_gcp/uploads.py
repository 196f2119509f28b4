"""Upload objects imgpub left in the bucket: found by their metadata, deleted with their generation.

Publish deletes its tarball once the image exists, so an object that stays is a leftover: the
upload was kept (`keep_upload`), its image was never made (a run that gave up after the upload, or
died on a machine that never came back), or a delete of the version stopped after the image and
before the object. Prune deletes them with their version.

Only objects under `object_prefix` that carry imgpub's metadata for this image name (`imgpub-name`,
`imgpub-version`, `imgpub-digest`) are considered, and only once they are older than
LEFTOVER_AFTER: a younger one may be the upload of a publish running right now, whose
`images.insert` is about to read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from imgpub.identity import LABEL_DIGEST, LABEL_NAME, label_safe
from imgpub.provider import Artifact
from imgpub.retry import RetryPolicy
from imgpub_gcp.clients import GcpClients
from imgpub_gcp.errors import call
from imgpub_gcp.settings import GcpSettings
from imgpub_gcp.versions import version_of

__all__ = ["LEFTOVER_AFTER", "UploadObject", "delete_object", "leftover_uploads"]

LEFTOVER_AFTER = timedelta(days=1)
"""An upload younger than this may still be read by a running publish's images.insert (an hour at
most), so it is not a leftover yet."""
KIND = "gcs-object"


@dataclass(frozen=True)
class UploadObject:
    bucket: str
    name: str
    generation: int
    created: datetime | None
    version: str
    exact: bool
    """The version came from the exact label (False: guessed from imgpub-version)."""
    digest: str

    @property
    def url(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    def artifact(self) -> Artifact:
        extra = {"generation": self.generation, "digest": self.digest, "version_exact": self.exact}
        return Artifact(KIND, self.url, extra=extra)


def leftover_uploads(
    clients: GcpClients, settings: GcpSettings, target: str, retry: RetryPolicy, name: str, now: datetime
) -> list[UploadObject]:
    """imgpub's upload objects of the image `name` older than LEFTOVER_AFTER (objects.list, paged)."""
    bucket = settings.bucket

    def listed() -> list[Any]:
        return list(clients.storage.list_blobs(bucket, prefix=settings.object_prefix, retry=None))

    out = []
    for blob in call(target, f"list gs://{bucket}/{settings.object_prefix}", retry, listed):
        metadata = dict(blob.metadata or {})
        found = version_of(metadata)
        if found is None or metadata.get(LABEL_NAME) != label_safe(name) or not metadata.get(LABEL_DIGEST):
            continue
        created = blob.time_created
        if created is None or now - created < LEFTOVER_AFTER:
            continue
        version, exact = found
        out.append(
            UploadObject(
                bucket, blob.name, int(blob.generation or 0), created, version, exact, metadata[LABEL_DIGEST]
            )
        )
    return sorted(out, key=lambda o: o.name)


def from_artifact(artifact: Artifact) -> tuple[str, str, int]:
    """(bucket, object, generation) of an artifact `UploadObject.artifact` made."""
    bucket, _, name = artifact.id.removeprefix("gs://").partition("/")
    return bucket, name, int(artifact.extra.get("generation") or 0)


def delete_object(
    clients: GcpClients, target: str, retry: RetryPolicy, bucket: str, name: str, generation: int
) -> bool:
    """Delete that generation of the object; False when it was gone already (another prune) or was
    replaced since it was listed (someone's new upload: left alone). That generation gone on a retry
    means the first attempt deleted it and its reply was lost: True."""
    from google.api_core.exceptions import NotFound, PreconditionFailed

    attempts = 0

    def delete() -> bool:
        nonlocal attempts
        attempts += 1
        try:
            clients.storage.bucket(bucket).delete_blob(
                name, if_generation_match=generation or None, retry=None
            )
        except (NotFound, PreconditionFailed):
            if attempts == 1:
                return False
            now = clients.storage.bucket(bucket).get_blob(name, retry=None)
            return now is None or int(now.generation or 0) != generation  # ours went: the first try
        return True

    return call(target, f"delete gs://{bucket}/{name}", retry, delete)


def is_upload(artifact: Artifact) -> bool:
    return artifact.kind == KIND
