"""What an image and a gcp target's settings cannot do together on GCE, found before anything is sent.

Field rules live in the settings model (names, keys, licenses, members); these are the rules across
fields and with the image: boot mode and features, labels as GCE takes them, storage and key
locations (regions checked against imgpub_gcp.locations, new ones passing with a warning).
"""

from __future__ import annotations

from imgpub.identity import DIGEST_LENGTH, LABEL_DIGEST, LABEL_NAME, LABEL_VERSION, label_safe
from imgpub.provider import ImageInfo, Problem
from imgpub_gcp.identifiers import kms_key_location
from imgpub_gcp.image import identity_labels, image_name
from imgpub_gcp.labels import MAX_LABELS, label_problem, name_problem
from imgpub_gcp.locations import kms_location_problem, storage_location_problem
from imgpub_gcp.settings import BUCKET_DEFAULT, UEFI_ONLY_FEATURES, GcpSettings
from imgpub_gcp.versions import LABEL_EXACT


def problems(image: ImageInfo, settings: GcpSettings) -> list[Problem]:
    return [
        *_name_problems(image, settings),
        *_boot_problems(image, settings),
        *_label_problems(image, settings),
        *_location_problems(settings),
        *_encryption_problems(settings),
    ]


def _name_problems(image: ImageInfo, settings: GcpSettings) -> list[Problem]:
    out: list[Problem] = []
    if problem := name_problem(image_name(image, settings)):
        out.append(Problem("image_name", f"derived image name {problem}"))
    if settings.deprecate_previous and not settings.family:
        out.append(Problem("deprecate_previous", "needs a family: the previous image is found by family"))
    return out


def _boot_problems(image: ImageInfo, settings: GcpSettings) -> list[Problem]:
    out: list[Problem] = []
    if image.arch == "arm64" and image.boot == "bios":
        out.append(Problem("boot", "arm64 images on GCE boot with UEFI only; set boot: uefi"))
    if image.boot == "bios":
        for feature in sorted(UEFI_ONLY_FEATURES & set(settings.guest_os_features)):
            out.append(Problem("guest_os_features", f"{feature} needs UEFI boot, but the image boots bios"))
        if settings.shielded_instance_initial_state is not None:
            out.append(Problem("shielded_instance_initial_state", "Secure Boot keys need UEFI boot"))
        if image.secure_boot or image.tpm:
            out.append(Problem("boot", "Secure Boot and vTPM on GCE need UEFI boot"))
    if not settings.gvnic and "GVNIC" in settings.guest_os_features:
        out.append(Problem("gvnic", "is false, but guest_os_features lists GVNIC; keep one of them"))
    state = settings.shielded_instance_initial_state
    for path in state.files() if state else []:
        if not path.is_file():
            out.append(Problem("shielded_instance_initial_state", f"{path}: no such file"))
    return out


def _label_problems(image: ImageInfo, settings: GcpSettings) -> list[Problem]:
    """The manifest's labels as GCE takes them (no '.', values of at most 63 lowercase characters):
    one that GCE cannot carry is named, never rewritten. The target's own labels were checked when
    the manifest loaded."""
    out: list[Problem] = []
    for key, value in image.labels.items():
        if problem := label_problem(key, value):
            where = f'image.labels["{key}"]' if "." in key else f"image.labels.{key}"
            out.append(Problem(where, f"{problem}, as GCE labels must be"))
    labels = {**image.labels, **settings.labels}
    if len(labels) != len(set(labels) - {LABEL_NAME, LABEL_VERSION, LABEL_DIGEST, LABEL_EXACT}):
        out.append(
            Problem(
                "labels",
                f"{LABEL_NAME}, {LABEL_VERSION}, {LABEL_EXACT} and {LABEL_DIGEST} are set by imgpub",
            )
        )
    own = identity_labels(image, "0" * DIGEST_LENGTH)
    total = len({**labels, **own})
    if total > MAX_LABELS:
        out.append(
            Problem(
                "labels",
                f"{total} labels with image.labels and imgpub's own {len(own)}, but GCE allows at most "
                f"{MAX_LABELS}",
            )
        )
    if LABEL_EXACT not in own:
        out.append(
            Problem(
                "image.version",
                f"is too long to keep exactly in the GCE label {LABEL_EXACT} (63 characters once escaped): "
                f"prune and status --all-versions read it from {LABEL_VERSION} "
                f"({label_safe(image.version)!r}), where '.', '-' and case look alike",
                warning=True,
            )
        )
    return out


def _location_problems(settings: GcpSettings) -> list[Problem]:
    found = (
        storage_location_problem(f"storage_locations[{i}]", loc)
        for i, loc in enumerate(settings.storage_locations)
    )
    return [p for p in found if p is not None]


def _encryption_problems(settings: GcpSettings) -> list[Problem]:
    out: list[Problem] = []
    for field, key in (("kms_key", settings.kms_key), ("upload_kms_key", settings.upload_kms_key)):
        if key and key != BUCKET_DEFAULT and (problem := kms_location_problem(field, kms_key_location(key))):
            out.append(problem)
    upload = settings.upload_kms_key
    if upload and upload != BUCKET_DEFAULT and kms_key_location(upload) == "global":
        out.append(
            Problem(
                "upload_kms_key",
                "is in location 'global', which Cloud Storage cannot use: the key must be in the bucket's "
                f"location (a region, dual-region or multi-region such as 'us'), or '{BUCKET_DEFAULT}'",
            )
        )
    if settings.kms_key and upload is None and kms_key_location(settings.kms_key) == "global":
        out.append(
            Problem(
                "kms_key",
                "is in location 'global', which Cloud Storage cannot use for the uploaded tarball: it gets "
                "the bucket's default encryption (set upload_kms_key for a bucket that requires CMEK)",
                warning=True,
            )
        )
    return out
