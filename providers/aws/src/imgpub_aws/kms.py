"""KMS keys for encrypted AMIs: the forms AWS takes, which key each region uses, and the rules.

A key is named four ways (botocore's EC2 model, CopyImage KmsKeyId): a key id
(`1234abcd-12ab-34cd-56ef-1234567890ab`, or `mrk-...` for a multi-Region key), an alias
(`alias/name`), a key ARN (`arn:aws:kms:<region>:<account>:key/<id>`) or an alias ARN
(`arn:aws:kms:<region>:<account>:alias/<name>`). A key lives in one region: CopyImage needs one "in
the destination Region", so each region gets its own (`kms_key_ids`). StartSnapshot (the EBS direct
upload) takes only a key ARN (its model's KmsKeyArn pattern).

An AMI encrypted with the default `aws/ebs` key cannot be shared with another account (its key
policy cannot grant them), so sharing an encrypted image needs a customer managed key everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from imgpub.provider import Problem
from imgpub_aws.names import partition_of

__all__ = ["DEFAULT_ALIAS", "Key", "key_for", "key_form_problem", "kms_problems", "parse_key", "shares"]

_KEY_ID = r"(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})"
_ALIAS = r"alias/[A-Za-z0-9/_-]{1,250}"
"""KMS alias names: alias/ then letters, digits, '/', '_', '-'; 256 characters in all."""
_ARN = re.compile(
    rf"^arn:(?P<partition>aws[a-z-]*):kms:(?P<region>[a-z0-9-]+):\d{{12}}:(?P<name>key/{_KEY_ID}|{_ALIAS})$"
)
DEFAULT_ALIAS = "alias/aws/ebs"
"""The AWS managed key EBS uses when no key is given."""
FORMS = "a key id, alias/<name>, arn:aws:kms:<region>:<account>:key/<id> or an alias ARN"


@dataclass(frozen=True)
class Key:
    text: str
    region: str | None = None
    """The region an ARN names; None for a bare id or alias (resolved where it is used)."""
    partition: str | None = None
    name: str = ""
    """`key/<id>`, `alias/<name>` or the bare id."""

    @property
    def is_arn(self) -> bool:
        return self.region is not None

    @property
    def is_key_arn(self) -> bool:
        return self.is_arn and self.name.startswith("key/")

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_ALIAS


def parse_key(text: str) -> Key | None:
    match = _ARN.match(text)
    if match:
        return Key(text, match["region"], match["partition"], match["name"])
    if re.fullmatch(_KEY_ID, text) or re.fullmatch(_ALIAS, text):
        return Key(text, name=text)
    return None


def key_form_problem(text: str) -> str | None:
    return None if parse_key(text) else f"not a KMS key: give {FORMS}"


class _Settings(Protocol):
    """The AwsSettings fields read here (settings.py imports this module for its validators)."""

    @property
    def region(self) -> str: ...
    @property
    def encrypted(self) -> bool: ...
    @property
    def kms_key_id(self) -> str | None: ...
    @property
    def kms_key_ids(self) -> dict[str, str]: ...
    @property
    def upload(self) -> str: ...
    @property
    def share_accounts(self) -> list[str]: ...
    @property
    def share_organizations(self) -> list[str]: ...
    @property
    def share_ous(self) -> list[str]: ...

    @property
    def all_regions(self) -> list[str]: ...


def key_for(settings: _Settings, region: str) -> str | None:
    """The key for the AMI in `region`: the home region's is kms_key_id (or kms_key_ids[home])."""
    if region == settings.region and settings.kms_key_id:
        return settings.kms_key_id
    return settings.kms_key_ids.get(region)


def shares(settings: _Settings) -> bool:
    """Launch permissions for other accounts (public images are refused when encrypted anyway)."""
    return bool(settings.share_accounts or settings.share_organizations or settings.share_ous)


def kms_problems(settings: _Settings) -> list[Problem]:
    out: list[Problem] = []
    if not settings.encrypted:
        if settings.kms_key_id:
            out.append(Problem("kms_key_id", "kms_key_id needs encrypted: true"))
        if settings.kms_key_ids:
            out.append(Problem("kms_key_ids", "kms_key_ids needs encrypted: true"))
        return out
    home, regions = settings.region, settings.all_regions
    for region in settings.kms_key_ids:
        if region not in regions:
            out.append(
                Problem(f"kms_key_ids.{region}", f"{region} is not one of this target's regions {regions}")
            )
    if settings.kms_key_id and settings.kms_key_ids.get(home, settings.kms_key_id) != settings.kms_key_id:
        out.append(
            Problem(
                f"kms_key_ids.{home}", f"the home region's key is kms_key_id already ({settings.kms_key_id})"
            )
        )
    for region in regions:
        text = key_for(settings, region)
        key = parse_key(text) if text else None
        if key is not None:
            out += _key_problems(settings, region, key)
    if shares(settings):
        defaults = [r for r in regions if (k := key_for(settings, r)) is None or k.endswith(DEFAULT_ALIAS)]
        if defaults:
            out.append(
                Problem(
                    _sharing_field(settings),
                    "an encrypted AMI shared with other accounts needs a customer managed KMS key in "
                    "every region (AWS cannot share one encrypted with the default aws/ebs key); "
                    f"no such key for {', '.join(defaults)}: set kms_key_ids",
                )
            )
    return out


def _sharing_field(settings: _Settings) -> str:
    for field in ("share_accounts", "share_organizations", "share_ous"):
        if getattr(settings, field):
            return field
    return "share_accounts"


def _key_problems(settings: _Settings, region: str, key: Key) -> list[Problem]:
    field = "kms_key_id" if region == settings.region and settings.kms_key_id else f"kms_key_ids.{region}"
    if key.region is not None and key.region != region:
        return [Problem(field, f"the key is in {key.region}; the AMI in {region} needs a key in {region}")]
    if key.partition is not None and key.partition != partition_of(region):
        return [
            Problem(field, f"{region} is in partition {partition_of(region)}, the key in {key.partition}")
        ]
    if region == settings.region and settings.upload == "ebs-direct" and not key.is_key_arn:
        return [
            Problem(
                field,
                "the EBS direct upload (StartSnapshot) takes a key ARN: "
                f"arn:{partition_of(region)}:kms:{region}:<account>:key/<id>",
            )
        ]
    return []
