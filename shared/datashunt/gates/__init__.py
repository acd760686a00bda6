"""Gates: the small models that decide the route."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .base import BaseGate, FloatArray, Gate, softmax
from .embedding import GATE_FILE, EmbeddingGate
from .hf import HFGate
from .image import HFImageGate

__all__ = [
    "BaseGate",
    "EmbeddingGate",
    "FloatArray",
    "Gate",
    "HFGate",
    "HFImageGate",
    "load_gate",
    "softmax",
]


def load_gate(gate_dir: str | Path, **kwargs: Any) -> BaseGate:
    """Load any gate directory written by datashunt (or a plain HF classification model).

    Keyword arguments go to the gate's constructor or loader (``temperature``, ...).
    """
    path = Path(gate_dir)
    meta = path / GATE_FILE
    kind = json.loads(meta.read_text(encoding="utf-8")).get("type") if meta.is_file() else None
    if kind == "embedding":
        return EmbeddingGate.load(path, **kwargs)
    if kind == "ensemble":  # a mix of gates (datashunt bench --gate A+B saves one)
        from .ensemble import EnsembleGate

        return EnsembleGate.load(path)
    if _is_image_model(path):
        return HFImageGate(path, **kwargs)
    return HFGate(path, **kwargs)


def _is_image_model(path: Path) -> bool:
    """An image classifier: its config names an ``*ForImageClassification`` architecture."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    archs = config.get("architectures") if isinstance(config, dict) else None
    return any(str(a).endswith("ForImageClassification") for a in archs or ())
