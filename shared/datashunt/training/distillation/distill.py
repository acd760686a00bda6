"""Offline 2-Stage Confidence Distillation (2CD): the LLM's logged answers back into the gate.

"Large helps small" in Data Shunt (AAAI-24). Two copies of the gate: the *specific* model
F_s1 (the production gate, frozen) and the *learnable* model F_s2 (initialised from it).
Rounds alternate two stages:

1. on logged inputs where ``C_s1 < δ`` and the LLM was confident (``C_l > δ_l``), minimise
   ``KL(C_l || F_s2(x))``: learn the LLM's distribution over the labels;
2. on inputs where ``C_s1 >= δ`` (logged ones and, if given, the training data), minimise
   ``KL(F_s1(x) || F_s2(x))``: keep what the production gate knew.

Both distributions of the gates are taken at the production gate's calibrated temperature τ,
the scale on which ``C_s`` is compared with δ and with ``C_l`` (stage 2 may use another T). The
KL is taken in the direction of standard distillation (target first), which is defined for
one-hot targets too. The result is a gate directory in the ``train-gate`` format with a
re-calibrated policy and a report. Runs on CPU, one GPU or many via ``accelerate launch``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ...data import Dataset
from ...errors import ConfigError, DataError
from ...gates import FloatArray
from ...policy import POLICY_FILE, ShuntPolicy
from ...store import CallStore
from ..fitting.models import load_classifier, make_accelerator, predict_logits
from ..guarantees.calibration import LogitsGate, calibrate
from ..guarantees.targets import Target, target_from_policy
from .distill_config import DistillConfig, check_gate_dir, check_labels, gate_kind
from .distill_data import StageData, open_existing_store, read_logged, select_stages
from .distill_report import DistillReport, build_slices, write_outputs
from .distill_train import StageLoss, train_copy

__all__ = ["Distiller"]


class Distiller:
    """Distil a call store into a copy of a gate; reusable for several runs (ablations).

    Loading the production gate, reading the store and scoring with the frozen model happen
    once; each :meth:`run` trains a fresh learnable copy.

    Model work goes through hooks (``_load_model``, ``_predict``, ``_load_student``, ``_train``).

    Args:
        gate_dir: the production gate F_s1, a fine-tuned HF gate directory with its policy (an
            embedding gate: :func:`~.distill_head.open_distiller`, which refits its head).
        store: a :class:`CallStore`, a SQLite path or a SQLAlchemy URL.
        dev: labelled original dev data: forgetting is measured here, and (unless ``calib`` is
            given) the new δ is calibrated here.
        train: the gate's original training data (its labels are not used), for stage 2.
        eval_data: labelled data from the logged distribution, for accuracy after the shift.
        calib: labelled data to re-calibrate on instead of ``dev``.
        since: use only the records written after this time (``datashunt loop``: the records
            since the serving gate was made) ...
        until: ... and not after this one.
        accelerator: an :class:`accelerate.Accelerator`; one is made from the environment.
        progress: show progress bars.

    Example:
        >>> d = Distiller("runs/gate", "runs/calls.sqlite", dev=dev)  # doctest: +SKIP
        >>> print(d.run("runs/gate-2cd").format())  # doctest: +SKIP
    """

    def __init__(
        self,
        gate_dir: str | Path,
        store: CallStore | str | Path,
        *,
        dev: Dataset,
        train: Dataset | None = None,
        eval_data: Dataset | None = None,
        calib: Dataset | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        accelerator: Any | None = None,
        progress: bool = True,
    ) -> None:
        self.gate_dir = check_gate_dir(gate_dir)
        self.progress = progress
        opened = open_existing_store(store)  # a missing store fails before any model loads
        try:
            self._load(accelerator, dev, train, eval_data, calib)
            records = opened.iter()
            if since is not None or until is not None:
                lo = since or datetime.min.replace(tzinfo=timezone.utc)  # noqa: UP017
                hi = until or datetime.max.replace(tzinfo=timezone.utc)  # noqa: UP017
                window = [r for r in records if lo < r.created_at <= hi]
                if not window:
                    raise DataError(
                        f"no records in the store between {lo.isoformat()} and "
                        f"{hi.isoformat()}: serve traffic with the store attached first, or "
                        "read older records too (`datashunt loop --since all` or a time)"
                    )
                records = iter(window)
            self.logged, self.store_counts = read_logged(records, self.labels)
        finally:
            if opened is not store:
                opened.close()
        self._teacher_cache: dict[tuple[int, str], FloatArray] = {}
        #: the last run's learnable gate: raw logits per scored text (dev, calib, logged, eval)
        self.student_logits: dict[str, FloatArray] = {}

    def _load(
        self,
        accelerator: Any | None,
        dev: Dataset,
        train: Dataset | None,
        eval_data: Dataset | None,
        calib: Dataset | None,
    ) -> None:
        has_policy = (self.gate_dir / POLICY_FILE).is_file()
        self.policy = ShuntPolicy.load(self.gate_dir) if has_policy else None
        self.accelerator = accelerator if accelerator is not None else make_accelerator()
        self.labels = self._load_model()
        if self.policy is not None and tuple(self.policy.labels) != self.labels:
            raise ConfigError(
                f"the policy beside {self.gate_dir} has labels {list(self.policy.labels)}, the "
                f"model {list(self.labels)}: re-calibrate the gate (`datashunt calibrate`)"
            )
        self.dev, self.train, self.eval_data = dev, train, eval_data
        self.calib = calib if calib is not None else dev
        check_labels(dev, self.labels, "the dev data")
        check_labels(eval_data, self.labels, "the eval data")
        check_labels(calib, self.labels, "the calibration data")

    def _load_model(self) -> tuple[str, ...]:
        """Load F_s1 (hook); returns its labels in output order."""
        if gate_kind(self.gate_dir) == "embedding":
            raise ConfigError(f"{self.gate_dir} is an embedding gate: use open_distiller()")
        self.teacher, self.tokenizer = load_classifier(self.gate_dir)
        self.teacher.to(self.accelerator.device)
        id2label = {int(i): str(n) for i, n in self.teacher.config.id2label.items()}
        return tuple(id2label[i] for i in range(len(id2label)))

    def teacher_logits(self, texts: Sequence[str], config: DistillConfig) -> FloatArray:
        """F_s1's raw logits, computed once per text (and ``max_length``)."""
        key = config.max_length
        todo = list(dict.fromkeys(t for t in texts if (key, t) not in self._teacher_cache))
        if todo:
            logits = self._predict(self.teacher, todo, config, "score F_s1")
            self._teacher_cache.update({(key, t): row for t, row in zip(todo, logits, strict=True)})
        k = len(self.labels)
        rows = [self._teacher_cache[(key, t)] for t in texts]
        return np.stack(rows) if rows else np.zeros((0, k))

    def student_logits_of(
        self, out_dir: str | Path, texts: Sequence[str], config: DistillConfig
    ) -> FloatArray:
        """The last run's learnable gate (saved in ``out_dir``): raw logits for ``texts``; the
        texts :meth:`run` scored are not scored again."""
        todo = [t for t in dict.fromkeys(texts) if t not in self.student_logits]
        if todo:
            rows = self._predict(self._load_student(Path(out_dir)), todo, config, "score F_s2")
            self.student_logits.update(zip(todo, rows, strict=True))
        k = len(self.labels)
        return np.stack([self.student_logits[t] for t in texts]) if texts else np.zeros((0, k))

    def _load_student(self, out_dir: Path) -> Any:
        """A learnable gate saved by :meth:`run` (hook), ready for :meth:`_predict`."""
        student, _ = load_classifier(out_dir)
        return student.to(self.accelerator.device)

    def _predict(self, model: Any, texts: Sequence[str], cfg: DistillConfig, desc: str) -> Any:
        """Raw logits of ``model`` (F_s1 or a learnable copy) for ``texts`` (hook)."""
        return predict_logits(
            model,
            self.tokenizer,
            texts,
            accelerator=self.accelerator,
            max_length=cfg.max_length,
            batch_size=cfg.eval_batch_size,
            desc=desc,
            progress=self.progress,
        )

    def run(
        self,
        out_dir: str | Path,
        config: DistillConfig | None = None,
        *,
        target: Target | None = None,
        confidence: float | None = None,
    ) -> DistillReport:
        """Train a learnable copy, save it with a re-calibrated policy, and report.

        Args:
            out_dir: the new gate directory (must differ from the production gate's).
            config: hyper-parameters and ablation switch.
            target: the calibration target for the new δ; default the old policy's.
            confidence: certify the new δ at this confidence (see ``calibrate``).

        Raises:
            ConfigError: no δ (no policy and no ``threshold``), no target, or ``out_dir`` is
                the production gate's directory.
            DataError: no logged input qualifies for stage 1.
        """
        from accelerate.utils import set_seed

        cfg = config or DistillConfig()
        t0 = time.perf_counter()
        out = Path(out_dir)
        if out.resolve() == self.gate_dir.resolve():
            raise ConfigError("out_dir must differ from the gate directory: F_s1 stays unchanged")
        delta = cfg.resolve_threshold(self.policy, self.gate_dir)
        t_old = self.policy.temperature if self.policy is not None else 1.0
        target = target if target is not None else target_from_policy(self.policy)
        set_seed(cfg.seed)
        stage1, stage2, sel = select_stages(
            self.logged,
            lambda texts: self.teacher_logits(texts, cfg),
            labels=self.labels,
            method=cfg.method,
            threshold=delta,
            policy_temperature=t_old,
            distill_temperature=cfg.temperature or t_old,
            llm_min_confidence=cfg.llm_min_confidence,
            trust_unscored=cfg.trust_unscored,
            train_texts=self.train.texts if self.train is not None else (),
        )
        if not len(stage1):
            sc = self.store_counts
            raise DataError(
                f"no logged input qualifies for stage 1 ({sc.records} records, {sc.llm_answers} "
                f"usable LLM answers; {sel.low_llm_confidence} with C_l <= δ_l="
                f"{cfg.llm_min_confidence}, {sel.unscored_skipped} without C_l, "
                f"{sc.llm_errors} LLM errors, {sc.unparsed} unparsed, {sel.confident_logged} "
                "confident for the gate already): lower --llm-min-confidence, pass "
                "--trust-unscored for answers logged without logprobs, or log more traffic"
            )
        notes = []
        if cfg.method == "2cd" and not len(stage2):
            notes.append("no input with C_s1 >= δ for stage 2: this run was stage 1 only")
        student, losses = self._train(stage1, stage2, cfg, out, notes)
        answered = [r for r in self.logged if r.llm_label is not None]
        texts = list(
            dict.fromkeys(
                [*self.dev.texts, *self.calib.texts, *(r.text for r in answered)]
                + (self.eval_data.texts if self.eval_data is not None else [])
            )
        )
        after = dict(zip(texts, self._predict(student, texts, cfg, "score F_s2"), strict=True))
        policy_fields = {}
        if self.policy is not None:
            keep = ("prune_epsilon", "min_reliable_recall", "min_candidates", "hint_top_k")
            policy_fields = {k: getattr(self.policy, k) for k in keep}
        self.student_logits = after
        cal = calibrate(
            LogitsGate(self.labels, after),
            self.calib,
            target,
            confidence=confidence,
            **policy_fields,
        )
        if cal.note:
            notes.append(f"calibration: {cal.note}")
        slices = build_slices(
            lambda texts: self.teacher_logits(texts, cfg),
            after,
            (t_old, delta),
            (cal.policy.temperature, cal.policy.threshold),
            labels=self.labels,
            dev=self.dev,
            eval_data=self.eval_data,
            answered=answered,
        )
        report = DistillReport(
            out_dir=str(out),
            gate_dir=str(self.gate_dir),
            method=cfg.method,
            labels=self.labels,
            store=self.store_counts,
            selection=sel,
            threshold_before=delta,
            temperature_before=t_old,
            threshold_after=cal.policy.threshold,
            temperature_after=cal.policy.temperature,
            target=target.to_json(),
            slices=tuple(slices),
            losses=tuple(losses),
            config=asdict(cfg),
            seconds=time.perf_counter() - t0,
            notes=tuple(notes),
        )
        if self.accelerator.is_main_process:
            write_outputs(out, cal.policy, report, n_train=len(stage1) + len(stage2))
        self.accelerator.wait_for_everyone()
        return report

    def _train(
        self, stage1: StageData, stage2: StageData, cfg: DistillConfig, out: Path, notes: list[str]
    ) -> tuple[Any, list[StageLoss]]:
        """Train a learnable copy of F_s1 on the stages, save it to ``out`` (hook); returns it
        (for :meth:`_predict`) and the losses; ``notes`` takes what the report should say."""
        return train_copy(
            self.gate_dir, self.tokenizer, stage1, stage2, cfg, out,
            accelerator=self.accelerator, progress=self.progress,
        )  # fmt: skip
