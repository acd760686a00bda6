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

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np

from .calibration import Target, calibrate
from .data import Dataset
from .distill_data import Method, open_existing_store, read_logged, select_stages
from .distill_report import (
    DISTILL_REPORT_FILE,
    DistillReport,
    build_slices,
    target_from_policy,
    write_outputs,
)
from .distill_train import (
    load_classifier,
    make_accelerator,
    predict_logits,
    save_classifier,
    train_rounds,
)
from .errors import ConfigError, DataError, GateError
from .gates import BaseGate, FloatArray
from .gates._deps import check_weights, resolve_backbone
from .gates.embedding import GATE_FILE
from .policy import POLICY_FILE, ShuntPolicy
from .store import CallStore

__all__ = ["DISTILL_REPORT_FILE", "DistillConfig", "Distiller", "distill_gate"]


@dataclass(frozen=True)
class DistillConfig:
    """Hyper-parameters of a distillation run.

    Attributes:
        method: ``"2cd"`` (both stages), ``"stage1"`` (ablation: plain distillation of the
            LLM's distributions) or ``"finetune"`` (ablation: cross-entropy on its parsed labels).
        rounds: how many times the stages alternate.
        epochs: passes over each stage's data per round.
        lr: AdamW learning rate (constant).
        batch_size: inputs per optimiser step (per process).
        max_length: tokens per input; use what the production gate runs with (HFGate: 256).
        temperature: T of stage 2 (the frozen model's ``softmax(z / T)`` is the target, and
            the learnable model is compared at the same T); default the production gate's
            calibrated temperature, i.e. the target is exactly its ``C_s1`` distribution.
        threshold: δ; default the production gate's policy threshold.
        llm_min_confidence: δ_l; stage 1 uses answers with ``C_l > δ_l``.
        trust_unscored: use answers logged without logprobs (no ``C_l``) as one-hot targets.
        stage2_max: at most this many stage-2 inputs per round (a fresh sample each round).
        weight_decay: AdamW weight decay.
        eval_batch_size: inputs per forward pass when scoring.
        seed: makes data order, sampling and dropout repeatable.
    """

    method: Method = "2cd"
    rounds: int = 2
    epochs: int = 1
    lr: float = 3e-5
    batch_size: int = 16
    max_length: int = 256
    temperature: float | None = None
    threshold: float | None = None
    llm_min_confidence: float = 0.8
    trust_unscored: bool = False
    stage2_max: int | None = None
    weight_decay: float = 0.01
    eval_batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in get_args(Method):
            raise ConfigError(f"method must be one of {get_args(Method)}, got {self.method!r}")
        for name in ("rounds", "epochs", "batch_size", "max_length", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        t = self.temperature
        if t is not None and not (math.isfinite(t) and t > 0):
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1], got {self.threshold}")
        if not 0.0 <= self.llm_min_confidence < 1.0:
            raise ConfigError(
                f"llm_min_confidence must be in [0, 1), got {self.llm_min_confidence}"
            )
        if self.stage2_max is not None and self.stage2_max < 1:
            raise ConfigError(f"stage2_max must be >= 1 (or None for all), got {self.stage2_max}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")


class _LogitsGate(BaseGate):
    """A gate over logits computed beforehand, so :func:`calibrate` reuses gathered logits."""

    def __init__(self, labels: Sequence[str], table: dict[str, FloatArray]) -> None:
        super().__init__(labels)
        self.table = table

    def _logits(self, texts: list[str]) -> FloatArray:
        missing = [t[:40] for t in texts if t not in self.table]
        if missing:
            raise GateError(f"internal error: no logits computed for {missing[:3]}")
        return np.stack([self.table[t] for t in texts])


def _gate_dir(gate_dir: str | Path) -> Path:
    path = resolve_backbone(gate_dir)
    meta = path / GATE_FILE
    if meta.is_file() and json.loads(meta.read_text(encoding="utf-8")).get("type") == "embedding":
        raise ConfigError(
            f"{path} is an embedding gate; distillation fine-tunes a Hugging Face classifier: "
            "train one with `datashunt train-gate --kind finetune`"
        )
    check_weights(path, allow_pickle=False)
    return path


def _check_labels(data: Dataset | None, labels: Sequence[str], what: str) -> None:
    if data is None:
        return
    unknown = sorted({e.label for e in data.examples} - set(labels))
    if unknown:
        raise DataError(
            f"{what} has labels {unknown} that the gate does not know (gate labels "
            f"{list(labels)}): use data with the gate's label set"
        )


class Distiller:
    """Distil a call store into a copy of a gate; reusable for several runs (ablations).

    Loading the production gate, reading the store and scoring with the frozen model happen
    once; each :meth:`run` trains a fresh learnable copy.

    Args:
        gate_dir: the production gate F_s1 (a fine-tuned HF gate directory with its policy).
        store: a :class:`CallStore`, a SQLite path or a SQLAlchemy URL.
        dev: labelled original dev data: forgetting is measured here, and (unless ``calib`` is
            given) the new δ is calibrated here.
        train: the gate's original training data (its labels are not used), for stage 2.
        eval_data: labelled data from the logged distribution, for accuracy after the shift.
        calib: labelled data to re-calibrate on instead of ``dev``.
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
        accelerator: Any | None = None,
        progress: bool = True,
    ) -> None:
        self.gate_dir = _gate_dir(gate_dir)
        self.progress = progress
        opened = open_existing_store(store)  # a missing store fails before any model loads
        try:
            self._load(accelerator, dev, train, eval_data, calib)
            self.logged, self.store_counts = read_logged(opened.iter(), self.labels)
        finally:
            if opened is not store:
                opened.close()
        self._teacher_cache: dict[tuple[int, str], FloatArray] = {}

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
        self.teacher, self.tokenizer = load_classifier(self.gate_dir)
        self.teacher.to(self.accelerator.device)
        id2label = {int(i): str(n) for i, n in self.teacher.config.id2label.items()}
        self.labels = tuple(id2label[i] for i in range(len(id2label)))
        if self.policy is not None and tuple(self.policy.labels) != self.labels:
            raise ConfigError(
                f"the policy beside {self.gate_dir} has labels {list(self.policy.labels)}, the "
                f"model {list(self.labels)}: re-calibrate the gate (`datashunt calibrate`)"
            )
        self.dev, self.train, self.eval_data = dev, train, eval_data
        self.calib = calib if calib is not None else dev
        _check_labels(dev, self.labels, "the dev data")
        _check_labels(eval_data, self.labels, "the eval data")
        _check_labels(calib, self.labels, "the calibration data")

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

    def _predict(self, model: Any, texts: Sequence[str], cfg: DistillConfig, desc: str) -> Any:
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
    ) -> DistillReport:
        """Train a learnable copy, save it with a re-calibrated policy, and report.

        Args:
            out_dir: the new gate directory (must differ from the production gate's).
            config: hyper-parameters and ablation switch.
            target: the calibration target for the new δ; default the old policy's.

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
        if cfg.threshold is not None:
            delta = cfg.threshold
        elif self.policy is not None:
            delta = self.policy.threshold
        else:
            raise ConfigError(
                f"no policy beside {self.gate_dir}, so δ is unknown: calibrate the gate first "
                "(`datashunt calibrate --gate DIR ...`) or pass --threshold"
            )
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
        rng = np.random.default_rng(cfg.seed)
        name1 = "finetune-ce" if cfg.method == "finetune" else "stage1-llm"
        rounds = [
            [(name1, stage1)]
            + ([("stage2-keep", stage2.sample(cfg.stage2_max, rng))] if len(stage2) else [])
            for _ in range(cfg.rounds)
        ]
        student, _ = load_classifier(self.gate_dir)
        student, losses = train_rounds(
            student,
            self.tokenizer,
            rounds,
            accelerator=self.accelerator,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            max_length=cfg.max_length,
            seed=cfg.seed,
            progress=self.progress,
        )
        save_classifier(student, self.tokenizer, out, accelerator=self.accelerator)
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
        cal = calibrate(_LogitsGate(self.labels, after), self.calib, target, **policy_fields)
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
            target=cal.policy.target or "",
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


def distill_gate(
    store: CallStore | str | Path,
    gate_dir: str | Path,
    out_dir: str | Path,
    *,
    dev: Dataset,
    train: Dataset | None = None,
    eval_data: Dataset | None = None,
    calib: Dataset | None = None,
    config: DistillConfig | None = None,
    target: Target | None = None,
    accelerator: Any | None = None,
    progress: bool = True,
) -> DistillReport:
    """Distil the LLM's logged answers in ``store`` into a copy of the gate at ``gate_dir``.

    One :class:`Distiller` run; see there for the arguments. Returns the report, also written
    to ``out_dir/datashunt_distill.json`` beside the new gate and its policy.
    """
    distiller = Distiller(
        gate_dir,
        store,
        dev=dev,
        train=train,
        eval_data=eval_data,
        calib=calib,
        accelerator=accelerator,
        progress=progress,
    )
    return distiller.run(out_dir, config, target=target)
