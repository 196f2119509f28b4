"""GcpProvider: tarball to GCS, GCE image from it, then labels, sharing and family deprecation.

Every step looks at what exists first, so a re-run is a no-op and a stopped run continues where
it stopped: the upload resumes from the offset GCS holds, an existing image is not created again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from imgpub.errors import CloudError, ConfigurationError, ImageConflictError
from imgpub.identity import LABEL_DIGEST
from imgpub.provider import (
    Action,
    ActionKind,
    Artifact,
    Context,
    DiskImage,
    ImageInfo,
    Plan,
    Problem,
    Provider,
    Published,
    Release,
    RetireAction,
    Status,
)
from imgpub_gcp.checks import problems
from imgpub_gcp.clients import GcpClients
from imgpub_gcp.errors import call
from imgpub_gcp.gcs_upload import CHUNK, GcsUpload, UploadResult
from imgpub_gcp.image import GceImages, identity_labels, image_body, source_url, wanted_labels
from imgpub_gcp.reconciliation import reconcile
from imgpub_gcp.releases import releases
from imgpub_gcp.retirement import retire
from imgpub_gcp.settings import GcpSettings
from imgpub_gcp.share import ImageSharing
from imgpub_gcp.survey import FAILED, failed_message, survey

if TYPE_CHECKING:
    from google.cloud import compute_v1

TarStream = Callable[..., Iterable[bytes]]
"""gce_tar_stream(img, *, level, on_progress) -> the gzip'd oldgnu tar of disk.raw."""


def _default_tar_stream(img: DiskImage, **kwargs: Any) -> Iterable[bytes]:
    from imgpub.disk.write_gce import gce_tar_stream

    stream: Iterable[bytes] = gce_tar_stream(img, **kwargs)
    return stream


class GcpProvider(Provider[GcpSettings]):
    name: ClassVar[str] = "gcp"
    settings_model: ClassVar[type[GcpSettings]] = GcpSettings

    def __init__(self, tar_stream: TarStream | None = None, upload_chunk: int = CHUNK) -> None:
        """`tar_stream` and `upload_chunk` are for tests and benchmarks; the defaults are the product."""
        self._tar_stream = tar_stream or _default_tar_stream
        self._upload_chunk = upload_chunk

    # -- validate ---------------------------------------------------------------------------

    def check(self, image: ImageInfo, settings: GcpSettings) -> list[Problem]:
        return problems(image, settings)

    # -- plan -------------------------------------------------------------------------------

    def plan(self, image: ImageInfo, settings: GcpSettings, ctx: Context) -> Plan:
        clients = GcpClients(settings, ctx.target)
        images = self._images(clients, settings, ctx)
        found = survey(images, image, settings, ctx.digest)
        plan = Plan(ctx.target, self.name)
        bucket, obj = settings.bucket, self._object_name(found.name, settings, ctx)
        if found.conflicts:
            plan.conflict = found.conflict_message()
            for old in found.conflicts:
                plan.actions.append(Action("replace", old.name, "delete and create again (--replace)"))
        for old in found.failed:
            plan.actions.append(Action("replace", old.name, "status FAILED: delete it and create it again"))
        current = found.current
        if current is None:
            if not self._uploaded(clients, bucket, obj, ctx):
                plan.actions.append(Action("upload", f"gs://{bucket}/{obj}", "sparse tar.gz of disk.raw"))
            plan.actions.append(Action("create", found.name, f"GCE image in {settings.project}"))
            if settings.share_members:
                plan.actions.append(Action("share", found.name, ", ".join(settings.share_members)))
            if settings.deprecate_previous and settings.family:
                plan.actions.append(Action("deprecate", settings.family, "earlier images of the family"))
            if not settings.keep_upload:
                plan.actions.append(Action("delete", f"gs://{bucket}/{obj}", "upload, once the image exists"))
            return plan
        plan.existing.append(self._artifact(current))
        if current.status != "READY":
            plan.actions.append(Action("wait", current.name, f"{current.status}: GCE is still creating it"))
        for drift in self._drift(clients, images, current, image, settings, ctx):
            plan.actions.append(Action(drift[0], found.name, drift[1]))
        return plan

    # -- publish ----------------------------------------------------------------------------

    def publish(self, image: ImageInfo, settings: GcpSettings, disk: DiskImage, ctx: Context) -> Published:
        errors = [p for p in self.check(image, settings) if not p.warning]
        if errors:
            raise ConfigurationError(f"target {ctx.target}: {errors[0].field}: {errors[0].message}")
        clients = GcpClients(settings, ctx.target)
        images = self._images(clients, settings, ctx)
        found = survey(images, image, settings, ctx.digest)
        published = Published(ctx.target, self.name, changed=False)
        if found.conflicts:
            if not ctx.replace:
                raise ImageConflictError(ctx.target, found.conflict_message())
            for old in found.conflicts:
                ctx.progress.stage(f"delete {old.name}")
                images.delete(old.name)
            published.changed = True
        current, failed = found.current, list(found.failed)
        if current is not None and current.status == "PENDING":
            current = images.until_built(current)  # READY, or FAILED
        if current is not None and current.status == FAILED:
            failed.append(current)
            current = None
        for old in failed:
            ctx.progress.note(f"image {old.name} failed to build earlier; deleting it to create it again")
            images.delete(old.name)
            published.changed = True
        upload: UploadResult | None = None
        if current is None:
            upload = self._upload(clients, disk, image, settings, found.name, ctx)
            current, by_other = self._create(clients, images, upload, image, settings, ctx)
            if by_other:
                published.warnings.append(
                    f"image {current.name} was published by another run at the same time; this run adopted it"
                )
            published.changed |= not by_other or upload.sent > 0
        published.changed |= self._converge(clients, images, current, image, settings, ctx)
        if not settings.keep_upload:
            self._delete_upload(clients, settings, self._object_name(current.name, settings, ctx), ctx)
        extra: dict[str, Any] = {"digest": ctx.digest, "project": settings.project, "family": settings.family}
        if upload is not None:
            extra.update(bytes_sent=upload.sent, object_size=upload.size, resumed_from=upload.resumed_from)
        published.artifacts.append(self._artifact(current, extra))
        return published

    def _upload(
        self,
        clients: GcpClients,
        disk: DiskImage,
        image: ImageInfo,
        settings: GcpSettings,
        name: str,
        ctx: Context,
    ) -> UploadResult:
        ctx.progress.stage("upload", disk.allocation.data_bytes)
        uploader = GcsUpload(clients, ctx.target, ctx.journal, ctx.retry, ctx.progress, self._upload_chunk)
        metadata = identity_labels(image, ctx.digest)

        def stream() -> Iterable[bytes]:
            return self._tar_stream(disk, level=settings.compression_level, on_progress=ctx.progress.advance)

        obj = self._object_name(name, settings, ctx)
        return uploader.run(settings.bucket, obj, metadata, stream, kms_key=settings.upload_key())

    def _create(
        self,
        clients: GcpClients,
        images: GceImages,
        upload: UploadResult,
        image: ImageInfo,
        settings: GcpSettings,
        ctx: Context,
    ) -> tuple[compute_v1.Image, bool]:
        """images.insert from the upload; the image, and whether another run created it meanwhile.
        When GCE refuses it for good (the operation failed, a 4xx), the uploaded object goes too, unless
        keep_upload or another run uploaded it; after throttling or 5xx outlasted the retries it stays,
        so the next run creates the image without uploading again."""
        ctx.progress.stage("register", None)
        body = image_body(image, settings, ctx.digest, source_url(upload.bucket, upload.name))
        try:
            return images.insert(body)
        except CloudError as exc:
            if not settings.keep_upload and not exc.retryable and upload.ours:
                try:
                    deleted = self._delete_upload(clients, settings, upload.name, ctx)
                except CloudError as cleanup:
                    ctx.progress.note(f"could not delete gs://{upload.bucket}/{upload.name}: {cleanup}")
                else:
                    if deleted:
                        ctx.progress.note(
                            f"deleted gs://{upload.bucket}/{upload.name}: the image was not created"
                        )
            raise

    def _converge(
        self,
        clients: GcpClients,
        images: GceImages,
        current: compute_v1.Image,
        image: ImageInfo,
        settings: GcpSettings,
        ctx: Context,
    ) -> bool:
        """Labels, shares and family deprecation: what can change without a new upload."""
        changed = False
        wanted = wanted_labels(image, settings, ctx.digest)
        if dict(current.labels) != wanted:
            ctx.progress.stage("labels")
            images.set_labels(current, wanted)
            changed = True
        if settings.share_members:
            sharing = ImageSharing(clients, settings.project, ctx.target, ctx.retry)
            added = sharing.grant(current.name, list(settings.share_members))
            if added:
                ctx.progress.note(f"shared {current.name} with {', '.join(added)}")
                changed = True
        for old in self._undeprecated_predecessors(images, current, settings):
            ctx.progress.stage(f"deprecate {old.name}")
            images.deprecate(old.name, current.self_link, ctx.now())
            changed = True
        return changed

    # -- status -----------------------------------------------------------------------------

    def status(self, image: ImageInfo, settings: GcpSettings, ctx: Context) -> Status:
        clients = GcpClients(settings, ctx.target)
        images = self._images(clients, settings, ctx)
        found = survey(images, image, settings, ctx.digest)
        status = Status(ctx.target, self.name)
        for old in found.conflicts:
            status.artifacts.append(self._artifact(old))
            status.drift.append(found.conflict_message())
        for old in found.failed:
            status.artifacts.append(self._artifact(old))
            status.drift.append(failed_message(old))
        current = found.current
        if current is None:
            if not found.failed:
                status.drift.append(f"image {found.name} for digest {ctx.digest} is not published")
            return status
        status.artifacts.append(self._artifact(current))
        if current.status != "READY":
            status.drift.append(f"image {found.name} is {current.status}, not READY")
        status.drift.extend(d[1] for d in self._drift(clients, images, current, image, settings, ctx))
        return status

    # -- every version: prune, status --all-versions, reconcile (releases.py, retirement.py, ...) ---

    def regions(self, settings: GcpSettings) -> list[str | None]:
        return [None]  # GCE images are global

    def releases(self, name: str, settings: GcpSettings, ctx: Context) -> list[Release]:
        return releases(GcpClients(settings, ctx.target), settings, name, ctx)

    def retire(
        self,
        name: str,
        settings: GcpSettings,
        release: Release,
        action: RetireAction,
        ctx: Context,
        *,
        replacement: str | None,
    ) -> list[str]:
        return retire(GcpClients(settings, ctx.target), settings, name, release, action, ctx, replacement)

    def reconcile(self, name: str, settings: GcpSettings, release: Release, ctx: Context) -> list[str]:
        return reconcile(GcpClients(settings, ctx.target), settings, name, release, ctx)

    # -- shared pieces ----------------------------------------------------------------------

    @staticmethod
    def _images(clients: GcpClients, settings: GcpSettings, ctx: Context) -> GceImages:
        return GceImages(clients, settings, ctx.target, ctx.retry, ctx.progress)

    @staticmethod
    def _object_name(name: str, settings: GcpSettings, ctx: Context) -> str:
        return f"{settings.object_prefix}{name}-{ctx.digest}.tar.gz"

    def _drift(
        self,
        clients: GcpClients,
        images: GceImages,
        current: compute_v1.Image,
        image: ImageInfo,
        settings: GcpSettings,
        ctx: Context,
    ) -> list[tuple[ActionKind, str]]:
        out: list[tuple[ActionKind, str]] = []
        wanted = wanted_labels(image, settings, ctx.digest)
        if dict(current.labels) != wanted:
            diff = sorted(
                k for k in set(wanted) | set(current.labels) if current.labels.get(k) != wanted.get(k)
            )
            out.append(("tag", f"labels differ: {', '.join(diff)}"))
        if settings.share_members:
            missing = ImageSharing(clients, settings.project, ctx.target, ctx.retry).missing(
                current.name, list(settings.share_members)
            )
            if missing:
                out.append(("share", f"not shared with {', '.join(missing)}"))
        for old in self._undeprecated_predecessors(images, current, settings):
            out.append(("deprecate", f"{old.name} in family {settings.family} is not deprecated"))
        return out

    @staticmethod
    def _undeprecated_predecessors(
        images: GceImages, current: compute_v1.Image, settings: GcpSettings
    ) -> list[compute_v1.Image]:
        if not (settings.deprecate_previous and settings.family):
            return []
        born = _timestamp(current.creation_timestamp)
        return [
            old
            for old in images.family_members(settings.family)
            if old.name != current.name
            and old.deprecated.state in ("", "ACTIVE")
            and old.status != FAILED
            and _timestamp(old.creation_timestamp) <= born
        ]

    @staticmethod
    def _uploaded(clients: GcpClients, bucket: str, obj: str, ctx: Context) -> bool:
        def get() -> bool:
            blob = clients.storage.bucket(bucket).get_blob(obj, retry=None)
            return blob is not None and (blob.metadata or {}).get(LABEL_DIGEST) == ctx.digest

        return call(ctx.target, f"get gs://{bucket}/{obj}", ctx.retry, get)

    def _delete_upload(self, clients: GcpClients, settings: GcpSettings, obj: str, ctx: Context) -> bool:
        """Delete the tarball when this state dir's runs uploaded it; another run's is left to that run
        (its image may still be reading it). False when it was left."""
        uploader = GcsUpload(clients, ctx.target, ctx.journal, ctx.retry, ctx.progress, self._upload_chunk)
        if uploader.delete_own(settings.bucket, obj):
            return True
        ctx.progress.note(f"left gs://{settings.bucket}/{obj}: another run uploaded it and deletes it")
        return False

    @staticmethod
    def _artifact(found: compute_v1.Image, extra: dict[str, Any] | None = None) -> Artifact:
        info: dict[str, Any] = {"status": found.status, "family": found.family or None, **(extra or {})}
        return Artifact("gce-image", found.name, uri=found.self_link, extra=info)


def _timestamp(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return datetime.max
