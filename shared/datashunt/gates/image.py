"""A gate over a local Hugging Face image-classification model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..images import image_input, load_pil
from ._deps import check_remote_code, check_weights, require, resolve_backbone
from .base import BaseGate, FloatArray
from .hf import _policy_temperature

__all__ = ["HFImageGate"]


class HFImageGate(BaseGate):
    """A local ``AutoModelForImageClassification`` directory as a gate.

    The same rules as :class:`~datashunt.gates.HFGate`: loaded with ``local_files_only=True``,
    safetensors only and no remote code unless asked, and the temperature saved by
    ``datashunt calibrate`` beside the model is applied. Inputs are images in any form
    :func:`datashunt.images.image_input` takes: paths, bytes, PIL images or base64 data URLs.
    Pixels are prepared by the model's own (slow, numpy) ``AutoImageProcessor`` when the
    directory has a ``preprocessor_config.json``, else resized to ``config.image_size`` and
    scaled to [-1, 1].

    Args:
        model_dir: the model directory (``config.json``, ``*.safetensors``, processor config).
        temperature: overrides the temperature saved beside the model.
        batch_size: at most this many images per forward pass.
        allow_pickle: allow ``.bin`` weights (they can run code when loaded).
        trust_remote_code: allow model code from the directory.

    Example:
        >>> gate = HFImageGate("runs/digits")  # doctest: +SKIP
        >>> gate.predict_proba(["photos/7.png"]).shape  # doctest: +SKIP
        (1, 10)
    """

    #: What the gate classifies: the shunt turns bytes, PIL images and paths into data URLs.
    modality = "image"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        temperature: float | None = None,
        batch_size: int = 16,
        allow_pickle: bool = False,
        trust_remote_code: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        path = resolve_backbone(model_dir)
        check_weights(path, allow_pickle=allow_pickle)
        check_remote_code(path, trust_remote_code=trust_remote_code)
        torch = require("torch")
        transformers = require("transformers")
        self._torch: Any = torch
        self.model: Any = transformers.AutoModelForImageClassification.from_pretrained(
            str(path),
            local_files_only=True,
            use_safetensors=not allow_pickle,
            trust_remote_code=trust_remote_code,
        )
        self.model.eval()
        self.processor: Any = None
        if (path / "preprocessor_config.json").is_file():
            # backend="pil": the torchvision processors are not needed, numpy and Pillow do
            self.processor = transformers.AutoImageProcessor.from_pretrained(
                str(path), local_files_only=True, backend="pil"
            )
        id2label = {int(i): str(n) for i, n in self.model.config.id2label.items()}
        labels = [id2label[i] for i in range(len(id2label))]
        super().__init__(labels, _policy_temperature(path) if temperature is None else temperature)
        self.model_dir = path
        self.batch_size = batch_size
        self.image_size = int(getattr(self.model.config, "image_size", 224))

    def predict_logits(self, texts: Sequence[Any]) -> FloatArray:
        """Raw logits, shape ``(n, k)``, for images in any accepted form.

        Raises:
            InputError: for a bare string or bytes (pass a list), or an input that is no image.
        """
        return super().predict_logits(_as_urls(texts))

    def pixels(self, images: Sequence[Any]) -> Any:
        """The ``pixel_values`` tensor for a list of RGB PIL images."""
        if self.processor is not None:
            return self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        size = (self.image_size, self.image_size)
        arr = np.stack([np.asarray(im.resize(size), dtype=np.float32) for im in images])
        arr = (arr / 127.5 - 1.0).transpose(0, 3, 1, 2)  # NHWC in [0, 255] -> NCHW in [-1, 1]
        return self._torch.from_numpy(np.ascontiguousarray(arr))

    def _logits(self, texts: list[str]) -> FloatArray:
        out = np.empty((len(texts), len(self.labels)), dtype=np.float64)
        with self._torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                chunk = texts[start : start + self.batch_size]
                images = [load_pil(t, index=start + i) for i, t in enumerate(chunk)]
                logits = self.model(pixel_values=self.pixels(images)).logits
                out[start : start + len(chunk)] = logits.float().cpu().numpy()
        return out


def _as_urls(inputs: Sequence[Any]) -> Sequence[Any]:
    """Each image as its data URL (paths read, PIL images encoded); a bare str or bytes is
    left for the base class to refuse with its "pass a list" message."""
    if isinstance(inputs, str | bytes) or not isinstance(inputs, Sequence):
        return inputs
    return [image_input(v, index=i) for i, v in enumerate(inputs)]
