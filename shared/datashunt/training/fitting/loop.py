"""The one training loop: ``train-gate`` fine-tuning and 2CD distillation both step through it.

AdamW, an optional linear warm-up and decay (``transformers.get_linear_schedule_with_warmup``),
gradient clipping and a tqdm bar. With an :class:`accelerate.Accelerator` (2CD: one CPU, one
GPU or many under ``accelerate launch``) the model and optimiser go through ``prepare``, the
loss through ``accelerator.backward`` and is averaged over processes; without one, plain torch
in this process (:class:`SingleProcess`), so ``train-gate`` needs no accelerate. torch loads
lazily.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import ConfigError
from ...gates._deps import require

__all__ = [
    "CHARS_PER_TOKEN_CAP",
    "LossFn",
    "OptimConfig",
    "PhaseLoss",
    "ShuffledBatches",
    "SingleProcess",
    "TrainingLoop",
    "cross_entropy",
    "encode_texts",
]

#: A token rarely spans more than this many characters (as in HFGate): cut before tokenising.
CHARS_PER_TOKEN_CAP = 16

#: ``loss_fn(model, batch) -> scalar loss tensor``.
LossFn = Callable[[Any, Mapping[str, Any]], Any]


class ShuffledBatches:
    """Batches of ``n`` examples in a fresh order each epoch, drawn from one seeded generator;
    ``make(indices)`` builds one batch (inputs and ``labels``). Text and image training share it.
    """

    def __init__(
        self, n: int, batch_size: int, seed: int, make: Callable[[Any], dict[str, Any]]
    ) -> None:
        self.n, self.batch_size, self.make = n, batch_size, make
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        order = self.rng.permutation(self.n)
        for start in range(0, self.n, self.batch_size):
            yield self.make(order[start : start + self.batch_size])


def cross_entropy(model: Any, batch: Mapping[str, Any]) -> Any:
    """The classification loss a HF model computes itself from ``batch["labels"]``."""
    return model(**batch).loss


def encode_texts(tokenizer: Any, texts: Sequence[str], max_length: int) -> dict[str, Any]:
    """Token tensors for ``texts``: padded to the longest, truncated to ``max_length``."""
    cap = max_length * CHARS_PER_TOKEN_CAP
    enc = tokenizer(
        [t[:cap] for t in texts],
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    return dict(enc)


@dataclass(frozen=True)
class OptimConfig:
    """How the loop optimises.

    Attributes:
        lr: AdamW's (peak) learning rate.
        weight_decay: AdamW weight decay.
        warmup_ratio: share of ``total_steps`` spent warming up linearly before a linear decay
            to 0; ``None`` keeps ``lr`` constant.
        max_grad_norm: gradients are clipped to this norm before each step.
    """

    lr: float
    weight_decay: float = 0.01
    warmup_ratio: float | None = None
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.warmup_ratio is not None and not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not self.max_grad_norm > 0:
            raise ConfigError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")


class SingleProcess:
    """What :class:`TrainingLoop` uses of ``accelerate.Accelerator``, for one process, in torch."""

    is_main_process = True
    is_local_main_process = True

    def prepare(self, *objects: Any) -> Any:
        return objects[0] if len(objects) == 1 else objects

    def backward(self, loss: Any) -> None:
        loss.backward()

    def clip_grad_norm_(self, parameters: Any, max_norm: float) -> Any:
        return require("torch").nn.utils.clip_grad_norm_(parameters, max_norm)

    def reduce(self, tensor: Any, reduction: str = "mean") -> Any:
        return tensor

    def unwrap_model(self, model: Any) -> Any:
        return model

    def free_memory(self, *objects: Any) -> None:
        return None


@dataclass(frozen=True)
class PhaseLoss:
    """What one :meth:`TrainingLoop.fit` did: optimiser steps and their mean loss."""

    steps: int
    mean_loss: float


class TrainingLoop:
    """One optimiser over one model, stepped through one or more phases of data.

    ``train-gate`` runs one phase (cross-entropy, warm-up and decay); 2CD runs one per stage and
    round (a KL loss per stage, constant learning rate), and AdamW's moments carry over between
    them as the optimiser does.

    Args:
        model: a torch module (e.g. a Hugging Face sequence classifier).
        config: the optimiser settings.
        total_steps: optimiser steps over the whole run; needed for a warm-up schedule.
        accelerator: an ``accelerate.Accelerator``; default :class:`SingleProcess`.

    Example:
        >>> loop = TrainingLoop(model, OptimConfig(lr=5e-5))  # doctest: +SKIP
        >>> loop.fit(batches, lambda m, b: m(**b).loss, epochs=2)  # doctest: +SKIP
        >>> model = loop.finish()  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        config: OptimConfig,
        *,
        total_steps: int | None = None,
        accelerator: Any | None = None,
    ) -> None:
        torch = require("torch")
        self.config = config
        self.accelerator = accelerator if accelerator is not None else SingleProcess()
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler: Any = None
        if config.warmup_ratio is not None:
            if total_steps is None or total_steps < 1:
                raise ConfigError("a warm-up schedule needs total_steps >= 1")
            transformers = require("transformers")
            warmup = int(config.warmup_ratio * total_steps)
            self.scheduler = transformers.get_linear_schedule_with_warmup(opt, warmup, total_steps)
        # The scheduler is stepped here once per optimiser step, so it is not prepared.
        self.model, self.optimizer = self.accelerator.prepare(model, opt)

    def fit(
        self,
        batches: Iterable[Mapping[str, Any]],
        loss_fn: LossFn,
        *,
        epochs: int = 1,
        desc: str = "train",
        progress: bool = False,
        leave: bool = True,
    ) -> PhaseLoss:
        """Train on ``batches`` for ``epochs`` passes (each pass iterates ``batches`` again).

        Args:
            batches: re-iterable batches (a ``DataLoader``, prepared for the accelerator).
            loss_fn: the loss of the model on one batch.
            progress: show a progress bar (on the local main process only).
            leave: keep the bar on screen when done.
        """
        from tqdm.auto import tqdm

        acc = self.accelerator
        per_epoch = len(batches) if isinstance(batches, Sized) else None
        show = progress and acc.is_local_main_process
        bar: Any = tqdm(
            total=None if per_epoch is None else epochs * per_epoch,
            desc=desc,
            unit="step",
            disable=not show,
            leave=leave,
        )
        total, steps = 0.0, 0
        self.model.train()
        for _epoch in range(epochs):
            for batch in batches:
                loss = loss_fn(self.model, batch)
                acc.backward(loss)
                acc.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
                self.optimizer.step()
                if self.scheduler is not None:
                    self.scheduler.step()
                self.optimizer.zero_grad()
                value = float(acc.reduce(loss.detach(), reduction="mean").item())
                total, steps = total + value, steps + 1
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}")
        bar.close()
        return PhaseLoss(steps, total / max(steps, 1))

    def finish(self) -> Any:
        """The trained model, in eval mode and unwrapped; the optimiser's memory is freed."""
        self.model.eval()
        model = self.accelerator.unwrap_model(self.model)
        self.accelerator.free_memory(self.optimizer)
        return model
