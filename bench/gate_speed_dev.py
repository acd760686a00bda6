"""Accuracy of each gate variant against torch fp32 on larger dev sets (issue 26).

``make bench-gate`` scores every variant on 400 test inputs per set, where one answer is 0.25
point: a goal of at most 0.5 point lost is two answers. This check adds the dev splits
(``--n-short`` random SST-2 dev sentences, every amazon-mds dev review by default), none of
which chose the int8 recipe, and prints per variant and set: answers changed against torch
fp32, and points lost (negative where the variant scored higher).

``python -m bench.gate_speed_dev --gate .cache/gates/bench-gate-speed-1000``
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.gate_speed import CPU_VARIANTS, _sample, open_gate

RESULTS = Path(__file__).parent / "results" / "gate_dev.json"


def compare(logits: dict[str, np.ndarray], gold: np.ndarray, ref: str) -> dict[str, Any]:
    """Per variant: answers changed against ``ref`` and points of accuracy lost to it."""
    ref_pred = logits[ref].argmax(1)
    ref_acc = float((ref_pred == gold).mean())
    out: dict[str, Any] = {"n": len(gold), ref: {"accuracy": round(ref_acc, 4)}}
    for name, value in logits.items():
        if name == ref:
            continue
        pred = value.argmax(1)
        out[name] = {
            "accuracy": round(float((pred == gold).mean()), 4),
            "changed": int((pred != ref_pred).sum()),
            "points_lost": round(100 * (ref_acc - float((pred == gold).mean())), 2),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Score every CPU variant on the dev sets; print and write ``gate_dev.json``."""
    import torch

    parser = argparse.ArgumentParser(prog="python -m bench.gate_speed_dev")
    parser.add_argument("--gate", required=True, help="the HF gate directory")
    parser.add_argument("--n-short", type=int, default=1000, help="SST-2 dev sentences (1000)")
    parser.add_argument("--n-long", type=int, default=1000, help="amazon-mds dev reviews (all)")
    parser.add_argument("--short-data", default="sst2", help="short inputs (sst2; its dev split)")
    parser.add_argument("--long-data", default="amazon-mds", help="long inputs (its dev split)")
    parser.add_argument("--threads", type=int, default=2, help="threads (2)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON ({RESULTS})")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    gate_dir = Path(args.gate)
    variants = [(b, p, "cpu") for b, p in CPU_VARIANTS]
    labels = tuple(open_gate(gate_dir, variants[0]).labels)
    report: dict[str, Any] = {"gate": str(gate_dir)}
    sets = {"short": (args.short_data, args.n_short), "long": (args.long_data, args.n_long)}
    for length, (data, n) in sets.items():
        texts, gold = _sample(data, "dev", n, labels, seed=1)
        logits = {
            f"{b}/{p}": open_gate(gate_dir, (b, p, d), args.threads).predict_logits(texts)
            for b, p, d in variants
        }
        report[length] = {"data": f"{data} dev", **compare(logits, gold, "torch/fp32")}
        for name, row in report[length].items():
            if isinstance(row, dict):
                print(f"{length} ({data} dev, {len(gold)}): {name} {row}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
