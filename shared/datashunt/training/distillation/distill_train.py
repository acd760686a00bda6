"""The 2CD training rounds: each stage's KL loss, stepped through the shared training loop."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...gates._deps import require
from ..fitting.loop import LossFn, OptimConfig, TrainingLoop
from ..fitting.models import collate_texts, load_classifier, save_classifier
from .distill_config import DistillConfig
from .distill_data import StageData

__all__ = ["StageLoss", "stage_loss", "train_copy", "train_rounds"]


@dataclass(frozen=True)
class StageLoss:
    """One stage of one round: how many inputs, optimiser steps, and the mean loss."""

    round: int
    stage: str
    n: int
    steps: int
    mean_loss: float


def stage_loss(temperature: float) -> LossFn:
    """``T · KL(target || softmax(z / T))`` on a batch with ``"_target"`` distributions.

    On one-hot targets at T = 1 this is cross-entropy. The factor T makes the gradient on the
    logits ``softmax(z / T) - target`` at any temperature, so the learning rate means what it
    means in ``train-gate`` even for a gate calibrated to T = 0.1.
    """
    functional = require("torch").nn.functional

    def loss(model: Any, batch: Mapping[str, Any]) -> Any:
        inputs = {k: v for k, v in batch.items() if k not in ("_idx", "_target")}
        logits = model(**inputs).logits.float()
        log_p = functional.log_softmax(logits / temperature, dim=-1)
        return functional.kl_div(log_p, batch["_target"], reduction="batchmean") * temperature

    return loss


def train_rounds(
    model: Any,
    tokenizer: Any,
    rounds: Sequence[Sequence[tuple[str, StageData]]],
    *,
    accelerator: Any,
    lr: float,
    weight_decay: float,
    epochs: int,
    batch_size: int,
    max_length: int,
    seed: int,
    progress: bool,
) -> tuple[Any, list[StageLoss]]:
    """Train ``model`` on each round's stages in turn; returns the unwrapped model and losses.

    One :class:`TrainingLoop` (one AdamW, constant learning rate) runs every stage with
    :func:`stage_loss` at the stage's temperature; each stage shuffles with its own seeded
    generator, so a run is repeatable.
    """
    torch = require("torch")
    loop = TrainingLoop(
        model, OptimConfig(lr=lr, weight_decay=weight_decay), accelerator=accelerator
    )
    losses: list[StageLoss] = []
    for r, stages in enumerate(rounds, 1):
        for s, (name, data) in enumerate(stages):
            if not len(data):
                continue
            gen = torch.Generator().manual_seed(seed * 1_000 + r * 10 + s)
            loader = torch.utils.data.DataLoader(
                list(range(len(data))),
                batch_size=batch_size,
                shuffle=True,
                generator=gen,
                collate_fn=collate_texts(tokenizer, data.texts, data.targets, max_length),
            )
            loader = accelerator.prepare_data_loader(loader)
            phase = loop.fit(
                loader,
                stage_loss(data.temperature),
                epochs=epochs,
                desc=f"round {r} {name}",
                progress=progress,
                leave=False,
            )
            losses.append(StageLoss(r, name, len(data), phase.steps, phase.mean_loss))
    return loop.finish(), losses


def train_copy(
    gate_dir: Path,
    tokenizer: Any,
    stage1: StageData,
    stage2: StageData,
    cfg: DistillConfig,
    out: Path,
    *,
    accelerator: Any,
    progress: bool,
) -> tuple[Any, list[StageLoss]]:
    """A learnable copy of the classifier in ``gate_dir`` trained by :func:`train_rounds`
    (``cfg.rounds`` rounds of stage 1 then a fresh stage-2 sample), saved to ``out``."""
    rng = np.random.default_rng(cfg.seed)
    name1 = "finetune-ce" if cfg.method == "finetune" else "stage1-llm"
    rounds = [
        [(name1, stage1)]
        + ([("stage2-keep", stage2.sample(cfg.stage2_max, rng))] if len(stage2) else [])
        for _ in range(cfg.rounds)
    ]
    student, _ = load_classifier(gate_dir)
    student, losses = train_rounds(
        student,
        tokenizer,
        rounds,
        accelerator=accelerator,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        max_length=cfg.max_length,
        seed=cfg.seed,
        progress=progress,
    )
    save_classifier(student, tokenizer, out, accelerator=accelerator)
    return student, losses
