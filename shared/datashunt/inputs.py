"""Validation of input texts, shared by gates, shunts and adapters."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import InputError

__all__ = ["DEFAULT_MAX_CHARS", "Checked", "validate_text", "validate_texts"]

#: Inputs longer than this are refused by default: the gate truncates safely, but a prompt of
#: millions of characters is almost always a bug upstream (a whole file passed as one review).
DEFAULT_MAX_CHARS = 1_000_000


def validate_text(text: object, *, index: int | None = None, max_chars: int | None = None) -> str:
    """Return ``text`` if it is a non-empty string within ``max_chars``.

    Raises:
        InputError: naming the input (by ``index`` when given) and what to do.
    """
    where = "input" if index is None else f"input {index}"
    if not isinstance(text, str):
        raise InputError(f"{where} must be a str, got {type(text).__name__}: convert it to text")
    if not text.strip():
        raise InputError(f"{where} is empty or whitespace only: there is nothing to classify")
    # an image travels as its data URL (datashunt.images): a photo of a few MB is not a runaway
    # text, so the text limit does not apply to it
    if max_chars is not None and len(text) > max_chars and not text.startswith("data:image/"):
        raise InputError(
            f"{where} has {len(text):,} characters, over the limit of {max_chars:,}: "
            "shorten it, or raise max_chars"
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            # Lone surrogates (e.g. from JSON "\ud800") are not text: tokenizers and databases
            # refuse them, so they are refused here, once, with a way out.
            raise InputError(
                f"{where} holds a lone surrogate at position {exc.start}, which is not valid "
                "Unicode: decode the source bytes with errors='replace'"
            ) from None
    return text


class Checked(list[str]):
    """Texts the engine has validated already (:meth:`datashunt.Shunt.plan`): a gate given
    these does not check them a second time."""


def validate_texts(texts: object, *, max_chars: int | None = None) -> list[str]:
    """Validate a batch: a sequence (not a single string) of valid texts; a :class:`Checked`
    batch is returned as it is.

    Raises:
        InputError: for a bare string (pass ``[text]``) or any invalid element.
    """
    if isinstance(texts, Checked):
        return texts
    if isinstance(texts, str | bytes):
        raise InputError("expected a list of texts, got a single string: pass [text]")
    if not isinstance(texts, Sequence):
        raise InputError(f"expected a list of texts, got {type(texts).__name__}")
    return [validate_text(t, index=i, max_chars=max_chars) for i, t in enumerate(texts)]
