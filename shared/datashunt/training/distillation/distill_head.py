"""2CD for an embedding gate: its sentence encoder stays frozen, its linear head is refit.

An :class:`~datashunt.gates.EmbeddingGate` is a frozen encoder and a softmax head, so the two
stages of 2CD become one convex problem on the head alone. From the production head (F_s1, the
warm start), L-BFGS minimises

    mean over stage 1 of CE(target, softmax(z / T1))
    + mean over stage 2 of CE(softmax(z_s1 / T2), softmax(z / T2)) + l2 · |W|²

Stage 1 holds the LLM's answers on the inputs F_s1 was unsure of; stage 2 is the frozen copy's
anchoring, as in 2CD: on the inputs it was sure of, the new head keeps F_s1's distribution. The
stages enter with equal weight, as the fine-tuned path's alternating rounds give them; one
joint solve replaces the rounds, so ``rounds``, ``epochs``, ``lr``, ``batch_size`` and
``max_length`` do not apply (the report says so). Each text is embedded once per distiller.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...data import Dataset
from ...gates import EmbeddingGate, FloatArray
from ...gates._deps import require
from ...store import CallStore
from ..guarantees.targets import Target
from .distill import Distiller
from .distill_config import DistillConfig, gate_kind
from .distill_data import StageData
from .distill_report import DistillReport
from .distill_train import StageLoss

__all__ = [
    "HEAD_L2",
    "HEAD_MAX_ITER",
    "HeadDistiller",
    "distill_gate",
    "fit_soft_head",
    "open_distiller",
]

#: The head's weight penalty and L-BFGS budget: what ``train-gate --kind embedding`` fits with.
HEAD_L2, HEAD_MAX_ITER = 1e-3, 200

_HEAD_FILE = "head.safetensors"  # as EmbeddingGate.save writes it


class HeadDistiller(Distiller):
    """A :class:`Distiller` for an embedding gate: the learnable copy is a new head.

    Build it with :func:`open_distiller` (or directly,
    with the
    same arguments as :class:`Distiller`).

    Example:
        >>> d = open_distiller("runs/emb-gate", "runs/calls.sqlite", dev=dev)  # doctest: +SKIP
        >>> d.run("runs/emb-gate-2cd").threshold_after  # doctest: +SKIP
    """

    def _load_model(self) -> tuple[str, ...]:
        self.teacher = EmbeddingGate.load(self.gate_dir, temperature=1.0)
        self.tokenizer = None
        self._embeddings: dict[str, FloatArray] = {}
        return tuple(self.teacher.labels)

    def _embed(self, texts: Sequence[str]) -> FloatArray:
        todo = [t for t in dict.fromkeys(texts) if t not in self._embeddings]
        if todo:  # one encoder pass for all new texts; teacher and student share the encoder
            self._embeddings.update(zip(todo, self.teacher.embed(todo), strict=True))
        d = self.teacher.weight.shape[1]
        return np.stack([self._embeddings[t] for t in texts]) if texts else np.zeros((0, d))

    def _predict(self, model: Any, texts: Sequence[str], cfg: DistillConfig, desc: str) -> Any:
        weight, bias = (model.weight, model.bias) if isinstance(model, EmbeddingGate) else model
        return self._embed(texts) @ np.asarray(weight).T + np.asarray(bias)

    def _load_student(self, out_dir: Path) -> Any:
        tensors = require("safetensors.numpy").load_file(str(out_dir / _HEAD_FILE))
        return tensors["weight"], tensors["bias"]

    def _train(
        self, stage1: StageData, stage2: StageData, cfg: DistillConfig, out: Path, notes: list[str]
    ) -> tuple[Any, list[StageLoss]]:
        rng = np.random.default_rng(cfg.seed)
        name1 = "finetune-ce" if cfg.method == "finetune" else "stage1-llm"
        stages = [(name1, stage1), ("stage2-keep", stage2.sample(cfg.stage2_max, rng))]
        stages = [(name, data) for name, data in stages if len(data)]
        parts = [(self._embed(d.texts), d.targets, d.temperature) for _, d in stages]
        weight, bias, losses, steps = fit_soft_head(
            parts, self.teacher.weight, self.teacher.bias, l2=HEAD_L2, max_iter=HEAD_MAX_ITER
        )
        if self.accelerator.is_main_process:
            student = copy.copy(self.teacher)  # the same encoder, the new head
            student.weight, student.bias = weight, bias
            student.save(out)
        notes.append(
            "embedding gate: the head was refit by L-BFGS on the stages at once, from the "
            "production head, with the encoder frozen (rounds, epochs, lr, batch size and "
            "max length do not apply)"
        )
        report = [
            StageLoss(1, name, len(d), steps, loss)
            for (name, d), loss in zip(stages, losses, strict=True)
        ]
        return (weight, bias), report


def fit_soft_head(
    parts: Sequence[tuple[FloatArray, FloatArray, float]],
    weight: FloatArray,
    bias: FloatArray,
    *,
    l2: float = 1e-3,
    max_iter: int = 200,
) -> tuple[FloatArray, FloatArray, list[float], int]:
    """A softmax head fitted to target distributions, from ``(weight, bias)``.

    Args:
        parts: ``(embeddings (n, d), targets (n, k), temperature)`` per stage; each stage's
            mean cross-entropy at its temperature counts once.
        weight: the starting head ``(k, d)``.
        bias: the starting bias ``(k,)``.
        l2: weight penalty, ``l2 · |W|²`` (as :func:`~datashunt.gates.embedding.fit_head`).
        max_iter: L-BFGS iterations at most.

    Returns:
        ``(weight, bias, losses, steps)``: the head, each stage's ``T · KL(target || p)`` at
        the end, and the L-BFGS iterations taken.
    """
    torch = require("torch")
    f64 = torch.float64
    w = torch.tensor(np.asarray(weight), dtype=f64).requires_grad_(True)
    b = torch.tensor(np.asarray(bias), dtype=f64).requires_grad_(True)
    data = [(torch.tensor(x, dtype=f64), torch.tensor(t, dtype=f64), temp) for x, t, temp in parts]
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def stage_losses() -> list[Any]:
        return [torch.nn.functional.cross_entropy((x @ w.T + b) / t, p) for x, p, t in data]

    def closure() -> Any:
        opt.zero_grad()
        loss = sum(stage_losses(), torch.zeros((), dtype=f64)) + l2 * (w**2).sum()
        loss.backward()
        return loss

    if data:
        opt.step(closure)
    with torch.no_grad():
        ce = [float(v) for v in stage_losses()]
    # cross-entropy less the target's entropy is the KL that the fine-tuned path reports
    entropy = [float(-(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=1).mean()) for _, p, _ in parts]
    losses = [t * (c - h) for (_, _, t), c, h in zip(parts, ce, entropy, strict=True)]
    state = opt.state_dict()["state"]
    steps = int(state[0]["n_iter"]) if state else 0
    return w.detach().numpy().copy(), b.detach().numpy().copy(), losses, steps


def open_distiller(gate_dir: str | Path, store: CallStore | str | Path, **kw: Any) -> Distiller:
    """A :class:`Distiller` for any text gate ``train-gate`` makes: fine-tuned (2CD on the whole
    model) or embedding (its head refit, :class:`HeadDistiller`); ``kw`` as for
    :class:`Distiller`."""
    kind = HeadDistiller if gate_kind(gate_dir) == "embedding" else Distiller
    return kind(gate_dir, store, **kw)


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
    distiller = open_distiller(
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
