"""The closed loop: distil the serving gate from logged LLM answers, shadow-test the result
against it on the same evidence, promote only a better one (``datashunt loop``).

See :mod:`.round` for one round, :mod:`.evidence` for the promotion rule and
:mod:`datashunt.registry` for versions, rollback and shunts that follow the champion.
"""

from .evidence import EvidenceSlice, GateEvidence, SliceResult, Verdict, evaluate_gate, judge
from .round import ALL_RECORDS, LoopConfig, RoundReport, audit_slice, parse_since, run_round

__all__ = [
    "ALL_RECORDS",
    "EvidenceSlice",
    "GateEvidence",
    "LoopConfig",
    "RoundReport",
    "SliceResult",
    "Verdict",
    "audit_slice",
    "evaluate_gate",
    "judge",
    "parse_since",
    "run_round",
]
