"""A framework's input read as the text to classify: a dict's key, an image content block."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import InputError
from ..images import as_input, is_image_input

__all__ = ["block_image_url", "keyed_input", "read_inputs", "unclassifiable"]

#: How an adapter reads one input: ``(value, index)`` to its text and template variables
#: (``index`` is ``None`` for a lone input); raises :class:`InputError` when it cannot.
Reader = Callable[[Any, int | None], tuple[object, Mapping[str, Any]]]


def _where(index: int | None) -> str:
    return "input" if index is None else f"input {index}"


def keyed_input(
    value: Mapping[str, Any], key: str, index: int | None = None, *, images: bool = False
) -> tuple[object, dict[str, Any]]:
    """The text under ``key`` of a dict input (with ``images``, an image gate's bytes, PIL
    image or path as its data URL), and the other keys as template variables.

    Raises:
        InputError: the dict has no ``key``, naming the input (by ``index`` in a batch).
    """
    if key not in value:
        raise InputError(
            f"{_where(index)} is a dict with no {key!r} key (keys: {sorted(value)}); pass the "
            f"text under {key!r} or set input_key="
        )
    extras = {k: v for k, v in value.items() if k != key}
    return (as_input(value[key], index=index) if images else value[key]), extras


def read_inputs(values: Sequence[Any], read: Reader) -> tuple[list[object], list[dict[str, Any]]]:
    """Each input's text and template variables, read by ``read``; an input that cannot be read
    keeps its :class:`InputError` in its slot, for :meth:`Shunt.plan <datashunt.Shunt.plan>`
    to raise (``strict``) or keep."""
    texts: list[object] = []
    extras: list[dict[str, Any]] = []
    for i, value in enumerate(values):
        try:
            text, more = read(value, i if len(values) > 1 else None)
        except InputError as exc:
            text, more = exc, {}
        texts.append(text)
        extras.append(dict(more))
    return texts, extras


def unclassifiable(value: object, index: int | None, expected: str) -> InputError:
    """The error for an input that no reader accepts, naming it and what was ``expected``."""
    kind = type(value).__name__
    article = "an" if kind[:1].lower() in "aeiou" else "a"
    return InputError(
        f"{_where(index)} is {article} {kind}, which cannot be classified: pass {expected}"
    )


def block_image_url(block: Mapping[str, Any]) -> str | None:
    """The data URL of a content block holding an inline image, in any of the common forms:
    the standard ``{"type": "image", "base64"|"data", "mime_type"}`` (LangChain v1 and v0.3)
    or an OpenAI ``{"type": "image_url", "image_url": {"url": "data:..."}}``; ``None`` for
    anything else (a URL to fetch is not an image here)."""
    kind = block.get("type")
    if kind == "image":
        data = block.get("base64") or (block.get("data") if block.get("source_type") else None)
        if isinstance(data, str) and data:
            return f"data:{block.get('mime_type') or 'image/png'};base64,{data}"
        url = block.get("url")
        return url if is_image_input(url) else None
    if kind == "image_url":
        ref = block.get("image_url")
        url = ref.get("url") if isinstance(ref, Mapping) else ref
        return url if is_image_input(url) else None
    return None
