"""The distillation loop on Hugging Face Accelerate: one code path for a CPU, a GPU or many.

Nothing here picks a device: :class:`accelerate.Accelerator` does, from the environment that
``accelerate launch`` sets up (processes, mixed precision). Models, optimiser and data loaders
go through ``prepare``; losses through ``accelerator.backward``; predictions are gathered
across processes; only the main process writes files. torch and accelerate load lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .distill_data import StageData
from .errors import DataShuntError
from .gates import FloatArray
from .gates._deps import require

__all__ = [
    "StageLoss",
    "load_classifier",
    "make_accelerator",
    "predict_logits",
    "save_classifier",
    "train_rounds",
]

# A token rarely spans more than this many characters (as in HFGate): cut before tokenising.
_CHARS_PER_TOKEN_CAP = 16


@dataclass(frozen=True)
class StageLoss:
    """One stage of one round: how many inputs, optimiser steps, and the mean loss."""

    round: int
    stage: str
    n: int
    steps: int
    mean_loss: float


def make_accelerator() -> Any:
    """An :class:`accelerate.Accelerator` configured by the environment (``accelerate launch``).

    Raises:
        DataShuntError: accelerate is not installed (with the install command).
    """
    try:
        import accelerate
    except ImportError as exc:
        raise DataShuntError(
            "distillation runs on Hugging Face Accelerate, which is not installed: "
            "pip install 'datashunt[hf,distill]'"
        ) from exc
    return accelerate.Accelerator()


def load_classifier(model_dir: Path) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a local sequence-classification directory (safetensors)."""
    transformers = require("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), local_files_only=True, use_safetensors=True
    )
    return model, tokenizer


def _collate(
    tokenizer: Any, texts: Sequence[str], targets: FloatArray | None, max_length: int
) -> Callable[[list[int]], dict[str, Any]]:
    torch = require("torch")
    cap = max_length * _CHARS_PER_TOKEN_CAP

    def collate(idx: list[int]) -> dict[str, Any]:
        enc = tokenizer(
            [texts[i][:cap] for i in idx],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        batch = dict(enc)
        batch["_idx"] = torch.tensor(idx, dtype=torch.long)
        if targets is not None:
            batch["_target"] = torch.tensor(targets[idx], dtype=torch.float32)
        return batch

    return collate


def predict_logits(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    accelerator: Any,
    max_length: int,
    batch_size: int,
    desc: str = "predict",
    progress: bool = False,
) -> FloatArray:
    """Raw logits ``(n, k)`` for ``texts``, each process scoring a shard, gathered on all.

    Inputs are bucketed by length (little padding), as :class:`datashunt.HFGate` does, so the
    logits match what a gate loaded from the saved directory computes.
    """
    torch = require("torch")
    from tqdm.auto import tqdm

    k = int(model.config.num_labels)
    out = np.zeros((len(texts), k), dtype=np.float64)
    if not texts:
        return out
    order = [int(i) for i in np.argsort([len(t) for t in texts], kind="stable")]
    loader = torch.utils.data.DataLoader(
        order, batch_size=batch_size, collate_fn=_collate(tokenizer, texts, None, max_length)
    )
    loader = accelerator.prepare_data_loader(loader)
    model.eval()
    show = progress and accelerator.is_local_main_process
    with torch.inference_mode():
        for batch in tqdm(loader, desc=desc, unit="batch", disable=not show, leave=False):
            idx = batch.pop("_idx")
            logits = model(**batch).logits.float()
            idx, logits = accelerator.gather_for_metrics((idx, logits))
            out[idx.cpu().numpy()] = logits.cpu().numpy()
    return out


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

    Every stage minimises ``T · KL(target || softmax(z / T))`` over its data, with the stage's
    temperature T (on one-hot targets at T = 1 this is cross-entropy). The factor T makes the
    gradient on the logits ``softmax(z / T) - target`` at any temperature, so the learning
    rate means what it means in ``train-gate`` even for a gate calibrated to T = 0.1.
    """
    torch = require("torch")
    functional = torch.nn.functional
    from tqdm.auto import tqdm

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model, opt = accelerator.prepare(model, opt)
    show = progress and accelerator.is_local_main_process
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
                collate_fn=_collate(tokenizer, data.texts, data.targets, max_length),
            )
            loader = accelerator.prepare_data_loader(loader)
            t = data.temperature
            total, steps = 0.0, 0
            model.train()
            bar: Any = tqdm(
                total=epochs * len(loader),
                desc=f"round {r} {name}",
                unit="step",
                disable=not show,
                leave=False,
            )
            for _epoch in range(epochs):
                for batch in loader:
                    batch.pop("_idx")
                    target = batch.pop("_target")
                    logits = model(**batch).logits.float()
                    log_p = functional.log_softmax(logits / t, dim=-1)
                    loss = functional.kl_div(log_p, target, reduction="batchmean") * t
                    accelerator.backward(loss)
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    opt.zero_grad()
                    value = float(accelerator.reduce(loss.detach(), reduction="mean").item())
                    total, steps = total + value, steps + 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{value:.4f}")
            bar.close()
            losses.append(StageLoss(r, name, len(data), steps, total / max(steps, 1)))
    model.eval()
    unwrapped = accelerator.unwrap_model(model)
    accelerator.free_memory(opt)
    return unwrapped, losses


def save_classifier(model: Any, tokenizer: Any, out: Path, *, accelerator: Any) -> None:
    """Write ``save_pretrained`` weights (safetensors) and the tokenizer, on the main process."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(out), is_main_process=True)
        tokenizer.save_pretrained(str(out))
    accelerator.wait_for_everyone()
