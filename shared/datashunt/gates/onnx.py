"""An ONNX Runtime backend for :class:`~datashunt.gates.HFGate`: export once, run faster.

The torch model is exported with ``torch.onnx.export`` the first time a gate is opened with
``backend="onnx"``, and the file is kept beside the model (``datashunt_gate.onnx``, with a
small JSON stamp naming the weights' digest it came from); later opens, and every Ray actor
of a batch job, load the cached file. The export uses the eager attention (not SDPA): its
graph is the one ONNX Runtime's BERT fusions recognise. ``quantize="int8"`` then runs the
int8 recipe of :mod:`datashunt.gates.onnx_int8` (fused attention and GELU, the FFN
inputs' outlier channels in fp32, dynamic int8 weights per channel):
``datashunt_gate.int8.onnx``, its stamp naming the recipe too, so a file made by an older
recipe is made again.

A read-only model directory (the packaged backbone) caches under ``~/.cache/datashunt/onnx/``
instead. Each file is written to a temporary name and renamed, so actors that export at the
same time never read half a file. The cache is keyed by the SHA-256 of the weights (see
:func:`~datashunt.gates._deps.weights_digest`): a retrained model is exported again, a
copied one is not.

Sessions flush denormal floats to zero while they run (their own threads always, the calling
thread during each call only, its own setting restored after): the attention's softmax
produces denormals, and each one costs the CPU a microcode assist (measured on MiniLM, int8,
2 threads: the fused attention 25.8 -> 17.2 ms on a [32, 46] batch).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataShuntError
from .onnx_int8 import RECIPE, quantize_int8

__all__ = ["ONNX_FILE", "ONNX_INT8_FILE", "OnnxLogits", "export_onnx"]

#: The exported model's file name, beside the model's weights.
ONNX_FILE = "datashunt_gate.onnx"
#: The optimised, int8-quantised export (``HFGate(backend="onnx", quantize="int8")``).
ONNX_INT8_FILE = "datashunt_gate.int8.onnx"
_OPSET = 17
_ATTENTION = "eager"  # in the fp32 stamp: the attention the graph was traced with
# ONNX Runtime's (contrib) SkipLayerNormalization kernel is about 3x slower on CPU than the Add
# and LayerNormalization it replaces (1.32, [32, 40, 384] fp32, 1 or 2 threads), and does not
# use a second thread: the fusion is left out of the int8 file and disabled at load
_SLOW_FUSIONS = ["SkipLayerNormFusion"]


def _require_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise DataShuntError(
            "the ONNX gate backend needs onnxruntime: pip install 'datashunt[onnx]'"
        ) from exc
    return onnxruntime


def _cache_dir(model_dir: Path) -> Path:
    if os.access(model_dir, os.W_OK):
        return model_dir
    key = hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:16]
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "datashunt" / "onnx" / key


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")  # not datashunt_gate.json


def _is_current(path: Path, stamp: Mapping[str, Any]) -> bool:
    try:
        return path.is_file() and json.loads(_stamp_path(path).read_text("utf-8")) == stamp
    except (OSError, ValueError):
        return False  # no stamp or a damaged one: export again


def _write_atomically(path: Path, write: Callable[[str], None], stamp: Mapping[str, Any]) -> None:
    """``write(tmp)`` then rename to ``path``; the stamp is written last, so a crash between
    the two leaves a file that is exported again rather than one trusted by mistake."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _stamp_path(path).write_text(json.dumps(dict(stamp)), encoding="utf-8")


def export_onnx(
    model: Any, tokenizer: Any, model_dir: Path, *, digest: str, quantize: str | None = None
) -> Path:
    """The ONNX file for ``model`` (exported now unless a current one is cached).

    Args:
        model: the torch ``AutoModelForSequenceClassification`` (fp32).
        tokenizer: its tokenizer (gives the input names and a sample batch).
        model_dir: the directory the model was loaded from (the cache sits beside it).
        digest: the weights' digest; a cached file made from other weights is replaced.
        quantize: ``None`` (fp32) or ``"int8"`` (optimised, then dynamically quantised).
    """
    import torch

    ort = _require_ort()
    cache = _cache_dir(model_dir)
    path = cache / ONNX_FILE
    stamp = {
        "weights": digest,
        "torch": torch.__version__,
        "opset": _OPSET,
        "attention": _ATTENTION,
    }
    if not _is_current(path, stamp):
        _write_atomically(path, lambda tmp: _export(model, tokenizer, tmp), stamp)
    if quantize is None:
        return path
    qpath = cache / ONNX_INT8_FILE
    qstamp = {**stamp, "onnxruntime": ort.__version__, "quantize": quantize, "recipe": RECIPE}
    if not _is_current(qpath, qstamp):
        shape = {
            "num_heads": _config_int(model, "num_attention_heads"),
            "hidden_size": _config_int(model, "hidden_size"),
            "max_tokens": min(
                _config_int(model, "max_position_embeddings") or 512,
                int(min(getattr(tokenizer, "model_max_length", 512) or 512, 512)),
            ),
        }
        _write_atomically(qpath, lambda tmp: quantize_int8(path, tmp, tokenizer, **shape), qstamp)
    return qpath


def _config_int(model: Any, name: str) -> int:
    value = getattr(getattr(model, "config", None), name, 0)
    return value if isinstance(value, int) else 0  # 0: the optimiser reads it from the graph


def _export(model: Any, tokenizer: Any, out: str) -> None:
    import torch

    sample = tokenizer(["an example", "another, longer example"], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    axes = {n: {0: "batch", 1: "tokens"} for n in names}
    axes["logits"] = {0: "batch"}
    # SDPA traces to a graph ONNX Runtime's attention fusion does not recognise (measured on
    # MiniLM: no Attention fused, int8 1.1x torch fp32 on long inputs against 1.6x fused)
    previous = getattr(getattr(model, "config", None), "_attn_implementation", _ATTENTION)
    switch = previous != _ATTENTION and hasattr(model, "set_attn_implementation")
    if switch:
        model.set_attn_implementation(_ATTENTION)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # the TorchScript exporter warns that it is deprecated; it needs no onnxscript
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                tuple(sample[n] for n in names),
                out,
                input_names=names,
                output_names=["logits"],
                dynamic_axes=axes,
                opset_version=_OPSET,
                dynamo=False,
            )
    finally:
        if switch:
            model.set_attn_implementation(previous)


class OnnxLogits:
    """An ONNX Runtime session that maps a tokenised bucket to logits.

    Args:
        path: the exported model.
        threads: intra-op threads (``None``: ``$OMP_NUM_THREADS`` if set, else ONNX Runtime's
            default, all cores).
    """

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        ort = _require_ort()
        options = ort.SessionOptions()
        if threads is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
            # a Ray actor with num_cpus=1 gets OMP_NUM_THREADS=1, which torch honours and
            # ONNX Runtime does not: without this, two actors on two cores take four threads
            threads = int(os.environ["OMP_NUM_THREADS"]) or None
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # workers spin between the operators of a call (a sleeping one is woken for each of
        # them: ONNX int8 on 2 cores, 128 short inputs 816 -> 943 rows/s, decide([x]) p50
        # 3.4 -> 2.5 ms) and stop as soon as the call returns: a pool still spinning after it
        # holds the cores that torch, the tokenizer or a second gate need next (torch fp32's
        # one-input decide p50 beside it: 8.9 ms with the stop, 22.8 ms without)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.force_spinning_stop", "1")
        # no memory pattern: it is planned per input shape, and a gate sees a new shape with
        # nearly every bucket and every single input (measured: ONNX int8 on 2 cores, 32 long
        # inputs +8 % rows/s in two runs, 128 short ones +3 %; the same answers)
        options.enable_mem_pattern = False
        # the session's threads flush denormals (see the module); ONNX Runtime also sets it on
        # the thread that opens the session, which _FlushDenormals then undoes
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        self.path = path
        self.threads = threads
        with _FlushDenormals():
            self.session = ort.InferenceSession(
                str(path),
                options,
                providers=["CPUExecutionProvider"],
                disabled_optimizers=_SLOW_FUSIONS,
            )
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, encoded: Mapping[str, Any]) -> np.ndarray:
        """Logits for one bucket as the tokenizer returned it (numpy arrays or torch tensors)."""
        feed = {
            n: np.asarray(
                encoded[n].numpy() if hasattr(encoded[n], "numpy") else encoded[n], dtype=np.int64
            )
            for n in self.inputs
        }
        with _FlushDenormals():  # the calling thread computes its share of each operator
            (logits,) = self.session.run(["logits"], feed)
        return np.asarray(logits, dtype=np.float64)


def _flushing() -> bool:
    """Whether this thread flushes denormal floats to zero (a denormal times one is zero)."""
    return bool(np.float32(1e-39) * np.float32(1.0) == 0)


class _FlushDenormals:
    """Flush denormals to zero on this thread inside the block, then put back the thread's own
    setting (torch's ``set_flush_denormal`` sets the CPU's FTZ and DAZ bits; without torch,
    only the session's own threads flush)."""

    def __enter__(self) -> None:
        self.before = _flushing()
        if not self.before and (torch := _torch_or_none()) is not None:
            torch.set_flush_denormal(True)

    def __exit__(self, *exc: object) -> None:
        if self.before != _flushing() and (torch := _torch_or_none()) is not None:
            torch.set_flush_denormal(self.before)


def _torch_or_none() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch
