"""Training a gate: fine-tune a local HF backbone, or fit a linear head on sentence embeddings."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ...data import Dataset
from ...errors import ConfigError
from ...gates import BaseGate, EmbeddingGate, HFGate
from ...gates._deps import DEFAULT_BACKBONE, quiet_load, require, resolve_backbone
from .loop import OptimConfig, ShuffledBatches, TrainingLoop, cross_entropy, encode_texts

__all__ = ["TRAIN_REPORT_FILE", "TrainConfig", "TrainReport", "accuracy", "train_gate"]

#: The record written beside a trained gate (also by distillation, with its own ``kind``).
TRAIN_REPORT_FILE = "datashunt_train.json"

#: How an embedding gate's head is fitted (``EmbeddingGate.fit``): all it uses, all it records.
EMBEDDING_FIT: dict[str, Any] = {"l2": 1e-3, "max_iter": 200, "batch_size": 64}


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train_gate`.

    Attributes:
        kind: ``"finetune"`` (the whole backbone learns) or ``"embedding"`` (frozen backbone,
            linear head; seconds on CPU).
        epochs: passes over the training data (``finetune``).
        lr: peak learning rate (``finetune``), linear warm-up then decay.
        batch_size: examples per step.
        max_length: tokens per example; longer ones are truncated.
        weight_decay: AdamW weight decay.
        warmup_ratio: share of steps spent warming up.
        seed: makes data order and head initialisation repeatable.
    """

    kind: Literal["finetune", "embedding"] = "finetune"
    epochs: int = 2
    lr: float = 5e-5
    batch_size: int = 16
    max_length: int = 256
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("finetune", "embedding"):
            raise ConfigError(f"kind must be 'finetune' or 'embedding', got {self.kind!r}")
        for name in ("epochs", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


@dataclass(frozen=True)
class TrainReport:
    """What :func:`train_gate` did and how well the gate does on dev data."""

    out_dir: str
    kind: str
    labels: tuple[str, ...]
    n_train: int
    n_dev: int
    dev_accuracy: float | None
    majority_accuracy: float | None
    seconds: float


def accuracy(gate: BaseGate, data: Dataset, batch_size: int | None = None) -> float:
    """Share of ``data`` whose gate argmax equals the gold label."""
    if tuple(gate.labels) != tuple(data.labels):
        index = {lab: i for i, lab in enumerate(gate.labels)}
        y = np.array([index[e.label] for e in data.examples])
    else:
        y = np.array(data.y)
    pred = gate.predict_proba(data.texts).argmax(axis=1)
    return float((pred == y).mean())


def _finetune(train: Dataset, out: Path, backbone: Path, cfg: TrainConfig, progress: bool) -> None:
    torch = require("torch")
    transformers = require("transformers")

    torch.manual_seed(cfg.seed)
    labels = list(train.labels)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(backbone), local_files_only=True)
    with quiet_load():  # the new classification head is the "missing" weights it would report
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            str(backbone),
            local_files_only=True,
            use_safetensors=True,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={lab: i for i, lab in enumerate(labels)},
        )
    texts, y = train.texts, np.array(train.y)

    def make(idx: Any) -> dict[str, Any]:
        batch = encode_texts(tokenizer, [texts[i] for i in idx], cfg.max_length)
        batch["labels"] = torch.tensor(y[idx], dtype=torch.long)
        return batch

    batches = ShuffledBatches(len(texts), cfg.batch_size, cfg.seed, make)
    optim = OptimConfig(lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio)
    loop = TrainingLoop(model, optim, total_steps=len(batches) * cfg.epochs)
    loop.fit(batches, cross_entropy, epochs=cfg.epochs, desc="train-gate", progress=progress)
    model = loop.finish()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def train_gate(
    train: Dataset,
    out_dir: str | Path,
    *,
    dev: Dataset | None = None,
    backbone: str | Path | None = None,
    config: TrainConfig | None = None,
    progress: bool = False,
) -> TrainReport:
    """Train a gate on ``train``, write it to ``out_dir`` and evaluate it on ``dev``.

    Args:
        train: labelled training examples; their label set becomes the gate's labels.
        out_dir: where the gate directory is written (loadable by :func:`datashunt.load_gate`).
        dev: labelled examples to report accuracy on.
        backbone: a local model directory; default the packaged all-MiniLM-L6-v2.
        config: hyper-parameters.
        progress: show a progress bar (``datashunt train-gate`` does; a library call is quiet).
    """
    cfg = config or TrainConfig()
    if len(train.labels) < 2:
        raise ConfigError(f"a gate needs at least 2 labels to learn, got {list(train.labels)}")
    t0 = time.perf_counter()
    out = Path(out_dir)
    base = resolve_backbone(backbone)
    gate: BaseGate
    used: dict[str, Any]  # the settings the training really ran with, for the record
    if cfg.kind == "embedding":
        emb = EmbeddingGate.fit(
            train.texts, train.y, labels=train.labels, backbone=backbone, seed=cfg.seed,
            **EMBEDDING_FIT,
        )  # fmt: skip
        emb.save(out)
        gate = emb
        max_seq = getattr(emb.encoder, "max_seq_length", None)
        used = {"kind": cfg.kind, "seed": cfg.seed, **EMBEDDING_FIT, "max_seq_length": max_seq}
    else:
        _finetune(train, out, base, cfg, progress)
        gate = HFGate(out, max_length=cfg.max_length)
        used = asdict(cfg)
    dev_acc = majority = None
    if dev is not None and len(dev):
        dev_acc = accuracy(gate, dev)
        majority = Counter(e.label for e in dev.examples).most_common(1)[0][1] / len(dev)
    report = TrainReport(
        out_dir=str(out),
        kind=cfg.kind,
        labels=tuple(train.labels),
        n_train=len(train),
        n_dev=len(dev) if dev is not None else 0,
        dev_accuracy=dev_acc,
        majority_accuracy=majority,
        seconds=time.perf_counter() - t0,
    )
    record = {
        "report": asdict(report),
        "config": used,
        "backbone": str(backbone or DEFAULT_BACKBONE),
        "backbone_path": str(base),
    }
    (out / TRAIN_REPORT_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return report
