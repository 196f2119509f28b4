"""imgpub provider for AWS: EBS direct upload (or S3 + ImportSnapshot), RegisterImage, CopyImage, sharing."""

from imgpub_aws.provider import AwsProvider
from imgpub_aws.settings import AwsSettings

__all__ = ["AwsProvider", "AwsSettings"]
