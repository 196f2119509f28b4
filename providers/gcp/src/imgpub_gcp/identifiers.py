"""Google Cloud identifiers the APIs refuse unless they have their documented form.

Each `*_problem` returns why a value is refused (a phrase that reads after the field's name, with a
did-you-mean when a near form is valid), or None. The rules:

* project IDs: 6-30 characters, lowercase letters, digits and hyphens, starting with a letter and
  not ending with a hyphen; legacy domain-scoped IDs `example.com:my-project` also exist
  (https://cloud.google.com/resource-manager/docs/creating-managing-projects);
* bucket names: 3-63 characters of lowercase letters, digits, '-', '_' and '.', starting and ending
  with a letter or digit; with dots up to 222, each dot-separated part at most 63; not an IP address,
  no `goog` prefix, no "google" or a misspelling of it (https://cloud.google.com/storage/docs/buckets);
* Cloud KMS keys: projects/<project>/locations/<location>/keyRings/<ring>/cryptoKeys/<key> (ring and
  key IDs: 1-63 letters, digits, '_' or '-'); a key, not one of its versions;
* licenses: projects/<project>/global/licenses/<name>, or that path under the compute v1 URL;
* IAM members: user:, group:, serviceAccount: with an email address, domain: with a domain name,
  allAuthenticatedUsers, or a principal:// / principalSet:// identifier (GCE refuses allUsers on
  images).
"""

from __future__ import annotations

import ipaddress
import re

from imgpub.names import did_you_mean
from imgpub_gcp.labels import NAME_MAX, NAME_RE

PROJECT_RE = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
DOMAIN_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+")
PROJECT_FORM = (
    "must be 6-30 lowercase letters, digits and hyphens, starting with a letter and not ending "
    "with a hyphen (or a domain-scoped ID such as example.com:my-project)"
)
BUCKET_PART_MAX = 63
BUCKET_DOTTED_MAX = 222
BUCKET_CHARS = re.compile(r"[a-z0-9._-]+")
GOOGLE_LOOKALIKE = re.compile(r"g[o0]{2}g[l1]e")
KMS_ID = re.compile(r"[A-Za-z0-9_-]{1,63}")
KMS_FORM = "projects/<project>/locations/<location>/keyRings/<ring>/cryptoKeys/<key>"
LICENSE_URL_PREFIXES = (
    "https://www.googleapis.com/compute/v1/",
    "https://compute.googleapis.com/compute/v1/",
)
LICENSE_FORM = "projects/<project>/global/licenses/<name> (or that path under https://compute.googleapis.com/compute/v1/)"
EMAIL_RE = re.compile(r"[^@\s:/]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
EMAIL_KINDS = ("user", "group", "serviceAccount")
SPECIAL_MEMBERS = ("allAuthenticatedUsers",)
"""allUsers is not among them: GCE does not grant roles on images to allUsers
(https://cloud.google.com/compute/docs/images/managing-access-custom-images, Limitations)."""


def project_problem(value: str) -> str | None:
    domain, colon, project = value.rpartition(":")
    if colon and DOMAIN_RE.fullmatch(domain) and PROJECT_RE.fullmatch(project):
        return None
    if not colon and PROJECT_RE.fullmatch(value):
        return None
    suggestion = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", value.lower())).strip("-")
    hint = f"; did you mean {suggestion!r}?" if PROJECT_RE.fullmatch(suggestion) else ""
    return PROJECT_FORM + hint


def bucket_problem(value: str) -> str | None:
    suggestion = re.sub(r"[^a-z0-9._-]", "", value.lower()).strip("._-")
    hint = f"; did you mean {suggestion!r}?" if suggestion != value and not _bucket_rule(suggestion) else ""
    rule = _bucket_rule(value)
    return rule + hint if rule else None


def _bucket_rule(value: str) -> str | None:
    parts = value.split(".")
    if not BUCKET_CHARS.fullmatch(value):
        return "may hold only lowercase letters, digits, '-', '_' and '.'"
    if not (value[0].isalnum() and value[-1].isalnum()):
        return "must start and end with a letter or digit"
    if len(parts) == 1 and not 3 <= len(value) <= BUCKET_PART_MAX:
        return f"must be 3-{BUCKET_PART_MAX} characters long (it has {len(value)})"
    if len(parts) > 1 and (
        len(value) > BUCKET_DOTTED_MAX or any(not 1 <= len(p) <= BUCKET_PART_MAX for p in parts)
    ):
        return (
            f"with dots must be at most {BUCKET_DOTTED_MAX} characters, "
            f"each dot-separated part 1-{BUCKET_PART_MAX}"
        )
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return "must not be an IP address"
    if value.startswith("goog") or GOOGLE_LOOKALIKE.search(value):
        return "must not start with 'goog' or contain 'google' (or a look-alike)"
    return None


def kms_key_problem(value: str) -> str | None:
    parts = value.split("/")
    if len(parts) > 8 and parts[8] == "cryptoKeyVersions":
        return f"names a key version; name the key itself ({'/'.join(parts[:8])})"
    labels = ("projects", "locations", "keyRings", "cryptoKeys")
    if len(parts) != 8 or tuple(parts[0::2]) != labels:
        return f"must be a Cloud KMS key name: {KMS_FORM}"
    project, location, ring, key = parts[1::2]
    if project_problem(project) and not project.isdigit():
        return f"project {project!r} {PROJECT_FORM}"
    if not re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", location):
        return (
            f"location {location!r} must be a lowercase location name such as 'us-central1', 'us' or 'global'"
        )
    for what, ident in (("key ring", ring), ("key", key)):
        if not KMS_ID.fullmatch(ident):
            return f"{what} ID {ident!r} must be 1-63 letters, digits, '_' or '-'"
    return None


def kms_key_location(value: str) -> str:
    """The location part of a well-formed key name."""
    parts = value.split("/")
    return parts[3] if len(parts) >= 4 else ""


def license_problem(value: str) -> str | None:
    path = next((value[len(p) :] for p in LICENSE_URL_PREFIXES if value.startswith(p)), value)
    parts = path.split("/")
    if len(parts) != 5 or parts[0] != "projects" or parts[2:4] != ["global", "licenses"]:
        return f"must be {LICENSE_FORM}"
    if project_problem(parts[1]):
        return f"project {parts[1]!r} {PROJECT_FORM}"
    if not (len(parts[4]) <= NAME_MAX and NAME_RE.match(parts[4])):
        return f"license name {parts[4]!r} must match [a-z]([-a-z0-9]{{0,61}}[a-z0-9])?"
    return None


def member_problem(value: str) -> str | None:
    kind, colon, rest = value.partition(":")
    if value in SPECIAL_MEMBERS or value.startswith(("principal://", "principalSet://")):
        return None
    if value == "allUsers":
        return "GCE does not share images with allUsers; allAuthenticatedUsers is the widest it takes"
    if colon and kind in EMAIL_KINDS:
        return None if EMAIL_RE.fullmatch(rest) else f"{kind}: needs an email address"
    if colon and kind == "domain":
        return None if DOMAIN_RE.fullmatch(rest) else "domain: needs a domain name such as example.com"
    if colon:
        hint = did_you_mean(kind, (*EMAIL_KINDS, "domain"))
        return f"unknown IAM member kind {kind + ':'!r}{hint}"
    return (
        "an IAM member needs a prefix such as user:, group:, serviceAccount: or domain: "
        "(or is allAuthenticatedUsers)"
    )
