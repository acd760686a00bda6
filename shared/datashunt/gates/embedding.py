"""A gate made of a frozen sentence-embedding backbone and a trained linear head.

It trains in seconds on CPU (only the head learns), which makes it the quick start and the
gate of choice when there is little labelled data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ModelNotFoundError
from ._deps import DEFAULT_BACKBONE, quiet_load, require, resolve_backbone
from .base import BaseGate, FloatArray
from .hf import _policy_temperature

__all__ = ["GATE_FILE", "EmbeddingGate", "fit_head"]

#: Marker file of a gate directory that is not a plain HF classification model.
GATE_FILE = "datashunt_gate.json"
_HEAD_FILE = "head.safetensors"


class EmbeddingGate(BaseGate):
    """Sentence embeddings (normalised) followed by a linear softmax head.

    Args:
        labels: label names, in head row order.
        weight: head weights, shape ``(k, d)``.
        bias: head bias, shape ``(k,)``.
        backbone: a local sentence-transformers directory, or the packaged default's name.
        temperature: softmax temperature.
        batch_size: inputs per encoder pass.

    Example:
        >>> gate = EmbeddingGate.fit(texts, y, labels=["neg", "pos"])  # doctest: +SKIP
        >>> gate.save("runs/emb-gate")  # doctest: +SKIP
    """

    def __init__(
        self,
        labels: Sequence[str],
        weight: FloatArray,
        bias: FloatArray,
        *,
        backbone: str | Path | None = None,
        temperature: float = 1.0,
        batch_size: int = 64,
    ) -> None:
        super().__init__(labels, temperature)
        k = len(self.labels)
        self.weight = np.asarray(weight, dtype=np.float64)
        self.bias = np.asarray(bias, dtype=np.float64)
        if self.weight.ndim != 2 or self.weight.shape[0] != k or self.bias.shape != (k,):
            raise ConfigError(
                f"head shapes {self.weight.shape} / {self.bias.shape} do not fit {k} labels"
            )
        self.backbone = str(backbone) if backbone is not None else DEFAULT_BACKBONE
        self.batch_size = batch_size
        st = require("sentence_transformers")
        with quiet_load():  # a classifier's directory as encoder: its head is left out
            self.encoder: Any = st.SentenceTransformer(
                str(resolve_backbone(backbone)), device="cpu", local_files_only=True
            )

    def embed(self, texts: Sequence[str]) -> FloatArray:
        """Normalised sentence embeddings, shape ``(n, d)``."""
        emb = self.encoder.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(emb, dtype=np.float64)

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` under the backbone's tokenizer."""
        return len(
            self.encoder.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        )

    def _logits(self, texts: list[str]) -> FloatArray:
        return self._logits_and_features(texts)[0]

    def _logits_and_features(self, texts: list[str]) -> tuple[FloatArray, FloatArray]:
        # the sentence embeddings are the head's input: the representation costs nothing
        emb = self.embed(texts)
        out: FloatArray = emb @ self.weight.T + self.bias
        return out, emb

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        y: Sequence[int],
        *,
        labels: Sequence[str],
        backbone: str | Path | None = None,
        l2: float = 1e-3,
        max_iter: int = 200,
        seed: int = 0,
        batch_size: int = 64,
    ) -> EmbeddingGate:
        """Embed ``texts`` and fit the head by L2-regularised multinomial logistic regression."""
        k = len(labels)
        gate = cls(labels, np.zeros((k, 1)), np.zeros(k), backbone=backbone, batch_size=batch_size)
        require("torch").manual_seed(seed)
        gate.weight, gate.bias = fit_head(gate.embed(texts), y, k, l2=l2, max_iter=max_iter)
        return gate

    def save(self, out_dir: str | Path) -> Path:
        """Write the gate to ``out_dir`` (head weights as safetensors, labels, backbone)."""
        save_file = require("safetensors.numpy").save_file
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_file({"weight": self.weight, "bias": self.bias}, str(out / _HEAD_FILE))
        meta = {"type": "embedding", "labels": list(self.labels), "backbone": self.backbone}
        (out / GATE_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return out

    @classmethod
    def load(cls, gate_dir: str | Path, *, temperature: float | None = None) -> EmbeddingGate:
        """Load a gate written by :meth:`save`."""
        path = Path(gate_dir)
        meta_file = path / GATE_FILE
        if not meta_file.is_file() or not (path / _HEAD_FILE).is_file():
            raise ModelNotFoundError(
                f"{path} is not an embedding gate directory (missing {GATE_FILE} or "
                f"{_HEAD_FILE}); train one with `datashunt train-gate --kind embedding --out DIR`"
            )
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        tensors = require("safetensors.numpy").load_file(str(path / _HEAD_FILE))
        temp = _policy_temperature(path) if temperature is None else temperature
        backbone = meta.get("backbone")
        if backbone and (path / backbone).is_dir() and not Path(backbone).is_absolute():
            backbone = str(path / backbone)  # an encoder saved inside the gate (fine-tuned)
        gate = cls(
            meta["labels"], tensors["weight"], tensors["bias"], backbone=backbone, temperature=temp
        )
        gate.backbone = meta.get("backbone") or gate.backbone  # saved again, still relative
        return gate


def fit_head(
    x: FloatArray, y: Sequence[int] | np.ndarray, k: int, *, l2: float = 1e-3, max_iter: int = 200
) -> tuple[FloatArray, FloatArray]:
    """The linear softmax head on embeddings ``x`` ``(n, d)``: L2-regularised multinomial
    logistic regression (L-BFGS from zeros); returns ``(weight (k, d), bias (k,))``."""
    torch = require("torch")
    xt = torch.tensor(np.asarray(x), dtype=torch.float64)
    target = torch.tensor(list(np.asarray(y).tolist()), dtype=torch.long)
    w = torch.zeros((k, xt.shape[1]), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Any:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w.T + b, target) + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy().copy(), b.detach().numpy().copy()
