"""One round of the closed loop: distil the champion into a challenger, compare, promote or keep.

1. The store's records since the champion was made (its provenance's ``through``, else its
   registration time), or since the time the caller gives (``since``), up to now.
2. 2CD (:class:`~datashunt.training.Distiller`) from the champion into a challenger,
   re-calibrated, with a certified δ when ``confidence`` is set (an embedding champion: its
   head is refit, :mod:`datashunt.training.distillation.distill_head`).
3. Champion and challenger calibrated on the same data for the same target, scored on the same
   slices (:mod:`.evidence`): the user's gold data and the store's audits.
4. The challenger is registered and promoted only if :func:`~.evidence.judge` says so; a
   report (``report.md``, ``report.json``) is written either way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..data import Dataset, Example
from ..errors import ConfigError, DataError
from ..gates import FloatArray
from ..registry import GateRegistry, as_registry
from ..store import CallStore
from ..store.records import utc_now
from ..training.distillation.distill_config import DistillConfig
from ..training.distillation.distill_data import open_existing_store
from ..training.distillation.distill_head import open_distiller
from ..training.guarantees.targets import PrecisionFloor, Target
from .evidence import EvidenceSlice, GateEvidence, Verdict, evaluate_gate, judge, slices_from

__all__ = ["ALL_RECORDS", "LoopConfig", "RoundReport", "audit_slice", "parse_since", "run_round"]

#: ``since=ALL_RECORDS``: every record in the store, also those made before the champion.
ALL_RECORDS = datetime.min.replace(tzinfo=timezone.utc)  # noqa: UP017 - keeps Python 3.10


def parse_since(text: str) -> datetime:
    """``--since``: ``"all"`` (:data:`ALL_RECORDS`) or an ISO 8601 time (UTC when it has no zone).

    Raises:
        ConfigError: neither.
    """
    if text.strip().lower() == "all":
        return ALL_RECORDS
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigError(
            f"--since takes 'all' or an ISO 8601 time such as 2026-12-01 or "
            f"2026-12-01T09:30:00+00:00, got {text!r}"
        ) from exc
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)  # noqa: UP017


@dataclass(frozen=True)
class LoopConfig:
    """How a round trains and decides.

    Attributes:
        target: what δ must achieve (default small-route precision 0.9).
        confidence: certify δ at this confidence (``None``: the empirical δ).
        tolerance: the most accuracy any slice may lose (a fraction: 0.005 = half a point).
        min_gain: the challenger's LLM share must be at least this much lower (relative).
        min_answers: refuse to train on fewer new usable LLM answers.
        distill: the 2CD hyper-parameters (answers without logprobs are used as one-hot).
    """

    target: Target = field(default_factory=lambda: PrecisionFloor(0.9))
    confidence: float | None = 0.9
    tolerance: float = 0.005
    min_gain: float = 0.0
    min_answers: int = 50
    distill: DistillConfig = field(default_factory=lambda: DistillConfig(trust_unscored=True))


@dataclass(frozen=True)
class RoundReport:
    """What one round did and why."""

    round: int
    champion: str
    promoted: str | None
    since: str
    through: str
    records: int
    llm_answers: int
    stage1: int
    stage2: int
    before: GateEvidence
    after: GateEvidence
    verdict: Verdict
    out_dir: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "round": self.round,
            "champion": self.champion,
            "promoted": self.promoted,
            "since": self.since,
            "through": self.through,
            "records": self.records,
            "llm_answers": self.llm_answers,
            "stage1": self.stage1,
            "stage2": self.stage2,
            "before": self.before.to_json(),
            "after": self.after.to_json(),
            "verdict": self.verdict.to_json(),
            "out_dir": self.out_dir,
            "seconds": self.seconds,
        }

    def to_markdown(self) -> str:
        """The round as a short markdown report."""
        a, b = self.before, self.after
        head = f"promoted {self.promoted}" if self.promoted else f"kept {self.champion}"
        lines = [
            f"# datashunt loop, round {self.round}: {head}",
            "",
            f"{self.records} records since {self.since} ({self.llm_answers} usable LLM answers); "
            f"2CD on {self.stage1} stage-1 and {self.stage2} stage-2 inputs; {self.seconds:.0f} s.",
            "",
            f"| | champion {self.champion} | challenger |",
            "|---|---:|---:|",
            f"| δ | {a.threshold:.4f} | {b.threshold:.4f} |",
            f"| LLM share (calibration data) | {a.llm_rate:.1%} | {b.llm_rate:.1%} |",
            f"| small-route accuracy | {_pct(a.small_precision)} | {_pct(b.small_precision)} |",
            f"| guaranteed at least | {_pct(a.bound)} | {_pct(b.bound)} |",
        ]
        for sa in a.slices:
            sb = b.slice(sa.name)
            lines.append(
                f"| accuracy on {sa.name} ({sa.n}, vs {sa.reference}) | {sa.accuracy:.1%} | "
                f"{sb.accuracy:.1%} |"
            )
        lines += ["", "Findings:", *(f"- {f}" for f in self.verdict.findings)]
        if self.verdict.refused:
            lines += ["", "Why the champion stays:", *(f"- {f}" for f in self.verdict.refused)]
        return "\n".join(lines) + "\n"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def audit_slice(
    store: CallStore, labels: Sequence[str], since: datetime, until: datetime
) -> EvidenceSlice:
    """The audited gate answers in the window, with the LLM's answers as reference."""
    texts, answers = [], []
    for rec in store.iter():  # an audit keeps the gate's route ("small"); the LLM answered too
        if not (since < rec.created_at <= until) or not (rec.extra or {}).get("audit"):
            continue
        if rec.input_text and rec.parse_ok and rec.parsed_label in labels:
            texts.append(rec.input_text)
            answers.append(str(rec.parsed_label))
    return EvidenceSlice("audits", tuple(texts), tuple(answers), "llm")


def _round_dir(root: Path) -> tuple[int, Path]:
    root.mkdir(parents=True, exist_ok=True)
    done = [int(p.name[6:]) for p in root.glob("round-*") if p.name[6:].isdigit()]
    n = max(done, default=0) + 1
    return n, root / f"round-{n:03d}"


def default_rounds_dir(registry: GateRegistry) -> Path:
    """Where round reports go by default: beside a folder registry, else ``./datashunt-rounds``."""
    loc = registry.location
    return Path(loc) / "rounds" if "://" not in loc else Path("datashunt-rounds")


def run_round(
    registry: GateRegistry | str | Path,
    store: CallStore | str | Path,
    *,
    calib: Dataset,
    slices: Mapping[str, Dataset] | None = None,
    train: Dataset | None = None,
    config: LoopConfig | None = None,
    out_root: str | Path | None = None,
    progress: bool = True,
    since: datetime | None = None,
) -> RoundReport:
    """One round (see the module docstring); returns its report, also written to disk.

    Args:
        registry: the gate registry (its champion is distilled and maybe replaced).
        store: the call store the champion's shunt writes.
        calib: labelled data from the traffic's distribution: both gates are calibrated here.
        slices: named labelled data to check for losses (e.g. the original domain's dev).
        train: the champion's original training data, for 2CD's stage 2.
        config: targets, tolerance and 2CD settings.
        out_root: where ``round-NNN/`` goes (default :func:`default_rounds_dir`).
        since: read the records after this time instead of those since the champion was made
            (:data:`ALL_RECORDS`: all of them, e.g. the traffic a first gate was trained on).

    Raises:
        ConfigError: the registry has no champion.
        DataError: too few new LLM answers in the store to train on.
    """
    t0 = time.perf_counter()
    cfg = config or LoopConfig()
    reg = as_registry(registry)
    champ = reg.champion()
    if champ is None:
        raise ConfigError(
            f"the registry {reg.location} has no champion: register and promote the serving "
            "gate first (`datashunt gates add DIR --promote`)"
        )
    meta = reg.get(champ)
    made = datetime.fromisoformat(str(meta.provenance.get("through") or meta.created_at))
    since = made if since is None else since
    through = utc_now()
    n, out = _round_dir(Path(out_root) if out_root else default_rounds_dir(reg))
    named = dict(slices or {})
    merged = _merged(calib, named)
    opened = open_existing_store(store)
    try:
        distiller = open_distiller(  # a fine-tuned champion or an embedding one (head refit)
            reg.path(champ),
            opened,
            dev=calib,
            train=train,
            eval_data=merged,
            since=since,
            until=through,
            progress=progress,
        )
        counts = distiller.store_counts
        if counts.llm_answers < cfg.min_answers:
            raise DataError(
                f"only {counts.llm_answers} usable LLM answers in the store since "
                f"{since.isoformat()}, {cfg.min_answers} needed: serve more traffic with the "
                "store attached, lower min_answers, or read older records too (`datashunt "
                "loop --since all`)"
            )
        report = distiller.run(
            out / "challenger", cfg.distill, target=cfg.target, confidence=cfg.confidence
        )
        audits = audit_slice(opened, distiller.labels, since, through)
    finally:
        if opened is not store:
            opened.close()
    labels = distiller.labels
    evidence = [*slices_from(named), *([audits] if audits.texts else [])]

    def champion(texts: Sequence[str]) -> FloatArray:
        return distiller.teacher_logits(texts, cfg.distill)

    def challenger(texts: Sequence[str]) -> FloatArray:
        return distiller.student_logits_of(out / "challenger", texts, cfg.distill)

    same = (calib, evidence, cfg.target, cfg.confidence)
    before, _ = evaluate_gate(champ, labels, champion, *same)
    after, _ = evaluate_gate("challenger", labels, challenger, *same)
    verdict = judge(before, after, tolerance=cfg.tolerance, min_gain=cfg.min_gain)
    promoted = None
    if verdict.promote:
        version = reg.add(
            out / "challenger",
            parent=champ,
            provenance={
                "store": _safe(store),
                "since": since.isoformat(),
                "through": through.isoformat(),
                "records": counts.records,
                "llm_answers": counts.llm_answers,
                "method": cfg.distill.method,
                "round": n,
            },
            metrics={
                "llm_rate": after.llm_rate,
                "slices": {s.name: s.accuracy for s in after.slices},
            },
            note=f"datashunt loop round {n}",
        )
        reg.promote(version.version, reason=verdict.findings[0])
        promoted = version.version
    result = RoundReport(
        round=n,
        champion=champ,
        promoted=promoted,
        since=since.isoformat(),
        through=through.isoformat(),
        records=counts.records,
        llm_answers=counts.llm_answers,
        stage1=report.selection.stage1,
        stage2=report.selection.stage2_logged + report.selection.stage2_train,
        before=before,
        after=after,
        verdict=verdict,
        out_dir=str(out),
        seconds=time.perf_counter() - t0,
    )
    (out / "report.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    (out / "report.md").write_text(result.to_markdown())
    return result


def _merged(calib: Dataset, named: Mapping[str, Dataset]) -> Dataset:
    """Every labelled text the round scores, as one data set (the distiller scores it once)."""
    seen: dict[str, Example] = {}
    for data in (calib, *named.values()):
        for e in data.examples:
            seen.setdefault(e.text, e)
    return Dataset(tuple(seen.values()), calib.labels, "loop-evidence")


def _safe(store: CallStore | str | Path) -> str:
    if isinstance(store, CallStore):
        return store._safe_url()
    return str(store).split("@")[-1] if "://" in str(store) else str(store)
