"""The one options value of a shunt: every setting an adapter or the CLI can give, in one place.

Every adapter takes a built :class:`~datashunt.Shunt`; its short constructors (``from_dir``,
``from_registry``) pass their keyword options through :meth:`ShuntOptions.split`, so a new
option is added here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from ..inputs import DEFAULT_MAX_CHARS
from ..llm.retry import RetryPolicy
from ..prompts import DEFAULT_TEMPLATE, PROMPT_MODES, PromptMode
from ..store import CallStore
from ..transfer import PromptTransfer
from .drift import DriftMonitor
from .receipts import Price
from .shadow import Exploration

__all__ = ["OnDrift", "OnError", "ShuntOptions"]

OnError = Literal["fallback", "raise"]
OnDrift = Literal["warn", "shadow"]


@dataclass(frozen=True)
class ShuntOptions:
    """How a shunt prompts, records, retries and watches itself (validated, frozen).

    Attributes:
        prompt_mode: ``"none"``, ``"soft"``, ``"hard"`` or ``"both"`` (see
            :mod:`datashunt.prompts`).
        template: the prompt template (``str.format`` syntax over the shunt variables).
        transfer: shorten long inputs before the LLM sees them (Prompt Transferring).
        store: a :class:`CallStore`, a URL or SQLite path, or ``None``.
        record_small: also record inputs the gate answered alone (distillation uses them).
        on_llm_error: ``"fallback"`` answers with the gate's label (``source="fallback"``);
            ``"raise"`` raises :class:`LLMError`. Either way the store records the failure.
        retry: how failed LLM calls are retried (default :class:`RetryPolicy`).
        max_concurrency: LLM calls in flight at once in batch paths.
        max_chars: longer inputs are refused with :class:`InputError`.
        synonyms: extra surface forms per label for reading the LLM's answer.
        noun: what an input is called in the soft hint ("review").
        model_name: the model recorded when the provider names none (failed calls included).
        audit_rate: the share of gate answers also put to the LLM as audits.
        audit_seed: seeds the audit draw.
        drift: ``True`` (or a :class:`DriftMonitor`) to watch for drift.
        prices: model -> price per million tokens ``(input, output)``, for receipts' cost.
        explore: after a gate takes over from shadowing (or is swapped in), the share of its
            answers also put to the LLM decays from ``explore.start`` to ``explore.floor``
            (:class:`~datashunt.engine.shadow.Exploration`; the default of :meth:`Shunt.shadow`)
            in place of the constant ``audit_rate``: those answers keep the next round learning
            where the gate is sure, and measure its fidelity.
        on_drift: what a drift alarm's audit test does: ``"warn"`` (log and event only), or
            ``"shadow"`` (back to shadowing: every input to the LLM until the registry promotes
            another gate; the default of :meth:`Shunt.shadow`).

    Example:
        >>> ShuntOptions(prompt_mode="hard", audit_rate=0.05).audit_rate
        0.05
    """

    prompt_mode: PromptMode = "soft"
    template: str = DEFAULT_TEMPLATE
    transfer: PromptTransfer | None = None
    store: CallStore | str | Path | None = None
    record_small: bool = True
    on_llm_error: OnError = "fallback"
    retry: RetryPolicy | None = None
    max_concurrency: int = 8
    max_chars: int = DEFAULT_MAX_CHARS
    synonyms: Mapping[str, Sequence[str]] | None = None
    noun: str = "text"
    model_name: str | None = None
    audit_rate: float = 0.0
    audit_seed: int | None = None
    drift: DriftMonitor | bool | None = None
    prices: Mapping[str, Price | tuple[float, float]] | None = None
    explore: Exploration | None = None
    on_drift: OnDrift = "warn"

    def __post_init__(self) -> None:
        if self.on_llm_error not in ("fallback", "raise"):
            raise ConfigError(
                f"on_llm_error must be 'fallback' or 'raise', got {self.on_llm_error!r}"
            )
        if isinstance(self.max_concurrency, bool) or not isinstance(self.max_concurrency, int):
            raise ConfigError(f"max_concurrency must be an int, got {self.max_concurrency!r}")
        if self.max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.prompt_mode not in PROMPT_MODES:
            raise ConfigError(
                f"prompt_mode must be one of {PROMPT_MODES}, got {self.prompt_mode!r}"
            )
        if not 0.0 <= self.audit_rate <= 1.0:
            raise ConfigError(f"audit_rate must be in [0, 1], got {self.audit_rate}")
        if self.on_drift not in ("warn", "shadow"):
            raise ConfigError(f"on_drift must be 'warn' or 'shadow', got {self.on_drift!r}")
        if self.max_chars < 1:
            raise ConfigError(f"max_chars must be >= 1, got {self.max_chars}")

    def with_(self, **changes: Any) -> ShuntOptions:
        """A copy with ``changes`` applied (validated again)."""
        return replace(self, **changes)

    @classmethod
    def names(cls) -> frozenset[str]:
        """The option names (what :meth:`split` takes out of keyword arguments)."""
        return frozenset(f.name for f in fields(cls))

    @classmethod
    def split(cls, kwargs: Mapping[str, Any]) -> tuple[ShuntOptions, dict[str, Any]]:
        """The options among ``kwargs`` (an ``options=`` value merged with loose ones), and
        the rest for the caller (an adapter's own settings)."""
        names = cls.names()
        base = kwargs.get("options")
        if base is not None and not isinstance(base, ShuntOptions):
            raise ConfigError(f"options must be a ShuntOptions, got {type(base).__name__}")
        loose = {k: v for k, v in kwargs.items() if k in names}
        rest = {k: v for k, v in kwargs.items() if k not in names and k != "options"}
        opts = (base or cls()).with_(**loose) if loose else (base or cls())
        return opts, rest
