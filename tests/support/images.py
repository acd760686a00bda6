"""A tiny random ViT image classifier built on disk, and images made in memory."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def build_tiny_vit(
    path: Path,
    labels: Sequence[str] = ("cat", "dog", "bird"),
    *,
    image_size: int = 16,
    processor: bool = True,
) -> Path:
    """A random ~20k-parameter ViT image classifier (and its Pillow processor), saved to path."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil

    path.mkdir(parents=True, exist_ok=True)
    config = ViTConfig(
        image_size=image_size,
        patch_size=4,
        num_channels=3,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={lab: i for i, lab in enumerate(labels)},
    )
    ViTForImageClassification(config).save_pretrained(path)
    if processor:
        ViTImageProcessorPil(size={"height": image_size, "width": image_size}).save_pretrained(path)
    return path


def random_image(seed: int = 0, size: int = 20) -> object:
    """A random RGB PIL image."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def png_bytes(seed: int = 0, size: int = 20) -> bytes:
    """A random RGB image as PNG bytes."""
    buf = io.BytesIO()
    random_image(seed, size).save(buf, format="PNG")  # type: ignore[attr-defined]
    return buf.getvalue()
