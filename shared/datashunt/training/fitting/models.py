"""A Hugging Face classifier on Accelerate: load it, score texts with it, save it.

Nothing here picks a device: :class:`accelerate.Accelerator` does, from the environment that
``accelerate launch`` sets up (processes, mixed precision). Data loaders go through
``prepare_data_loader``, predictions are gathered across processes, and only the main process
writes files. torch and accelerate load lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataShuntError
from ...gates import FloatArray
from ...gates._deps import require
from .loop import encode_texts

__all__ = [
    "collate_texts",
    "load_classifier",
    "make_accelerator",
    "predict_logits",
    "save_classifier",
]


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


def collate_texts(
    tokenizer: Any, texts: Sequence[str], targets: FloatArray | None, max_length: int
) -> Callable[[list[int]], dict[str, Any]]:
    """A ``DataLoader`` collate function over row indices: the rows' tokens, the indices as
    ``"_idx"`` and (when given) the rows' target distributions as ``"_target"``."""
    torch = require("torch")

    def collate(idx: list[int]) -> dict[str, Any]:
        batch = encode_texts(tokenizer, [texts[i] for i in idx], max_length)
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
        order, batch_size=batch_size, collate_fn=collate_texts(tokenizer, texts, None, max_length)
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


def save_classifier(model: Any, tokenizer: Any, out: Path, *, accelerator: Any) -> None:
    """Write ``save_pretrained`` weights (safetensors) and the tokenizer, on the main process."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(out), is_main_process=True)
        tokenizer.save_pretrained(str(out))
    accelerator.wait_for_everyone()
