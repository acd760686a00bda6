"""Keywords an adapter refuses with a hint, and the generative shunt built from keywords."""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from ..errors import ConfigError
from ..generative import GenerativeShunt

__all__ = ["GENERATIVE_OPTIONS", "generative_shunt", "refuse_loose", "refuse_unknown"]

#: The keywords :func:`generative_shunt` builds a :class:`GenerativeShunt` from.
GENERATIVE_OPTIONS = frozenset({"policy", "store", "record_small", "retry", "on_llm_error"})


def refuse_loose(owner: str, kwargs: Mapping[str, Any], names: Set[str], how: str) -> None:
    """Refuse the shunt's options passed loose to an adapter that takes a built shunt.

    Raises:
        ConfigError: naming the loose keywords and ``how`` to pass them instead.
    """
    loose = sorted(set(kwargs) & names)
    if loose:
        raise ConfigError(f"{owner} takes a built shunt: {how}, for the options {loose}")


def generative_shunt(kwargs: Mapping[str, Any]) -> tuple[GenerativeShunt, dict[str, Any]]:
    """A :class:`GenerativeShunt` from the :data:`GENERATIVE_OPTIONS` among ``kwargs``, and
    the other keywords (the adapter's own)."""
    options = {k: v for k, v in kwargs.items() if k in GENERATIVE_OPTIONS}
    rest = {k: v for k, v in kwargs.items() if k not in GENERATIVE_OPTIONS}
    return GenerativeShunt(**options), rest


def refuse_unknown(owner: str, kwargs: Mapping[str, Any], known: Set[str], how: str) -> None:
    """Refuse the keywords an adapter does not take.

    Raises:
        ConfigError: naming them and ``how`` to pass such settings instead.
    """
    unknown = sorted(set(kwargs) - known)
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        raise ConfigError(f"{owner} does not take {names}: {how}")
