"""Gate outputs on the dev and test splits of ``mr`` and ``isear``, computed once for
``bench/deferral.py`` and cached as ``.npz`` (issue 18: the learned deferral score).

Per gate and split: the log-probabilities at temperature 1 (``logp_<split>``; a softmax of them
at any temperature equals the gate's, so temperatures are fitted later on dev) and the gate's
input representation from the same forward pass (``feats_<split>``: the mean-pooled last hidden
state of a fine-tuned gate, the sentence embedding of an embedding gate). Never the train split:
the gates were trained on it, so their train probabilities say nothing about where they fail.

    .venv/bin/python -m bench.deferral_cache            # every gate not cached yet
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import csv_list

#: data set -> short gate name -> gate folder (the gates of ``bench/results/recorded*.md``).
GATES: Mapping[str, Mapping[str, str]] = {
    "isear": {
        "ft": ".cache/gates/recorded-isear-finetune-e1-l96-lr8e-05",
        "emb": ".cache/gates/recorded-isear-embedding",
    },
    "mr": {
        "ft1": ".cache/gates/recorded-mr-finetune-e1-l64-lr8e-05",
        "ft2": ".cache/gates/recorded-mr-finetune-e2-l64-lr5e-05",
        "emb": ".cache/gates/recorded-mr-embedding",
    },
}
SPLITS = ("dev", "test")


def texts_digest(texts: list[str]) -> str:
    """A short hash of the texts, so a cache made from other rows is never read."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    return h.hexdigest()[:16]


def cache_path(cache_dir: Path, name: str, gate: str) -> Path:
    """The ``.npz`` of one gate's outputs on one data set."""
    return cache_dir / f"{name}-{gate}.npz"


def compute(name: str, gate_name: str, gate_dir: str, out: Path) -> None:
    from datashunt import load_gate
    from datashunt.data import read_dataset

    t0 = time.perf_counter()
    gate = load_gate(gate_dir)  # as the bench loads it (HFGate: its default max length)
    gate.temperature = 1.0
    arrays: dict[str, Any] = {}
    for split in SPLITS:
        data = read_dataset(name, split=split, labels=gate.labels)
        probs, feats = gate.predict_proba_and_features(data.texts)
        arrays[f"logp_{split}"] = np.log(np.clip(probs, 1e-300, 1.0))
        if feats is not None:
            arrays[f"feats_{split}"] = feats.astype(np.float32)
        arrays[f"digest_{split}"] = np.array(texts_digest(list(data.texts)))
    arrays["labels"] = np.array(list(gate.labels))
    arrays["gate_dir"] = np.array(gate_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    print(f"[{name}/{gate_name}] {gate_dir} -> {out} ({time.perf_counter() - t0:.0f} s)")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.deferral_cache", description=__doc__)
    ap.add_argument("--data", default="isear,mr")
    ap.add_argument("--cache-dir", default=".cache/r18/probs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--force", action="store_true", help="recompute what is cached")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    for name in csv_list(args.data):
        for g, d in GATES[name].items():
            out = cache_path(Path(args.cache_dir), name, g)
            if out.is_file() and not args.force:
                print(f"[{name}/{g}] cached: {out}")
                continue
            compute(name, g, d, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
