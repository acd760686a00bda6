"""Images as inputs: one canonical form (a base64 ``data:`` URL) and the part a message carries.

An image travels through the engine as its data URL, a string, so every step that handles text
(validation, the gate pass, the batch paths, the adapters) handles images too. It leaves the
string form only at the edges: the image gate decodes it, a chat model receives it as an image
part of the user message (:class:`ImagePart`), and the store records its hash and size, never
its bytes (:func:`describe_input`). Pillow is imported only to decode or encode pixels.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DataShuntError, InputError

__all__ = [
    "IMAGE_PLACEHOLDER",
    "ImagePart",
    "as_input",
    "describe_input",
    "image_input",
    "image_part",
    "images_of",
    "is_image_input",
    "load_pil",
]

#: What the prompt's ``{text}`` holds for an image: the image itself is a part of the message.
IMAGE_PLACEHOLDER = "(the attached image)"

_DATA_URL = re.compile(r"^data:(image/[A-Za-z0-9.+-]+);base64,", re.ASCII)
# Magic numbers of the formats chat models take (and WebP, below); anything else is sent as PNG
# after a decode.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


@dataclass(frozen=True)
class ImagePart:
    """One image of a chat message.

    Attributes:
        mime: its media type (``image/png``).
        sha256: the hex digest of its bytes: what the store and the answer cache key hold.
        size: its size in bytes.
        data: the bytes themselves (never compared, printed or recorded).
    """

    mime: str
    sha256: str
    size: int
    data: bytes = field(compare=False, repr=False)

    @property
    def data_url(self) -> str:
        """The ``data:`` URL chat APIs take (OpenAI ``image_url``, LangChain ``url``)."""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"

    @property
    def base64(self) -> str:
        """The bytes as base64 (LangChain's ``base64`` source type)."""
        return base64.b64encode(self.data).decode("ascii")

    def to_json(self) -> dict[str, Any]:
        """What a record holds of an image: its type, hash and size."""
        return {"mime": self.mime, "sha256": self.sha256, "bytes": self.size}

    def describe(self) -> str:
        """``[image image/png sha256:1a2b3c4d5e6f 1,234 bytes]``: its text form in a record."""
        return f"[image {self.mime} sha256:{self.sha256[:12]} {self.size:,} bytes]"


def is_image_input(value: object) -> bool:
    """Whether ``value`` is an image in its canonical form (a base64 ``data:image/...`` URL)."""
    return isinstance(value, str) and _DATA_URL.match(value) is not None


def image_part(data_url: str) -> ImagePart:
    """The :class:`ImagePart` of a data URL.

    Raises:
        InputError: for a string that is not a base64 image data URL.
    """
    m = _DATA_URL.match(data_url)
    if m is None:
        raise InputError("not an image data URL: expected 'data:image/<type>;base64,<data>'")
    try:
        data = base64.b64decode(data_url[m.end() :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"the image data URL holds invalid base64 ({exc})") from None
    if not data:
        raise InputError("the image data URL holds no bytes: there is nothing to classify")
    return ImagePart(m.group(1), hashlib.sha256(data).hexdigest(), len(data), data)


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise DataShuntError(
            "Pillow is needed for image inputs but is not installed: pip install 'datashunt[image]'"
        ) from exc
    return Image


def _mime_of(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in _MAGIC if data.startswith(magic)), None)


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def image_input(value: object, *, index: int | None = None) -> str:
    """Any image as its data URL: a data URL (checked), a path (``str`` or ``Path``), raw bytes
    of an image file, or a PIL image. Formats other than PNG, JPEG, GIF and WebP are
    re-encoded as PNG, so that any chat model can read them.

    Raises:
        InputError: naming the input (by ``index``) and what was expected.
    """
    where = "input" if index is None else f"input {index}"
    if isinstance(value, str) and value.startswith("data:"):
        try:
            image_part(value)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        return value
    if isinstance(value, str | Path):
        path = Path(value).expanduser()
        if not path.is_file():
            raise InputError(
                f"{where} is not an image: no file at {str(path)[:200]!r} (pass a path to an "
                "image file, its bytes, a PIL image or a data:image/...;base64 URL)"
            )
        value = path.read_bytes()
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        if not data:
            raise InputError(f"{where} is empty bytes: there is nothing to classify")
        mime = _mime_of(data)
        if mime is None:
            data, mime = _png(_decode(data, where)), "image/png"
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    if hasattr(value, "save") and hasattr(value, "mode") and hasattr(value, "size"):
        return f"data:image/png;base64,{base64.b64encode(_png(value)).decode('ascii')}"
    raise InputError(
        f"{where} is a {type(value).__name__}, not an image: pass a path, bytes, a PIL image "
        "or a data:image/...;base64 URL"
    )


def _decode(data: bytes, where: str) -> Any:
    image = _pil()
    try:
        img = image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:  # Pillow raises several types for a file it cannot read
        raise InputError(f"{where} could not be read as an image ({exc})") from None
    return img


def load_pil(value: object, *, index: int | None = None) -> Any:
    """A decoded RGB PIL image from any image input (see :func:`image_input`)."""
    where = "input" if index is None else f"input {index}"
    part = image_part(image_input(value, index=index))
    return _decode(part.data, where).convert("RGB")


def as_input(value: object, *, index: int | None = None) -> object:
    """An image given as bytes, a PIL image or a ``Path`` as its data URL; a ``str`` (text, or
    already a data URL) and anything else unchanged, for the text checks to judge."""
    if isinstance(value, bytes | bytearray | memoryview | Path) or (
        hasattr(value, "save") and hasattr(value, "mode") and hasattr(value, "size")
    ):
        return image_input(value, index=index)
    return value


def describe_input(text: str) -> str:
    """What a record holds of an input: the text itself, or an image's hash and size."""
    return image_part(text).describe() if is_image_input(text) else text


def images_of(text: str) -> tuple[ImagePart, ...]:
    """The images an input carries: its own part when it is an image, else none."""
    return (image_part(text),) if is_image_input(text) else ()
