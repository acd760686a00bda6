"""A gate over a local Hugging Face sequence-classification model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, GateError
from ..policy import POLICY_FILE, ShuntPolicy
from ._deps import check_remote_code, check_weights, require, weights_digest
from .base import BaseGate, FloatArray

__all__ = ["HFGate", "quantize_int8"]

# A token rarely spans more than this many characters; cutting the text first keeps a
# multi-megabyte input from being tokenised in full only to be truncated afterwards.
_CHARS_PER_TOKEN_CAP = 16
_PRECISIONS = (None, "int8", "bf16", "fp16")
_ONNX = (None, "int8")  # precisions the ONNX backend offers


def _policy_temperature(model_dir: Path) -> float:
    # read through ShuntPolicy: a broken policy file is one error that names it
    if (model_dir / POLICY_FILE).is_file():
        return ShuntPolicy.load(model_dir).temperature
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
        quantize: ``None`` keeps fp32. ``"int8"`` stores weight matrices in int8, per output
            channel, and quantises activations per call (dynamic quantisation; with
            ``backend="onnx"`` the fastest gate for one input at a time, see BENCHMARKS.md for
            speed and accuracy). ``"bf16"`` runs the torch model in bfloat16 (CPUs with
            AVX-512 BF16/AMX, where it gives the most rows/s, or a GPU);
            ``"fp16"`` in float16 (a GPU only).
        allow_pickle: allow ``.bin`` weights (they can run code when loaded).
        trust_remote_code: allow model code from the directory.
        backend: ``"torch"``, or ``"onnx"`` to run the forward passes in ONNX Runtime (the
            model is exported once and cached beside it, see :mod:`datashunt.gates.onnx`;
            needs ``datashunt[onnx]``; with ``quantize`` ``None`` or ``"int8"``).
        device: where the torch forward passes run: ``"cpu"`` (default), ``"cuda"``,
            ``"cuda:N"``, or ``"auto"`` (a GPU when torch sees one). On a GPU, raise
            ``batch_size`` and ``max_batch_tokens`` (e.g. 512 and 65536): the CPU defaults
            leave it idle. Not combined with int8 or the ONNX backend (CPU paths).
        threads: ONNX Runtime's intra-op threads (``None``: ``$OMP_NUM_THREADS`` or all
            cores); the torch backend follows ``torch.set_num_threads``.

    Raises:
        GateError: the directory holds no trained classifier head (a bare backbone), or its
            weights file cannot be read (truncated, damaged); the message names the file.

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
        threads: int | None = None,
    ) -> None:
        from ._deps import resolve_backbone

        if quantize not in _PRECISIONS:
            raise ConfigError(f"quantize must be None, 'int8', 'bf16' or 'fp16', got {quantize!r}")
        if backend not in ("torch", "onnx") or (backend == "onnx" and quantize not in _ONNX):
            raise ConfigError(
                "backend must be 'torch' or 'onnx' (onnx with quantize None or 'int8'), got "
                f"backend={backend!r}, quantize={quantize!r}"
            )
        if batch_size < 1 or max_batch_tokens < 1:
            raise ConfigError("batch_size and max_batch_tokens must be >= 1")
        torch = require("torch")
        device = _resolve_device(torch, device)
        if device != "cpu" and (quantize == "int8" or backend != "torch"):
            raise ConfigError(
                f"device {device!r} runs the torch backend in fp32, bf16 or fp16: int8 and ONNX "
                "are CPU paths"
            )
        if device == "cpu" and quantize == "fp16":
            raise ConfigError("quantize='fp16' needs a GPU (device='cuda'); on a CPU use 'bf16'")
        path = resolve_backbone(model_dir)
        check_weights(path, allow_pickle=allow_pickle)
        check_remote_code(path, trust_remote_code=trust_remote_code)
        transformers = require("transformers")
        self._torch: Any = torch
        self.tokenizer: Any = transformers.AutoTokenizer.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=trust_remote_code
        )
        self.model: Any = _load_classifier(transformers, path, allow_pickle, trust_remote_code)
        self.device = device
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(quantize or "", torch.float32)
        self.model.to(device=device, dtype=torch.float32).eval()
        self.quantize = quantize
        self.backend = backend
        self.model_dir = path
        self._digest: str | None = None
        self._onnx: Any = None
        if backend == "onnx":
            from .onnx import OnnxLogits, export_onnx

            onnx_path = export_onnx(
                self.model, self.tokenizer, path, digest=self.weights_digest, quantize=quantize
            )
            self._onnx = OnnxLogits(onnx_path, threads=threads)
        elif quantize == "int8":
            self.model = quantize_int8(self.model, copy=False)
        elif dtype is not torch.float32:
            self.model.to(dtype=dtype)
        id2label = {int(i): str(n) for i, n in self.model.config.id2label.items()}
        labels = [id2label[i] for i in range(len(id2label))]
        super().__init__(labels, _policy_temperature(path) if temperature is None else temperature)
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        model_max = getattr(self.tokenizer, "model_max_length", max_length) or max_length
        self.max_length = int(min(max_length, model_max))

    @property
    def weights_digest(self) -> str:
        """SHA-256 (16 hex digits) of the weights and the label order: what a policy pins.
        Hashed on first use (about 0.1 s for MiniLM), then kept."""
        if self._digest is None:
            self._digest = weights_digest(self.model_dir)
        return self._digest

    def encode(self, texts: Sequence[str], tensors: str = "pt") -> Any:
        """Tokenise one bucket (padded to its longest member, truncated to ``max_length``);
        ``tensors="np"`` gives numpy arrays (what ONNX Runtime takes)."""
        cap = self.max_length * _CHARS_PER_TOKEN_CAP
        return self.tokenizer(
            [t[:cap] for t in texts],
            padding=len(texts) > 1,  # one input needs no padding (nor its attention to it)
            truncation=True,
            max_length=self.max_length,
            return_tensors=tensors,
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
        if self._onnx is not None:
            # no torch on this path: tokenise to numpy, one session call per bucket
            if len(texts) == 1:  # the single-input path: no bucketing, no copies
                return self._onnx(self.encode(texts, "np")), None
            out = np.empty((len(texts), len(self.labels)), dtype=np.float64)
            for idx in self.buckets(texts):
                out[idx] = self._onnx(self.encode([texts[i] for i in idx], "np"))
            return out, None
        out = np.empty((len(texts), len(self.labels)), dtype=np.float64)
        feats: FloatArray | None = None
        with self._torch.inference_mode():
            for idx in self.buckets(texts) if len(texts) > 1 else [np.zeros(1, dtype=np.intp)]:
                enc = self.encode([texts[i] for i in idx])
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


def _load_classifier(transformers: Any, path: Path, allow_pickle: bool, remote: bool) -> Any:
    """The classifier, refusing one whose weights are unreadable or incomplete.

    transformers fills weights missing from the file with random values and only logs it; a
    backbone without a head would then answer with a random head (confidence about 0.5)."""
    weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    try:
        model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
            str(path),
            local_files_only=True,
            use_safetensors=not allow_pickle,
            trust_remote_code=remote,
            output_loading_info=True,
        )
    except Exception as exc:  # safetensors, torch and transformers each raise their own
        named = ", ".join(f"{p} ({p.stat().st_size:,} bytes)" for p in weights) or str(path)
        raise GateError(
            f"cannot load the gate's weights from {named}: {type(exc).__name__}: {exc}. The "
            "file is damaged or truncated: copy it again, or re-train the gate"
        ) from exc
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        head = [k for k in missing if not k.startswith(model.base_model_prefix + ".")]
        shown = ", ".join(missing[:6]) + (
            f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        )
        if head:
            raise GateError(
                f"{path} holds no trained classifier head (missing weights: {shown}): it is a "
                "backbone, not a gate, and would answer with a random head. Fine-tune one: "
                f"`datashunt train-gate --backbone {path} --out DIR`"
            )
        raise GateError(
            f"the weights in {path} are incomplete (missing: {shown}): copy the model again"
        )
    return model


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
