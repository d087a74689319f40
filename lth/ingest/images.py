"""Decode one raw image the way real ImageNet files demand, resize it and re-encode it as JPEG.

Pure PIL, no TensorFlow, so it runs in any Spark worker and in the single-process baseline
of the ingest benchmark alike. The output is a function of the input bytes and the settings
only (PIL's encoder is deterministic), which is what makes shards byte-identical whichever
source the bytes came from.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from lth.config.vocabulary import ConfigError


class RejectedInput(Exception):
    """An input that cannot become a training example; its message is the reason in the manifest."""


@dataclass(frozen=True)
class ImageSettings:
    """How every image is normalised (the `image` group of conf/ingest.yaml)."""

    shorter_side: int  # target length of the shorter side in pixels
    allow_upscale: bool  # also enlarge images whose shorter side is below `shorter_side`
    quality: int  # JPEG quality of the re-encoded image, 1-95

    def __post_init__(self) -> None:
        if self.shorter_side < 1:
            raise ConfigError(f"image.shorter_side must be >= 1, got {self.shorter_side}")
        if not 1 <= self.quality <= 95:
            raise ConfigError(f"image.quality must be in [1, 95] (PIL's useful range), got {self.quality}")


@dataclass(frozen=True)
class EncodedImage:
    """A normalised RGB JPEG and the sizes the manifest and the records carry."""

    jpeg: bytes
    height: int
    width: int
    original_height: int
    original_width: int


def _decode(data: bytes) -> Image.Image:
    """Fully decoded image; every way a file can be bad becomes a RejectedInput with a reason."""
    if not data:
        raise RejectedInput("empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # decode now: a truncated file only fails here
    except UnidentifiedImageError:
        raise RejectedInput("not an image (unrecognised format)") from None
    except Image.DecompressionBombError as error:
        raise RejectedInput(f"too large to decode safely ({error})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise RejectedInput(f"cannot decode: {error}") from None
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB whatever the stored mode: CMYK JPEGs, grayscale, palette and alpha PNGs all occur in ImageNet."""
    if image.mode == "RGB":
        return image
    if image.mode in ("P", "PA", "LA") or (image.mode == "RGBA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")  # transparent pixels become white, not black
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        image = image.point(lambda value: value / 256).convert("L")  # 16-bit and float greyscale: scale to 8 bits
    return image.convert("RGB")


def _resized(image: Image.Image, settings: ImageSettings) -> Image.Image:
    """Shorter side set to `settings.shorter_side`, aspect ratio kept."""
    width, height = image.size
    shorter = min(width, height)
    if shorter == settings.shorter_side or (shorter < settings.shorter_side and not settings.allow_upscale):
        return image
    scale = settings.shorter_side / shorter
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def normalise_image(data: bytes, settings: ImageSettings) -> EncodedImage:
    """Decode, orient, convert to RGB, resize and re-encode one image.

    Args:
        data: The raw file bytes, whatever their format or extension (a PNG named .JPEG is fine).
        settings: Target size and JPEG quality.

    Returns:
        The JPEG and its sizes; `original_*` is the stored size before orientation and resizing.

    Raises:
        RejectedInput: The bytes are empty, not an image, truncated or otherwise undecodable.
    """
    image = _decode(data)
    original_width, original_height = image.size
    try:
        image = ImageOps.exif_transpose(image)  # camera orientation tag: store the pixels upright
    except (OSError, ValueError, SyntaxError):  # a corrupt EXIF block: keep the pixels as stored
        pass
    image = _resized(_to_rgb(image), settings)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=settings.quality)
    width, height = image.size
    return EncodedImage(buffer.getvalue(), height, width, original_height, original_width)
