"""What a distillation run is given: its hyper-parameters, and the checks of its inputs."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from ...data import Dataset
from ...errors import ConfigError, DataError, ModelNotFoundError
from ...gates._deps import check_weights, resolve_backbone
from ...gates.embedding import GATE_FILE
from ...policy import ShuntPolicy
from .distill_data import Method

__all__ = ["DistillConfig", "check_gate_dir", "check_labels", "gate_kind"]


@dataclass(frozen=True)
class DistillConfig:
    """Hyper-parameters of a distillation run.

    Attributes:
        method: ``"2cd"`` (both stages), ``"stage1"`` (ablation: plain distillation of the
            LLM's distributions) or ``"finetune"`` (ablation: cross-entropy on its parsed labels).
        rounds: how many times the stages alternate.
        epochs: passes over each stage's data per round.
        lr: AdamW learning rate (constant).
        batch_size: inputs per optimiser step (per process).
        max_length: tokens per input; use what the production gate runs with (HFGate: 256).
        temperature: T of stage 2 (the frozen model's ``softmax(z / T)`` is the target, and
            the learnable model is compared at the same T); default the production gate's
            calibrated temperature, i.e. the target is exactly its ``C_s1`` distribution.
        threshold: δ; default the production gate's policy threshold.
        llm_min_confidence: δ_l; stage 1 uses answers with ``C_l > δ_l``.
        trust_unscored: use answers logged without logprobs (no ``C_l``) as one-hot targets.
        stage2_max: at most this many stage-2 inputs per round (a fresh sample each round).
        weight_decay: AdamW weight decay.
        eval_batch_size: inputs per forward pass when scoring.
        seed: makes data order, sampling and dropout repeatable.
    """

    method: Method = "2cd"
    rounds: int = 2
    epochs: int = 1
    lr: float = 3e-5
    batch_size: int = 16
    max_length: int = 256
    temperature: float | None = None
    threshold: float | None = None
    llm_min_confidence: float = 0.8
    trust_unscored: bool = False
    stage2_max: int | None = None
    weight_decay: float = 0.01
    eval_batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in get_args(Method):
            raise ConfigError(f"method must be one of {get_args(Method)}, got {self.method!r}")
        for name in ("rounds", "epochs", "batch_size", "max_length", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        t = self.temperature
        if t is not None and not (math.isfinite(t) and t > 0):
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1], got {self.threshold}")
        if not 0.0 <= self.llm_min_confidence < 1.0:
            raise ConfigError(
                f"llm_min_confidence must be in [0, 1), got {self.llm_min_confidence}"
            )
        if self.stage2_max is not None and self.stage2_max < 1:
            raise ConfigError(f"stage2_max must be >= 1 (or None for all), got {self.stage2_max}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")

    def resolve_threshold(self, policy: ShuntPolicy | None, gate_dir: Path) -> float:
        """δ of the run: :attr:`threshold`, else the production gate's policy's.

        Raises:
            ConfigError: neither is there.
        """
        if self.threshold is not None:
            return self.threshold
        if policy is not None:
            return policy.threshold
        raise ConfigError(
            f"no policy beside {gate_dir}, so δ is unknown: calibrate the gate first "
            "(`datashunt calibrate --gate DIR ...`) or pass --threshold"
        )


def gate_kind(gate_dir: str | Path) -> Literal["finetune", "embedding", "image", "ensemble"]:
    """What ``train-gate`` (or ``bench``) wrote at ``gate_dir``: its ``datashunt_gate.json``
    type, an image classifier, else a fine-tuned text classifier."""
    from ...gates import _is_image_model

    path = Path(gate_dir).expanduser()
    meta = path / GATE_FILE
    kind = json.loads(meta.read_text(encoding="utf-8")).get("type") if meta.is_file() else None
    if kind in ("embedding", "ensemble"):
        return "embedding" if kind == "embedding" else "ensemble"
    return "image" if _is_image_model(path) else "finetune"


def check_gate_dir(gate_dir: str | Path) -> Path:
    """The production gate's directory, checked to be a text gate that can be distilled: a
    fine-tuned classifier (safetensors) or an embedding gate (its head is refit).

    Raises:
        ModelNotFoundError: no folder there.
        ConfigError: an image gate or an ensemble (nothing to distil into), or unsafe weights.
    """
    if not Path(gate_dir).expanduser().is_dir():
        raise ModelNotFoundError(
            f"no gate folder at {str(gate_dir)!r}: distillation starts from a gate written by "
            "`datashunt train-gate` (--kind finetune or embedding; models are never "
            "downloaded at run time)"
        )
    path = resolve_backbone(gate_dir)
    kind = gate_kind(path)
    if kind == "image":
        raise ConfigError(
            f"{path} is an image gate; the store keeps an image's hash, never its bytes, so "
            "there is nothing to distil: retrain it with `datashunt train-gate --kind image` "
            "on a labelled folder"
        )
    if kind == "ensemble":
        raise ConfigError(
            f"{path} is an ensemble of gates; distil one of its members (a gate written by "
            "`datashunt train-gate`) instead"
        )
    if kind == "finetune":
        check_weights(path, allow_pickle=False)
    return path


def check_labels(data: Dataset | None, labels: Sequence[str], what: str) -> None:
    """Raise :class:`DataError` when ``data`` holds labels outside the gate's ``labels``."""
    if data is None:
        return
    unknown = sorted({e.label for e in data.examples} - set(labels))
    if unknown:
        raise DataError(
            f"{what} has labels {unknown} that the gate does not know (gate labels "
            f"{list(labels)}): use data with the gate's label set"
        )
