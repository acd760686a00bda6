"""Keywords an adapter refuses with a hint, and the generative shunt built from keywords."""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any, Self

from ..errors import ConfigError
from ..generative import GenerativePolicy, GenerativeShunt

__all__ = [
    "GENERATIVE_OPTIONS",
    "GenerativeAdapter",
    "generative_shunt",
    "refuse_loose",
    "refuse_unknown",
]

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


class GenerativeAdapter:
    """What a generative adapter (a framework's chat model over a small and a large one, its
    :class:`GenerativeShunt` in a ``shunt`` field) inherits: the shunt's options refused when
    passed loose, and :meth:`from_policy`, which builds the shunt."""

    @classmethod
    def refuse_loose_options(cls, kwargs: Mapping[str, Any]) -> None:
        """Refuse the :data:`GENERATIVE_OPTIONS` passed loose, saying how to pass them.

        Raises:
            ConfigError: naming them.
        """
        how = f"pass shunt=GenerativeShunt(policy, ...) or use {cls.__name__}.from_policy"
        refuse_loose(cls.__name__, kwargs, GENERATIVE_OPTIONS, how)

    @classmethod
    def from_policy(cls, policy: GenerativePolicy | None = None, **kwargs: Any) -> Self:
        """Build the :class:`GenerativeShunt` from ``policy`` and its options as keywords
        (``store=``, ``record_small=``, ``retry=``, ``on_llm_error=``); the other keywords are
        the adapter's own (``small=``, ``large=``, ...)."""
        shunt, rest = generative_shunt({**kwargs, "policy": policy})
        return cls(shunt=shunt, **rest)  # type: ignore[call-arg]
