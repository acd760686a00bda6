"""A fine-tuned student: MiniLM's top layers learn from the LLM's answers.

The frozen-embedding head (:class:`~.student.EmbeddingStudent`) agrees with gpt-3.5 on only
about 78 % of MR: too little for the gate to take many inputs. Fine-tuning the backbone is what
lifts it, but on two CPU cores a stream cannot afford to run the whole network forward and
backward every round. So the student fine-tunes the **top** ``tuned_layers`` transformer layers and
a linear head on the normalised mean-pooled embedding (the sentence embedding MiniLM was
trained to give), and runs the frozen lower layers once per text (:class:`FrozenFeatures`,
cached on disk): each round and each prediction then costs only the top layers. The head
starts as the frozen-embedding student's logistic regression on the same answers, so the first
round begins where :class:`~.student.EmbeddingStudent` ends and fine-tuning only adds.

Each round continues from the previous round's weights (:meth:`TunedStudent.successor`) and
trains on the new answers plus a random replay sample of the older ones, so the student keeps
what it learnt without refitting from scratch. Unreadable answers are never training labels (the
caller passes readable answers only).

:meth:`TunedStudent.save_gate` writes an :class:`~datashunt.gates.EmbeddingGate` directory
whose encoder is the fine-tuned sentence-transformers model: the engine serves it as is.

Texts are addressed by their row in :class:`FrozenFeatures`: ``x`` holds row indices.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..gates._deps import quiet_load, require, resolve_backbone
from .student import FloatArray, fit_softmax_head

__all__ = ["FrozenFeatures", "TuneConfig", "TunedStudent"]


@dataclass(frozen=True)
class TuneConfig:
    """How the student fine-tunes.

    Attributes:
        tuned_layers: transformer layers that learn (from the top); the rest are frozen. All
            six of MiniLM agree best with the LLM (``bench/student_choice.py``); two cost a
            third as much per round.
        epochs: passes over a round's training set (new answers and their replay sample).
        first_epochs: passes in the first round (nothing to continue from).
        replay: older answers replayed per new answer (a random sample, drawn each round).
        lr: AdamW learning rate of the tuned layers (constant after a 10 % warm-up).
        head_lr: the head's learning rate.
        l2: the initial logistic regression's L2 penalty (:class:`~.student.EmbeddingStudent`).
        batch_size: answers per step.
        max_length: tokens per text.
    """

    tuned_layers: int = 6
    epochs: int = 2
    first_epochs: int = 3
    replay: float = 2.0
    lr: float = 1e-4
    head_lr: float = 1e-3
    l2: float = 1e-3
    batch_size: int = 32
    max_length: int = 64

    def __post_init__(self) -> None:
        if self.tuned_layers < 1 or self.epochs < 1 or self.first_epochs < 1:
            raise ConfigError("tuned_layers, epochs and first_epochs must be >= 1")
        if self.replay < 0 or not self.lr > 0:
            raise ConfigError(f"replay must be >= 0 and lr > 0, got {self.replay}, {self.lr}")


class FrozenFeatures:
    """The frozen lower layers' output for a fixed list of texts, computed once.

    Args:
        texts: the corpus (a stream, or the store's inputs); rows are addressed by index.
        config: the student's settings (how many layers stay frozen, ``max_length``).
        backbone: a local model directory; ``None``: the packaged all-MiniLM-L6-v2.
        cache: a directory to keep the features in (keyed by texts, backbone and depth).
    """

    def __init__(
        self,
        texts: Sequence[str],
        config: TuneConfig | None = None,
        backbone: str | Path | None = None,
        cache: str | Path | None = None,
    ) -> None:
        torch = require("torch")
        transformers = require("transformers")
        if not texts:
            raise DataError("no texts to encode")
        self.config = config or TuneConfig()
        self.backbone = resolve_backbone(backbone)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(
            str(self.backbone), local_files_only=True
        )
        with quiet_load():
            self.base = transformers.AutoModel.from_pretrained(
                str(self.backbone), local_files_only=True, use_safetensors=True
            ).eval()
        n_layers = len(self.base.encoder.layer)
        if self.config.tuned_layers > n_layers:
            raise ConfigError(f"tuned_layers {self.config.tuned_layers} > {n_layers} layers")
        self.frozen = n_layers - self.config.tuned_layers
        self.n = len(texts)
        key = hashlib.sha256(
            "\x00".join(
                [str(self.backbone), str(self.frozen), str(self.config.max_length)]
            ).encode()
        )
        for t in texts:
            key.update(t.encode("utf-8", "replace") + b"\x00")
        path = Path(cache) / f"frozen-{key.hexdigest()[:16]}.npz" if cache else None
        self.path = path
        if path is not None and path.is_file():
            z = np.load(path)
            self.flat, self.offsets = z["flat"], z["offsets"]
        else:
            self.flat, self.offsets = self._encode(list(texts), torch)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savez(path, flat=self.flat, offsets=self.offsets)

    def _encode(self, texts: list[str], torch: Any) -> tuple[Any, Any]:
        order = np.argsort([len(t) for t in texts])
        parts: list[Any] = [None] * len(texts)
        bert = self.base
        with torch.inference_mode():
            for b in range(0, len(texts), 128):
                idx = order[b : b + 128]
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.config.max_length,
                    return_tensors="pt",
                )
                h = bert.embeddings(input_ids=enc["input_ids"])
                mask = _mask(self.base.config, h, enc["attention_mask"])
                for layer in bert.encoder.layer[: self.frozen]:
                    h = layer(h, mask)
                lens = enc["attention_mask"].sum(dim=1).tolist()
                for j, i in enumerate(idx):
                    parts[i] = h[j, : lens[j]].to(torch.float16).numpy()
        offsets = np.cumsum([0] + [len(p) for p in parts]).astype(np.int64)
        return np.concatenate(parts), offsets

    def batch(self, rows: Sequence[int]) -> tuple[Any, Any]:
        """Padded ``(hidden, mask)`` tensors for ``rows``."""
        torch = require("torch")
        lens = [int(self.offsets[r + 1] - self.offsets[r]) for r in rows]
        h = np.zeros((len(rows), max(lens), self.flat.shape[1]), dtype=np.float32)
        m = np.zeros((len(rows), max(lens)), dtype=np.int64)
        for j, r in enumerate(rows):
            h[j, : lens[j]] = self.flat[self.offsets[r] : self.offsets[r + 1]]
            m[j, : lens[j]] = 1
        return torch.from_numpy(h), torch.from_numpy(m)


def _mask(config: Any, h: Any, mask2d: Any) -> Any:
    masking = require("transformers.masking_utils")
    return masking.create_bidirectional_mask(config=config, inputs_embeds=h, attention_mask=mask2d)


@dataclass
class TunedStudent:
    """MiniLM's top layers and a linear head on its sentence embedding, fine-tuned on the
    LLM's answers.

    Args:
        labels: the label names, in output order.
        features: the corpus the rows ``x`` refer to.
        config: the fine-tuning settings (taken from ``features`` by default).
        seed: data order, replay draws and head initialisation.

    Example:
        >>> s = TunedStudent(("neg", "pos"), FrozenFeatures(texts)).fit_indices(rows, y)
        ... # doctest: +SKIP
    """

    labels: tuple[str, ...]
    features: FrozenFeatures
    seed: int = 0
    top: Any = None
    n_answers: int = 0
    history: list[int] = field(default_factory=list)
    _learnt: int = 0  # answers already trained on (the oldest first)

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"a student needs at least two distinct labels, got {self.labels}")

    @property
    def config(self) -> TuneConfig:
        return self.features.config

    @property
    def fitted(self) -> bool:
        return self.top is not None

    def _fresh_top(self) -> Any:
        torch = require("torch")
        base = self.features.base
        torch.manual_seed(self.seed)
        top = torch.nn.ModuleDict(
            {
                "layers": copy.deepcopy(base.encoder.layer[self.features.frozen :]),
                "head": torch.nn.Linear(base.config.hidden_size, len(self.labels)),
            }
        )
        top["head"].weight.data.zero_()
        top["head"].bias.data.zero_()
        return top

    def _init_head(self, rows: Any, y: Any) -> None:
        """The head as the logistic regression on the untuned embeddings of ``rows``."""
        torch = require("torch")
        emb = np.zeros((len(rows), self.features.base.config.hidden_size))
        with torch.inference_mode():
            for s in range(0, len(rows), 256):
                emb[s : s + 256] = self._embed(rows[s : s + 256].tolist()).numpy()
        w, b = fit_softmax_head(emb, y, len(self.labels), l2=self.config.l2)
        self.top["head"].weight.data = torch.tensor(w, dtype=torch.float32)
        self.top["head"].bias.data = torch.tensor(b, dtype=torch.float32)

    def successor(self, seed: int | None = None) -> TunedStudent:
        """A copy that continues from these weights (this one stays as it is)."""
        s = TunedStudent(self.labels, self.features, self.seed if seed is None else seed)
        s.top = copy.deepcopy(self.top)
        s.n_answers, s.history, s._learnt = self.n_answers, list(self.history), self._learnt
        return s

    def _embed(self, rows: Sequence[int]) -> Any:
        """Normalised mean-pooled embeddings of ``rows`` (what sentence-transformers gives)."""
        torch = require("torch")
        h, m = self.features.batch(rows)
        mask = _mask(self.features.base.config, h, m)
        for layer in self.top["layers"]:
            h = layer(h, mask)
        w = m.unsqueeze(-1).to(h.dtype)
        pooled = (h * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def _logits(self, rows: Sequence[int]) -> Any:
        return self.top["head"](self._embed(rows))

    def fit_indices(self, x: Any, y: Any, *, warm: bool = True) -> TunedStudent:
        """Train on rows ``x`` with LLM label indices ``y`` (readable answers, oldest first).
        With ``warm`` and a trained student, the answers it has not yet learnt are trained on
        together with ``replay`` times as many older ones, drawn at random."""
        torch = require("torch")
        rows = np.asarray(x, dtype=np.int64)
        yy = np.asarray(y, dtype=np.int64)
        if len(yy) == 0 or len(np.unique(yy)) < 2:
            raise DataError(
                f"the student needs readable LLM answers of at least two labels, got {len(yy)} "
                f"answer(s) of {len(np.unique(yy))} label(s): let the shunt shadow longer"
            )
        rng = np.random.default_rng(self.seed + len(yy))
        cfg = self.config
        if not (warm and self.fitted) or self._learnt > len(yy):
            self.top, self._learnt = self._fresh_top(), 0
            self._init_head(rows, yy)
        new = np.arange(self._learnt, len(yy))
        first = self._learnt == 0
        old = np.arange(self._learnt)
        if len(old):  # replay 0: the new answers alone
            old = rng.choice(old, size=min(len(old), int(cfg.replay * len(new))), replace=False)
        train = np.concatenate([new, old])
        if len(train):
            epochs = cfg.first_epochs if first else cfg.epochs
            steps = epochs * -(-len(train) // cfg.batch_size)
            opt = torch.optim.AdamW(
                [
                    {"params": self.top["layers"].parameters(), "lr": cfg.lr},
                    {"params": self.top["head"].parameters(), "lr": cfg.head_lr},
                ],
                weight_decay=0.01,
            )
            warm_steps = max(1, steps // 10)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm_steps))
            self.top.train()
            for _ in range(epochs):
                order = rng.permutation(train)
                for b in range(0, len(order), cfg.batch_size):
                    idx = order[b : b + cfg.batch_size]
                    logits = self._logits(rows[idx].tolist())
                    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(yy[idx]))
                    loss.backward()
                    opt.step()
                    sched.step()
                    opt.zero_grad()
            self.top.eval()
        self._learnt = self.n_answers = len(yy)
        self.history.append(len(yy))
        return self

    def predict_proba(self, x: Any) -> FloatArray:
        """``(n, k)`` class probabilities of rows ``x``."""
        torch = require("torch")
        if self.top is None:
            raise ConfigError("the student has not been fitted: call fit_indices() first")
        rows = np.asarray(x, dtype=np.int64)
        out = np.zeros((len(rows), len(self.labels)))
        if not len(rows):
            return out
        lens = self.features.offsets[rows + 1] - self.features.offsets[rows]
        order = np.argsort(lens)  # similar lengths together: little padding
        with torch.inference_mode():
            for b in range(0, len(rows), 256):
                idx = order[b : b + 256]
                logits = self._logits(rows[idx].tolist())
                out[idx] = torch.softmax(logits.float(), dim=-1).numpy()
        return out

    def save_gate(self, out_dir: str | Path) -> Path:
        """Write an :class:`~datashunt.gates.EmbeddingGate` directory: the head, and under
        ``encoder/`` the fine-tuned sentence-transformers model it encodes with."""
        import shutil

        from ..gates.embedding import EmbeddingGate

        if self.top is None:
            raise ConfigError("the student has not been fitted: nothing to save")
        feats = self.features
        out = Path(out_dir)
        enc = out / "encoder"
        shutil.copytree(feats.backbone, enc, dirs_exist_ok=True)
        model = copy.deepcopy(feats.base)  # the loaded backbone; its tuned layers replaced
        for i, layer in enumerate(self.top["layers"]):
            model.encoder.layer[feats.frozen + i].load_state_dict(layer.state_dict())
        model.save_pretrained(str(enc))
        head = self.top["head"]
        w = head.weight.detach().double().numpy()
        b = head.bias.detach().double().numpy()
        gate = EmbeddingGate(self.labels, w, b, backbone=enc)
        gate.backbone = enc.name  # relative: the encoder moves with the gate (registry copies)
        return gate.save(out)
