"""GcpProvider: tarball to GCS, GCE image from it, then labels, sharing and family deprecation.

Every step looks at what exists first, so a re-run is a no-op and a stopped run continues where
it stopped: the upload resumes from the offset GCS holds, an existing image is not created again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from imgpub.errors import ConfigurationError, ImageConflictError
from imgpub.identity import DIGEST_LENGTH, LABEL_DIGEST, LABEL_NAME, LABEL_VERSION, label_safe
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
    Status,
)
from imgpub_gcp.clients import GcpClients
from imgpub_gcp.errors import call
from imgpub_gcp.gcs_upload import CHUNK, GcsUpload, UploadResult
from imgpub_gcp.image import GceImages, identity_labels, image_body, image_name, source_url, wanted_labels
from imgpub_gcp.labels import labels_problems, name_problem
from imgpub_gcp.settings import UEFI_ONLY_FEATURES, GcpSettings
from imgpub_gcp.share import ImageSharing

if TYPE_CHECKING:
    from google.cloud import compute_v1

TarStream = Callable[..., Iterable[bytes]]
"""gce_tar_stream(img, *, level, on_progress) -> the gzip'd oldgnu tar of disk.raw."""


def _default_tar_stream(img: DiskImage, **kwargs: Any) -> Iterable[bytes]:
    from imgpub.disk.write_gce import gce_tar_stream

    stream: Iterable[bytes] = gce_tar_stream(img, **kwargs)
    return stream


@dataclass
class _Survey:
    """What exists in the project for this image version."""

    name: str
    current: compute_v1.Image | None = None
    conflicts: list[compute_v1.Image] = field(default_factory=list)


class GcpProvider(Provider[GcpSettings]):
    name: ClassVar[str] = "gcp"
    settings_model: ClassVar[type[GcpSettings]] = GcpSettings

    def __init__(self, tar_stream: TarStream | None = None, upload_chunk: int = CHUNK) -> None:
        """`tar_stream` and `upload_chunk` are for tests and benchmarks; the defaults are the product."""
        self._tar_stream = tar_stream or _default_tar_stream
        self._upload_chunk = upload_chunk

    # -- validate ---------------------------------------------------------------------------

    def check(self, image: ImageInfo, settings: GcpSettings) -> list[Problem]:
        problems: list[Problem] = []
        name = image_name(image, settings)
        if problem := name_problem(name):
            problems.append(Problem("image_name", f"derived image name {problem}"))
        uefi = image.boot != "bios"
        if image.arch == "arm64" and image.boot == "bios":
            problems.append(Problem("boot", "arm64 images on GCE boot with UEFI only; set boot: uefi"))
        if not uefi:
            for feature in sorted(UEFI_ONLY_FEATURES & set(settings.guest_os_features)):
                problems.append(
                    Problem("guest_os_features", f"{feature} needs UEFI boot, but the image boots bios")
                )
            if settings.shielded_instance_initial_state is not None:
                problems.append(Problem("shielded_instance_initial_state", "Secure Boot keys need UEFI boot"))
            if image.secure_boot or image.tpm:
                problems.append(Problem("boot", "Secure Boot and vTPM on GCE need UEFI boot"))
        if settings.deprecate_previous and not settings.family:
            problems.append(
                Problem("deprecate_previous", "needs a family: the previous image is found by family")
            )
        state = settings.shielded_instance_initial_state
        for path in state.files() if state else []:
            if not path.is_file():
                problems.append(Problem("shielded_instance_initial_state", f"{path}: no such file"))
        labels = {**image.labels, **settings.labels}
        problems.extend(
            Problem("labels", p) for p in labels_problems(wanted_labels(image, settings, "0" * DIGEST_LENGTH))
        )
        if len(labels) != len(set(labels) - {LABEL_NAME, LABEL_VERSION, LABEL_DIGEST}):
            problems.append(
                Problem("labels", f"{LABEL_NAME}, {LABEL_VERSION} and {LABEL_DIGEST} are set by imgpub")
            )
        return problems

    # -- plan -------------------------------------------------------------------------------

    def plan(self, image: ImageInfo, settings: GcpSettings, ctx: Context) -> Plan:
        clients = GcpClients(settings, ctx.target)
        images = self._images(clients, settings, ctx)
        survey = self._survey(images, image, settings, ctx)
        plan = Plan(ctx.target, self.name)
        bucket, obj = settings.bucket, self._object_name(survey.name, settings, ctx)
        if survey.conflicts:
            plan.conflict = self._conflict_message(survey, ctx)
            for old in survey.conflicts:
                plan.actions.append(Action("replace", old.name, "delete and create again (--replace)"))
        if survey.current is None:
            if not self._uploaded(clients, bucket, obj, ctx):
                plan.actions.append(Action("upload", f"gs://{bucket}/{obj}", "sparse tar.gz of disk.raw"))
            plan.actions.append(Action("create", survey.name, f"GCE image in {settings.project}"))
            if settings.share_members:
                plan.actions.append(Action("share", survey.name, ", ".join(settings.share_members)))
            if settings.deprecate_previous and settings.family:
                plan.actions.append(Action("deprecate", settings.family, "earlier images of the family"))
            if not settings.keep_upload:
                plan.actions.append(Action("delete", f"gs://{bucket}/{obj}", "upload, once the image exists"))
            return plan
        plan.existing.append(self._artifact(survey.current))
        for drift in self._drift(clients, images, survey.current, image, settings, ctx):
            plan.actions.append(Action(drift[0], survey.name, drift[1]))
        return plan

    # -- publish ----------------------------------------------------------------------------

    def publish(self, image: ImageInfo, settings: GcpSettings, disk: DiskImage, ctx: Context) -> Published:
        problems = self.check(image, settings)
        if problems:
            raise ConfigurationError(f"target {ctx.target}: {problems[0].field}: {problems[0].message}")
        clients = GcpClients(settings, ctx.target)
        images = self._images(clients, settings, ctx)
        survey = self._survey(images, image, settings, ctx)
        published = Published(ctx.target, self.name, changed=False)
        if survey.conflicts:
            if not ctx.replace:
                raise ImageConflictError(ctx.target, self._conflict_message(survey, ctx))
            for old in survey.conflicts:
                ctx.progress.stage(f"delete {old.name}")
                images.delete(old.name, ctx.digest)
            published.changed = True
        current = survey.current
        if current is not None and current.status == "PENDING":
            current = images.until_built(current)
        if current is not None and current.status == "FAILED":
            ctx.progress.note(f"image {current.name} failed to build earlier; creating it again")
            images.delete(current.name, ctx.digest)
            current = None
        upload: UploadResult | None = None
        if current is None:
            upload = self._upload(clients, disk, image, settings, survey.name, ctx)
            ctx.progress.stage("register", None)
            current = images.insert(
                image_body(image, settings, ctx.digest, source_url(upload.bucket, upload.name)), ctx.digest
            )
            published.changed = True
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

        return uploader.run(settings.bucket, self._object_name(name, settings, ctx), metadata, stream)

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
            images.deprecate(old.name, current.self_link)
            changed = True
        return changed

    # -- status -----------------------------------------------------------------------------

    def status(self, image: ImageInfo, settings: GcpSettings, ctx: Context) -> Status:
        clients = GcpClients(settings, ctx.target)
        images = self._images(clients, settings, ctx)
        survey = self._survey(images, image, settings, ctx)
        status = Status(ctx.target, self.name)
        for old in survey.conflicts:
            status.artifacts.append(self._artifact(old))
            status.drift.append(self._conflict_message(survey, ctx))
        if survey.current is None:
            status.drift.append(f"image {survey.name} for digest {ctx.digest} is not published")
            return status
        status.artifacts.append(self._artifact(survey.current))
        if survey.current.status != "READY":
            status.drift.append(f"image {survey.name} is {survey.current.status}, not READY")
        status.drift.extend(d[1] for d in self._drift(clients, images, survey.current, image, settings, ctx))
        return status

    # -- shared pieces ----------------------------------------------------------------------

    @staticmethod
    def _images(clients: GcpClients, settings: GcpSettings, ctx: Context) -> GceImages:
        return GceImages(clients, settings, ctx.target, ctx.retry, ctx.progress)

    @staticmethod
    def _object_name(name: str, settings: GcpSettings, ctx: Context) -> str:
        return f"{settings.object_prefix}{name}-{ctx.digest}.tar.gz"

    def _survey(self, images: GceImages, image: ImageInfo, settings: GcpSettings, ctx: Context) -> _Survey:
        survey = _Survey(image_name(image, settings))
        mine = images.find({LABEL_NAME: label_safe(image.name), LABEL_VERSION: label_safe(image.version)})
        by_name = images.get(survey.name)
        if by_name is not None and all(i.name != by_name.name for i in mine):
            mine.append(by_name)
        for found in mine:
            if found.labels.get(LABEL_DIGEST) == ctx.digest and found.name == survey.name:
                survey.current = found
            elif found.labels.get(LABEL_DIGEST) != ctx.digest:
                survey.conflicts.append(found)
        return survey

    def _conflict_message(self, survey: _Survey, ctx: Context) -> str:
        old = survey.conflicts[0]
        digest = old.labels.get(LABEL_DIGEST) or "none (not made by imgpub)"
        return (
            f"image {old.name} already exists with digest {digest}, "
            f"but this publish has digest {ctx.digest}"
        )

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
            and _timestamp(old.creation_timestamp) <= born
        ]

    @staticmethod
    def _uploaded(clients: GcpClients, bucket: str, obj: str, ctx: Context) -> bool:
        def get() -> bool:
            blob = clients.storage.bucket(bucket).get_blob(obj, retry=None)
            return blob is not None and (blob.metadata or {}).get(LABEL_DIGEST) == ctx.digest

        return call(ctx.target, f"get gs://{bucket}/{obj}", ctx.retry, get)

    def _delete_upload(self, clients: GcpClients, settings: GcpSettings, obj: str, ctx: Context) -> None:
        from google.api_core.exceptions import NotFound

        def delete() -> None:
            try:
                clients.storage.bucket(settings.bucket).delete_blob(obj, retry=None)
            except NotFound:
                return

        call(ctx.target, f"delete gs://{settings.bucket}/{obj}", ctx.retry, delete)

    @staticmethod
    def _artifact(found: compute_v1.Image, extra: dict[str, Any] | None = None) -> Artifact:
        info: dict[str, Any] = {"status": found.status, "family": found.family or None, **(extra or {})}
        return Artifact("gce-image", found.name, uri=found.self_link, extra=info)


def _timestamp(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return datetime.max
