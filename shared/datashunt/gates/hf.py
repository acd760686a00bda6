"""A gate over a local Hugging Face sequence-classification model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..policy import POLICY_FILE
from ._deps import check_remote_code, check_weights, require
from .base import BaseGate, FloatArray

__all__ = ["HFGate", "quantize_int8"]

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
        batch_size: at most this many inputs per forward pass.
        max_length: tokens per input; longer inputs are truncated.
        max_batch_tokens: a bucket holds at most this many (estimated, padded) tokens, so short
            inputs go in big batches and long ones in small ones: on CPU a batch of long inputs
            is no faster per input than one at a time, and its activations leave the cache.
        quantize: ``"int8"`` stores every ``nn.Linear`` weight in int8, per output channel, and
            quantises activations per batch (dynamic quantisation; about 2x faster on CPU, see
            BENCHMARKS.md for the accuracy cost). ``None`` keeps fp32.
        allow_pickle: allow ``.bin`` weights (they can run code when loaded).
        trust_remote_code: allow model code from the directory.
        backend: ``"torch"``, or ``"onnx"`` to run the forward passes in ONNX Runtime (the
            model is exported once and cached beside it, see :mod:`datashunt.gates.onnx`;
            needs ``datashunt[onnx]``; not combined with ``quantize``).
        device: where the torch forward passes run: ``"cpu"`` (default), ``"cuda"``,
            ``"cuda:N"``, or ``"auto"`` (a GPU when torch sees one). On a GPU, raise
            ``batch_size`` and ``max_batch_tokens`` (e.g. 512 and 65536): the CPU defaults
            leave it idle. Not combined with ``quantize`` or the ONNX backend (CPU paths).

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
        max_batch_tokens: int = 2048,
        quantize: str | None = None,
        allow_pickle: bool = False,
        trust_remote_code: bool = False,
        backend: str = "torch",
        device: str = "cpu",
    ) -> None:
        from ._deps import resolve_backbone

        if quantize not in (None, "int8"):
            raise ConfigError(f"quantize must be None or 'int8', got {quantize!r}")
        if backend not in ("torch", "onnx") or (backend == "onnx" and quantize):
            raise ConfigError(
                f"backend must be 'torch' or 'onnx' (onnx without quantize), got {backend!r}"
            )
        if batch_size < 1 or max_batch_tokens < 1:
            raise ConfigError("batch_size and max_batch_tokens must be >= 1")
        torch = require("torch")
        device = _resolve_device(torch, device)
        if device != "cpu" and (quantize or backend != "torch"):
            raise ConfigError(
                f"device {device!r} runs the torch backend in fp32: int8 and ONNX are CPU paths"
            )
        path = resolve_backbone(model_dir)
        check_weights(path, allow_pickle=allow_pickle)
        check_remote_code(path, trust_remote_code=trust_remote_code)
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
        self.device = device
        self.model.to(device=device, dtype=torch.float32).eval()
        self.quantize = quantize
        if quantize == "int8":
            self.model = quantize_int8(self.model, copy=False)
        self.backend = backend
        self._onnx: Any = None
        if backend == "onnx":
            from .onnx import OnnxLogits, export_onnx

            self._onnx = OnnxLogits(export_onnx(self.model, self.tokenizer, path))
        id2label = {int(i): str(n) for i, n in self.model.config.id2label.items()}
        labels = [id2label[i] for i in range(len(id2label))]
        super().__init__(labels, _policy_temperature(path) if temperature is None else temperature)
        self.model_dir = path
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
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
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def buckets(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Index arrays of the forward passes: inputs sorted by length (similar lengths share a
        bucket, so little padding is computed), each bucket within ``batch_size`` inputs and
        ``max_batch_tokens`` padded tokens (estimated from characters, 4 per token)."""
        lengths = [min(self.max_length, len(t) // 4 + 2) for t in texts]
        order = np.argsort([len(t) for t in texts], kind="stable")
        out: list[np.ndarray] = []
        start = 0
        while start < len(order):
            end = start + 1
            while (
                end < len(order)
                and end - start < self.batch_size
                and (end - start + 1) * lengths[order[end]] <= self.max_batch_tokens
            ):
                end += 1
            out.append(order[start:end])
            start = end
        return out

    def _logits(self, texts: list[str]) -> FloatArray:
        return self._forward(texts, features=False)[0]

    def _logits_and_features(self, texts: list[str]) -> tuple[FloatArray, FloatArray | None]:
        # the ONNX export gives logits only: no representation there
        return self._forward(texts, features=self._onnx is None)

    def _forward(self, texts: list[str], *, features: bool) -> tuple[FloatArray, FloatArray | None]:
        """Logits and, with ``features``, the last hidden state mean-pooled over each input's
        tokens (padding excluded), from the same forward pass."""
        out = np.empty((len(texts), len(self.labels)), dtype=np.float64)
        feats: FloatArray | None = None
        with self._torch.inference_mode():
            for idx in self.buckets(texts):
                enc = self.encode([texts[i] for i in idx])
                if self._onnx is not None:
                    out[idx] = self._onnx(enc)
                    continue
                if self.device != "cpu":
                    enc = enc.to(self.device)
                res = self.model(**enc, output_hidden_states=features)
                out[idx] = res.logits.float().cpu().numpy()
                if features:
                    hidden = res.hidden_states[-1].float()
                    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                    if feats is None:
                        feats = np.empty((len(texts), pooled.shape[1]), dtype=np.float64)
                    feats[idx] = pooled.cpu().numpy()
        return out, feats


def _resolve_device(torch: Any, device: str) -> str:
    """``"auto"`` made concrete; a GPU asked for that torch cannot see is a clear error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if not device.startswith("cuda"):
        raise ConfigError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r}: torch sees no GPU here (torch {torch.__version__}); "
            "use device='cpu', or install a CUDA build of torch"
        )
    return device


def quantize_int8(model: Any, *, copy: bool = True) -> Any:
    """Dynamic int8 quantisation of every ``nn.Linear`` (weights per output channel); in a copy
    unless ``copy=False`` (then ``model`` itself is converted).

    torch deprecates ``torch.ao.quantization`` in favour of torchao; the eager API still works
    on torch 2.13 and needs nothing more.
    """
    import copy as copy_module
    import warnings

    torch = require("torch")
    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(
            copy_module.deepcopy(model) if copy else model,
            {torch.nn.Linear: qconfig},
            dtype=torch.qint8,
            inplace=not copy,
        )
