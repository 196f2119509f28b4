"""The disk engine: read any supported image through its allocation map, write cloud formats as streams.

Pure: imports no other imgpub module, no cloud SDK, no rich, no typer.
"""

from imgpub.disk.detect import detect_format, open_image
from imgpub.disk.extents import AllocationMap, Extent
from imgpub.disk.image import DiskImage, ImageFormatError, UnsupportedImageError
from imgpub.disk.zeros import is_zero

__all__ = [
    "AllocationMap",
    "DiskImage",
    "Extent",
    "ImageFormatError",
    "UnsupportedImageError",
    "detect_format",
    "is_zero",
    "open_image",
]
