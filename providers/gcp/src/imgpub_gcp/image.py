"""GCE images: the insert body, lookups by imgpub labels, and every call that returns an operation.

Operations are waited on with insert_unary/... + GlobalOperationsClient.wait: the SDK's
ExtendedOperation polls through a client built without our client_options (emulators.md §4).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgpub.errors import CloudError, ConfigurationError, ImageConflictError
from imgpub.identity import LABEL_DIGEST, LABEL_NAME, LABEL_VERSION, label_safe
from imgpub.progress import Progress
from imgpub.provider import ImageInfo
from imgpub.retry import RetryPolicy
from imgpub_gcp.clients import PUBLIC_STORAGE, GcpClients
from imgpub_gcp.errors import call
from imgpub_gcp.labels import derived_image_name
from imgpub_gcp.settings import GcpSettings
from imgpub_gcp.versions import LABEL_EXACT, encode

if TYPE_CHECKING:
    from google.cloud import compute_v1

OPERATION_TIMEOUT = 3600.0
"""Seconds to wait for one image operation; a large import takes tens of minutes."""
WAIT_FLOOR_SECONDS = 0.2
"""globalOperations.wait long-polls (~2 min); when it returns sooner, pause this long before asking again."""
POLL_SECONDS = 5.0
"""At most this long between images.get calls while waiting for an image another run started."""
FIRST_POLL_SECONDS = 0.25
"""The first pause; each next one doubles, up to POLL_SECONDS."""
LABEL_ROUNDS = 5
"""setLabels read-modify-write rounds before giving up on labels that keep changing."""
X509_SUFFIXES = frozenset({".der", ".cer", ".crt", ".pem"})


def image_name(image: ImageInfo, settings: GcpSettings) -> str:
    return settings.image_name or derived_image_name(image.name, image.version)


def identity_labels(image: ImageInfo, digest: str) -> dict[str, str]:
    """imgpub's labels (and the upload object's metadata): name, version, digest, and the exact version
    when it fits a label value (imgpub_gcp.versions)."""
    return version_labels(image.name, image.version, digest)


def version_labels(name: str, version: str, digest: str) -> dict[str, str]:
    out = {LABEL_NAME: label_safe(name), LABEL_VERSION: label_safe(version), LABEL_DIGEST: digest}
    exact = encode(version)
    if exact is not None:
        out[LABEL_EXACT] = exact
    return out


def wanted_labels(image: ImageInfo, settings: GcpSettings, digest: str) -> dict[str, str]:
    return {**image.labels, **settings.labels, **identity_labels(image, digest)}


def guest_os_features(image: ImageInfo, settings: GcpSettings) -> list[str]:
    """The settings' features plus the derived ones: UEFI_COMPATIBLE for UEFI boot, GVNIC unless
    `gvnic: false` (an image without the driver).

    Secure Boot and vTPM are switched on per instance (shieldedInstanceConfig); the image needs only
    UEFI_COMPATIBLE (and a GPT disk with an EFI System Partition) for them.
    """
    derived = {"GVNIC"} if settings.gvnic else set()
    if image.boot != "bios" or image.arch == "arm64":
        derived.add("UEFI_COMPATIBLE")
    return sorted(set(settings.guest_os_features) | derived)


def new_request_id() -> str:
    """A fresh requestId for one call. Its retries reuse it (a lost reply then gets the same operation
    back, not a second image); a new call never does, since GCE answers a reused requestId with the
    earlier operation for a long while, a FAILED one included."""
    return str(uuid.uuid4())


class _NotVisible(Exception):
    """The image's insert is DONE but images.get does not show it yet (eventual consistency)."""


def source_url(bucket: str, name: str) -> str:
    return f"{PUBLIC_STORAGE}/{bucket}/{name}"


def _file_buffer(path: Path) -> compute_v1.FileContentBuffer:
    from google.cloud import compute_v1

    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"shielded_instance_initial_state: cannot read {path}: {exc.strerror}"
        ) from exc
    kind = "X509" if path.suffix.lower() in X509_SUFFIXES else "BIN"
    if content.lstrip().startswith(b"-----BEGIN"):  # PEM: GCE takes the certificate as DER
        pem = content.strip().splitlines()
        end = next((i for i, line in enumerate(pem[1:], 1) if line.startswith(b"-----END")), len(pem))
        content, kind = base64.b64decode(b"".join(pem[1:end])), "X509"
    # FileContentBuffer.content is a proto string carrying base64 (discovery format "byte").
    return compute_v1.FileContentBuffer(content=base64.b64encode(content).decode(), file_type=kind)


def image_body(image: ImageInfo, settings: GcpSettings, digest: str, source: str) -> compute_v1.Image:
    from google.cloud import compute_v1

    body = compute_v1.Image(
        name=image_name(image, settings),
        description=settings.description if settings.description is not None else image.description,
        raw_disk=compute_v1.RawDisk(source=source, container_type="TAR"),
        architecture="ARM64" if image.arch == "arm64" else "X86_64",
        guest_os_features=[compute_v1.GuestOsFeature(type_=f) for f in guest_os_features(image, settings)],
        licenses=list(settings.licenses),
        labels=wanted_labels(image, settings, digest),
        storage_locations=list(settings.storage_locations),
    )
    if settings.family:
        body.family = settings.family
    if settings.kms_key:
        body.image_encryption_key = compute_v1.CustomerEncryptionKey(kms_key_name=settings.kms_key)
    state = settings.shielded_instance_initial_state
    if state is not None:
        initial = compute_v1.InitialStateConfig(
            keks=[_file_buffer(p) for p in state.keks],
            dbs=[_file_buffer(p) for p in state.dbs],
            dbxs=[_file_buffer(p) for p in state.dbxs],
        )
        if state.pk is not None:
            initial.pk = _file_buffer(state.pk)
        body.shielded_instance_initial_state = initial
    return body


@dataclass
class GceImages:
    """Image calls for one project, each retried and mapped at the error boundary."""

    clients: GcpClients
    settings: GcpSettings
    target: str
    retry: RetryPolicy
    progress: Progress
    operation_timeout: float = OPERATION_TIMEOUT

    @property
    def project(self) -> str:
        return self.settings.project

    def get(self, name: str) -> compute_v1.Image | None:
        from google.api_core.exceptions import NotFound

        def get() -> compute_v1.Image | None:
            try:
                return self.clients.images.get(project=self.project, image=name, retry=None)
            except NotFound:
                return None

        return call(self.target, f"get image {name}", self.retry, get)

    def find(self, labels: Mapping[str, str]) -> list[compute_v1.Image]:
        """Images carrying all these labels."""
        return self._list(" AND ".join(f'(labels.{k} = "{v}")' for k, v in sorted(labels.items())))

    def until_built(self, found: compute_v1.Image) -> compute_v1.Image:
        """An image a stopped run left PENDING, once GCE has finished (READY) or given up (FAILED)."""
        deadline = time.monotonic() + self.operation_timeout
        pause = FIRST_POLL_SECONDS
        while found.status == "PENDING":
            if time.monotonic() > deadline:
                raise CloudError(self.target, f"wait for image {found.name}", "still PENDING", retryable=True)
            if pause == FIRST_POLL_SECONDS:
                self.progress.note(f"image {found.name} is still being created; waiting")
            time.sleep(min(pause, POLL_SECONDS))
            pause *= 2
            again = self.get(found.name)
            if again is None:
                raise CloudError(self.target, f"wait for image {found.name}", "the image disappeared")
            found = again
        return found

    def family_members(self, family: str) -> list[compute_v1.Image]:
        return self._list(f'(family = "{family}")')

    def _list(self, filter_: str) -> list[compute_v1.Image]:
        from google.cloud import compute_v1

        request = compute_v1.ListImagesRequest(project=self.project, filter=filter_)
        return call(
            self.target,
            "list images",
            self.retry,
            lambda: list(self.clients.images.list(request=request, retry=None)),
        )

    def insert(self, body: compute_v1.Image) -> tuple[compute_v1.Image, bool]:
        """Create the image and return it once images.get shows it (a new image may stay invisible for
        a moment after its operation is DONE: that is retried by the retry policy), and whether another
        run made it.

        The requestId is made once: the call's retries reuse it, so a retry after a lost reply gets the
        operation the first attempt started. When the image exists already (409: another run created
        it in the meantime) and carries this publish's digest, it is adopted: waited for until built,
        never created twice or deleted."""
        from google.api_core.exceptions import Conflict
        from google.cloud import compute_v1

        request = compute_v1.InsertImageRequest(
            project=self.project, image_resource=body, request_id=new_request_id()
        )

        def insert() -> compute_v1.Operation | None:
            try:
                return self.clients.images.insert_unary(request=request, retry=None)
            except Conflict:
                return None

        op = call(self.target, f"create image {body.name}", self.retry, insert)
        if op is None:
            return self._adopt(body), True
        self.wait(op, f"create image {body.name}")
        return self._until_visible(body.name), False

    def _adopt(self, body: compute_v1.Image) -> compute_v1.Image:
        """The image another run created under this name: ours to use when it carries our digest."""
        found = self._until_visible(body.name)
        digest, theirs = body.labels.get(LABEL_DIGEST), found.labels.get(LABEL_DIGEST)
        if theirs != digest:
            raise ImageConflictError(
                self.target,
                f"image {found.name} was created meanwhile with digest "
                f"{theirs or 'none (not made by imgpub)'}, but this publish has digest {digest}",
            )
        self.progress.note(f"image {found.name} was created by another run at the same time; using it")
        built = self.until_built(found)
        if built.status != "READY":
            raise CloudError(
                self.target,
                f"create image {found.name}",
                f"the image another run created is {built.status}; run publish again",
                retryable=True,
            )
        return built

    def _until_visible(self, name: str) -> compute_v1.Image:
        def get() -> compute_v1.Image:
            found = self.get(name)
            if found is None:
                raise _NotVisible(name)
            return found

        try:
            return self.retry.call(get, lambda exc: isinstance(exc, _NotVisible))
        except _NotVisible:
            raise CloudError(
                self.target,
                f"create image {name}",
                "the operation finished but images.get does not show the image; run publish again",
                retryable=True,
            ) from None

    def delete(self, name: str) -> None:
        """Delete the image; one that is gone already (a retry after a lost reply, another run) is done."""
        from google.api_core.exceptions import NotFound
        from google.cloud import compute_v1

        request = compute_v1.DeleteImageRequest(project=self.project, image=name, request_id=new_request_id())

        def delete() -> compute_v1.Operation | None:
            try:
                return self.clients.images.delete_unary(request=request, retry=None)
            except NotFound:
                return None

        op = call(self.target, f"delete image {name}", self.retry, delete)
        if op is not None:
            self.wait(op, f"delete image {name}", gone_ok=True)

    def deprecate(self, name: str, replacement: str | None, when: datetime | None = None) -> None:
        """images.deprecate: state DEPRECATED since `when` (now), pointing to `replacement` (an image's
        URL) when given. The requestId is made once, so a retry after a lost reply is not done twice."""
        from google.cloud import compute_v1

        status = compute_v1.DeprecationStatus(
            state="DEPRECATED", deprecated=rfc3339(when or datetime.now(UTC))
        )
        if replacement:
            status.replacement = replacement
        request = compute_v1.DeprecateImageRequest(
            project=self.project, image=name, deprecation_status_resource=status, request_id=new_request_id()
        )
        op = call(
            self.target,
            f"deprecate image {name}",
            self.retry,
            partial(self.clients.images.deprecate_unary, request=request, retry=None),
        )
        self.wait(op, f"deprecate image {name}")

    def set_labels(self, found: compute_v1.Image, labels: dict[str, str]) -> None:
        """Set the labels, with the fingerprint of what was read. setLabels has no requestId: after a lost
        reply the retry's fingerprint is stale (412), and so is it when another run changed them; then
        the image is read again, and the labels are set again unless they already are what we want."""
        for _ in range(LABEL_ROUNDS):
            if self._set_labels_once(found, labels):
                return
            again = self.get(found.name)
            if again is None:
                raise CloudError(self.target, f"set labels of image {found.name}", "the image disappeared")
            if dict(again.labels) == labels:
                return
            found = again
        raise CloudError(
            self.target,
            f"set labels of image {found.name}",
            f"the labels kept changing under this run ({LABEL_ROUNDS} tries); run publish again",
            retryable=True,
        )

    def _set_labels_once(self, found: compute_v1.Image, labels: dict[str, str]) -> bool:
        """False when the fingerprint was stale."""
        from google.api_core.exceptions import PreconditionFailed
        from google.cloud import compute_v1

        request = compute_v1.GlobalSetLabelsRequest(labels=labels, label_fingerprint=found.label_fingerprint)

        def set_labels() -> compute_v1.Operation | None:
            try:
                return self.clients.images.set_labels_unary(
                    project=self.project,
                    resource=found.name,
                    global_set_labels_request_resource=request,
                    retry=None,
                )
            except PreconditionFailed:
                return None

        op = call(self.target, f"set labels of image {found.name}", self.retry, set_labels)
        if op is None:
            return False
        self.wait(op, f"set labels of image {found.name}")
        return True

    def _wait_once(self, name: str) -> compute_v1.Operation:
        return self.clients.operations.wait(project=self.project, operation=name, retry=None)

    def wait(self, op: compute_v1.Operation, what: str, *, gone_ok: bool = False) -> None:
        """Long-poll globalOperations.wait until DONE, then raise the operation's errors in full
        (except RESOURCE_NOT_FOUND when `gone_ok`: a delete of what is gone already)."""
        deadline = time.monotonic() + self.operation_timeout
        reported, asked = -1, time.monotonic()
        while op.status != op.Status.DONE:
            if op.progress != reported:
                self.progress.note(f"{what}: {op.status.name.lower()} {op.progress}%")
                reported = op.progress
            if time.monotonic() > deadline:
                raise CloudError(
                    self.target,
                    what,
                    f"operation {op.name} not done after {self.operation_timeout:.0f} s",
                    retryable=True,
                )
            if time.monotonic() - asked < WAIT_FLOOR_SECONDS:  # the server answered early: don't spin
                time.sleep(WAIT_FLOOR_SECONDS)
            asked = time.monotonic()
            op = call(self.target, f"wait for {what}", self.retry, partial(self._wait_once, op.name))
        if op.error and op.error.errors:
            if gone_ok and all(e.code == "RESOURCE_NOT_FOUND" for e in op.error.errors):
                return
            raise CloudError(self.target, what, operation_errors(op), code=op.error.errors[0].code or None)


def rfc3339(when: datetime) -> str:
    """A UTC RFC 3339 timestamp, as DeprecationStatus takes it (`2026-11-29T12:00:00Z`)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def operation_errors(op: Any) -> str:
    parts = [
        f"{e.code}: {e.message}" + (f" (at {e.location})" if e.location else "") for e in op.error.errors
    ]
    if op.http_error_status_code:
        parts.append(f"HTTP {op.http_error_status_code} {op.http_error_message}".rstrip())
    return f"operation {op.name}: " + "; ".join(parts)
