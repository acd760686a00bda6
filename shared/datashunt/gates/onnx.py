"""An ONNX Runtime backend for :class:`~datashunt.gates.HFGate`: export once, run faster.

The torch model is exported with ``torch.onnx.export`` the first time a gate is opened with
``backend="onnx"``, and the file is kept beside the model (``datashunt_gate.onnx``, with a
small JSON stamp naming the weights it came from); later opens, and every Ray actor of a batch
job, load the cached file. A read-only model directory (the packaged backbone) caches under
``~/.cache/datashunt/onnx/`` instead. The export is written to a temporary name and renamed,
so actors that export at the same time never read half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataShuntError

__all__ = ["ONNX_FILE", "OnnxLogits", "export_onnx"]

#: The exported model's file name, beside the model's weights.
ONNX_FILE = "datashunt_gate.onnx"
_OPSET = 17


def _require_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise DataShuntError(
            "the ONNX gate backend needs onnxruntime: pip install 'datashunt[onnx]'"
        ) from exc
    return onnxruntime


def _weights_stamp(model_dir: Path) -> str:
    """What the export depends on: the weight files' names, sizes and modification times."""
    parts = [
        f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
        for p in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.bin"))
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _cache_path(model_dir: Path) -> Path:
    if os.access(model_dir, os.W_OK):
        return model_dir / ONNX_FILE
    key = hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:16]
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "datashunt" / "onnx" / key / ONNX_FILE


def export_onnx(model: Any, tokenizer: Any, model_dir: Path) -> Path:
    """The ONNX file for ``model`` (exported now unless a current one is cached).

    Args:
        model: the torch ``AutoModelForSequenceClassification`` (fp32).
        tokenizer: its tokenizer (gives the input names and a sample batch).
        model_dir: the directory the model was loaded from (the cache sits beside it).
    """
    import torch

    path = _cache_path(model_dir)
    stamp_file = path.with_name(path.name + ".json")  # not datashunt_gate.json
    stamp = {"weights": _weights_stamp(model_dir), "torch": torch.__version__, "opset": _OPSET}
    if path.is_file() and stamp_file.is_file():
        try:
            if json.loads(stamp_file.read_text(encoding="utf-8")) == stamp:
                return path
        except ValueError:
            pass  # a damaged stamp: export again
    path.parent.mkdir(parents=True, exist_ok=True)
    sample = tokenizer(["an example", "another, longer example"], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    axes = {n: {0: "batch", 1: "tokens"} for n in names}
    axes["logits"] = {0: "batch"}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # the TorchScript exporter warns that it is deprecated; it needs no onnxscript
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                tuple(sample[n] for n in names),
                tmp,
                input_names=names,
                output_names=["logits"],
                dynamic_axes=axes,
                opset_version=_OPSET,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    stamp_file.write_text(json.dumps(stamp), encoding="utf-8")
    return path


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
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, encoded: Any) -> np.ndarray:
        """Logits for one bucket as the tokenizer returned it (torch tensors or arrays)."""
        feed = {
            n: np.asarray(encoded[n].numpy() if hasattr(encoded[n], "numpy") else encoded[n])
            for n in self.inputs
        }
        feed = {n: v.astype(np.int64, copy=False) for n, v in feed.items()}
        (logits,) = self.session.run(["logits"], feed)
        return np.asarray(logits, dtype=np.float64)
