"""What the batch paths share: an outcome per input, audits merged into gate answers."""

from __future__ import annotations

from dataclasses import replace

from ..errors import DataShuntError
from ..types import ShuntResult

__all__ = ["Outcome", "complete", "with_audit"]

Outcome = ShuntResult | Exception


def with_audit(small: Outcome | None, audit: Outcome) -> Outcome | None:
    """The gate's result, its receipt marked audited and the LLM's answer in ``extra``."""
    if not isinstance(small, ShuntResult):
        return small
    if isinstance(audit, ShuntResult):
        note = {"label": audit.label, "source": audit.source, "record_id": audit.record_id}
        receipt = audit.receipt
    else:
        note, receipt = {"error": str(audit)}, small.receipt
    if small.receipt is not None and receipt is not None:
        receipt = replace(receipt, p_wrong=small.receipt.p_wrong, audited=True)
    return replace(small, extra={**small.extra, "audit": note}, receipt=receipt)


def complete(slots: list[Outcome | None]) -> list[Outcome]:
    missing = [i for i, r in enumerate(slots) if r is None]
    if missing:  # a bug guard: every input must get a result or an error
        raise DataShuntError(f"internal error: no result for inputs {missing}")
    return [r for r in slots if r is not None]
