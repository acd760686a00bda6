"""A gate over a local Hugging Face sequence-classification model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..policy import POLICY_FILE
from ._deps import check_remote_code, check_weights, require
from .base import BaseGate, FloatArray

__all__ = ["HFGate"]

# A token rarely spans more than this many characters; cutting the text first keeps a
# multi-megabyte input from being tokenised in full only to be truncated afterwards.
_CHARS_PER_TOKEN_CAP = 16


def _policy_temperature(model_dir: Path) -> float:
    p = model_dir / POLICY_FILE
    if p.is_file():
        return float(json.loads(p.read_text(encoding="utf-8")).get("temperature", 1.0))
    return 1.0


class HFGate(BaseGate):
    """A local ``AutoModelForSequenceClassification`` directory as a gate.

    Loads with ``local_files_only=True``, safetensors only and no remote code unless asked.
    Batches are length-sorted buckets (less padding), inputs are truncated to ``max_length``
    tokens, and the temperature saved by ``datashunt calibrate`` beside the model is applied.

    Args:
        model_dir: the model directory (``config.json``, ``*.safetensors``, tokenizer files).
        temperature: overrides the temperature saved beside the model.
        batch_size: inputs per forward pass.
        max_length: tokens per input; longer inputs are truncated.
        allow_pickle: allow ``.bin`` weights (they can run code when loaded).
        trust_remote_code: allow model code from the directory.

    Example:
        >>> gate = HFGate("runs/gate")  # doctest: +SKIP
        >>> gate.predict_proba(["great product"]).shape  # doctest: +SKIP
        (1, 2)
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        temperature: float | None = None,
        batch_size: int = 32,
        max_length: int = 256,
        allow_pickle: bool = False,
        trust_remote_code: bool = False,
    ) -> None:
        from ._deps import resolve_backbone

        path = resolve_backbone(model_dir)
        check_weights(path, allow_pickle=allow_pickle)
        check_remote_code(path, trust_remote_code=trust_remote_code)
        torch = require("torch")
        transformers = require("transformers")
        self._torch: Any = torch
        self.tokenizer: Any = transformers.AutoTokenizer.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=trust_remote_code
        )
        self.model: Any = transformers.AutoModelForSequenceClassification.from_pretrained(
            str(path),
            local_files_only=True,
            use_safetensors=not allow_pickle,
            trust_remote_code=trust_remote_code,
        )
        self.model.eval()
        id2label = {int(i): str(n) for i, n in self.model.config.id2label.items()}
        labels = [id2label[i] for i in range(len(id2label))]
        super().__init__(labels, _policy_temperature(path) if temperature is None else temperature)
        self.model_dir = path
        self.batch_size = batch_size
        model_max = getattr(self.tokenizer, "model_max_length", max_length) or max_length
        self.max_length = int(min(max_length, model_max))

    def encode(self, texts: Sequence[str]) -> Any:
        """Tokenise one bucket (padded to its longest member, truncated to ``max_length``)."""
        cap = self.max_length * _CHARS_PER_TOKEN_CAP
        return self.tokenizer(
            [t[:cap] for t in texts],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` under the gate's tokenizer, special tokens excluded."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _logits(self, texts: list[str]) -> FloatArray:
        # Sorting by length puts similar lengths in one bucket, so little padding is computed.
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), len(self.labels)), dtype=np.float64)
        with self._torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = self.encode([texts[i] for i in idx])
                out[idx] = self.model(**enc).logits.float().cpu().numpy()
        return out
