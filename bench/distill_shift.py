"""Shift experiment for 2CD: a gate trained on two amazon-mds categories meets all four.

1. Fine-tune a gate on books + dvd (a sample of the train split, 1 epoch) and calibrate it on
   books + dvd dev data (cached under .cache/distill_shift/ so reruns skip it).
2. Run the shunt with the real embedded LLM (SmolLM2-135M) on a fixed sample from all four
   categories (train split, disjoint from the gate's training sample); the store fills with
   its answers (cached too).
3. Distil the store into the gate with 2CD and the two ablations, re-calibrate each, and report
   accuracy and LLM-call rate per category on a test-split sample, before and after.
4. A control: the same store with each LLM answer replaced by the gold label (same C_l, so the
   same inputs pass δ_l), to tell the method's effect from the teacher's quality.

Run: ``make distill-shift`` or ``.venv/bin/python -m bench.distill_shift [--fresh]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, command, machine
from datashunt import (
    CallStore,
    Dataset,
    DistillConfig,
    Distiller,
    HFGate,
    Shunt,
    ShuntPolicy,
    TrainConfig,
    calibrate,
    read_dataset,
    train_gate,
)
from datashunt.training import parse_target

OLD = ("books", "dvd")
ALL = ("books", "dvd", "electronics", "kitchen_&_housewares")


def sample(
    data: Dataset, groups: Sequence[str], per_group: int, seed: int, skip: set[str]
) -> Dataset:
    """``per_group`` random examples of each group (none whose text is in ``skip``)."""
    rng = np.random.default_rng(seed)
    out = []
    for g in groups:
        pool = [e for e in data.examples if e.group == g and e.text not in skip]
        idx = rng.choice(len(pool), size=min(per_group, len(pool)), replace=False)
        out += [pool[i] for i in sorted(idx)]
    return Dataset(tuple(out), data.labels, data.name)


def ensure_gate(cache: Path, train: Dataset, dev: Dataset, args: argparse.Namespace) -> Path:
    gate_dir = cache / "gate-books-dvd"
    if (gate_dir / "model.safetensors").is_file() and (
        gate_dir / "datashunt_policy.json"
    ).is_file():
        print(f"[gate] cached at {gate_dir}")
        return gate_dir
    print(f"[gate] fine-tuning on {len(train)} books+dvd reviews (1 epoch) ...", flush=True)
    cfg = TrainConfig(epochs=1, max_length=args.max_length, lr=args.gate_lr, seed=args.seed)
    rep = train_gate(train, gate_dir, config=cfg)
    gate = HFGate(gate_dir, max_length=args.max_length)
    cal = calibrate(gate, dev, parse_target(args.target))
    cal.policy.save(gate_dir)
    print(f"[gate] trained in {rep.seconds:.0f}s\n{cal.format()}", flush=True)
    return gate_dir


def ensure_store(
    cache: Path, gate_dir: Path, logged: Dataset, args: argparse.Namespace
) -> dict[str, Any]:
    from datashunt.llm.client import OpenAICompatLLM
    from datashunt.llm.server import LLMServer

    path = cache / "calls.sqlite"
    info_path = cache / "store_info.json"
    if path.is_file() and info_path.is_file():
        print(f"[store] cached at {path}")
        info: dict[str, Any] = json.loads(info_path.read_text())
        return info
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    gate = HFGate(gate_dir, max_length=args.max_length)
    print(
        f"[store] shunting {len(logged)} reviews; the uncertain ones go to SmolLM2 ...", flush=True
    )
    t0 = time.perf_counter()
    with LLMServer() as server:
        llm = OpenAICompatLLM(server.base_url, server.model_name)
        shunt = Shunt(
            gate,
            ShuntPolicy.load(gate_dir),
            llm=llm,
            prompt_mode="none",
            store=path,
            max_concurrency=2,
            model_name=server.model_name,
        )
        results = shunt.run_batch(logged.texts, return_exceptions=True)
    seconds = time.perf_counter() - t0
    calls = sum(1 for r in results if not isinstance(r, Exception) and r.route == "llm")
    info = {"seconds": seconds, "llm_calls": calls, "inputs": len(logged)}
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    print(f"[store] {calls} LLM calls in {seconds:.0f}s", flush=True)
    return info


def llm_quality(store_path: Path, gold: dict[str, tuple[str, str | None]]) -> dict[str, Any]:
    """The teacher's accuracy against gold labels: overall, per category, and above each δ_l."""
    recs = [r for r in CallStore(store_path).iter(route="llm") if r.input_text in gold]
    answered = [r for r in recs if r.error is None and r.parse_ok]
    out: dict[str, Any] = {
        "llm_calls": len(recs),
        "errors": sum(r.error is not None for r in recs),
        "unparsed": sum(r.error is None and not r.parse_ok for r in recs),
        "no_confidence": sum(r.llm_confidence is None for r in answered),
        "answer_share": dict(Counter(r.parsed_label for r in answered)),
    }

    def acc(rs: list[Any]) -> dict[str, Any]:
        ok = [r.parsed_label == gold[r.input_text or ""][0] for r in rs]
        return {"n": len(ok), "accuracy": float(np.mean(ok)) if ok else None}

    out["overall"] = acc(answered)
    out["by_category"] = {
        g: acc([r for r in answered if gold[r.input_text or ""][1] == g]) for g in ALL
    }
    out["above_llm_min_confidence"] = {
        f"{t:.2f}": acc([r for r in answered if (r.llm_confidence or 0.0) > t])
        for t in (0.0, 0.5, 0.6, 0.7, 0.8, 0.9)
    }
    return out


def gold_store(src: Path, dst: Path, gold: dict[str, tuple[str, str | None]]) -> Path:
    """A copy of the store whose LLM answers are the gold labels, with the same ``C_l``."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{dst}{suffix}").unlink(missing_ok=True)
    recs = []
    for r in CallStore(src).iter():
        if r.route == "llm" and r.parse_ok and r.llm_confidence is not None:
            label = gold[r.input_text or ""][0]
            other = "negative" if label == "positive" else "positive"
            c = r.llm_confidence
            r = replace(r, parsed_label=label, llm_probs={label: c, other: 1 - c})
        recs.append(r)
    CallStore(dst).add_many(recs)
    return dst


def summary(runs: list[dict[str, Any]]) -> str:
    names = ["eval"] + [f"eval/{g}" for g in ALL] + ["dev", "logged LLM answers"]
    head = f"{'slice':<26}{'':>14}" + "".join(f"{r['name']:>22}" for r in runs)
    sub = f"{'':<26}{'before':>14}" + "".join(f"{'after':>22}" for _ in runs)
    lines = [head, sub]
    for n in names:
        rows = [next((s for s in r["report"]["slices"] if s["name"] == n), None) for r in runs]
        if rows[0] is None:
            continue
        b = rows[0]
        cell = f"{b['accuracy_before']:.3f} / {b['llm_rate_before']:.2f}"
        after = "".join(
            f"{s['accuracy_after']:.3f} / {s['llm_rate_after']:.2f}".rjust(22) for s in rows if s
        )
        lines.append(f"{n:<26}{cell:>14}{after}")
    lines.append(
        "cells: gate accuracy / LLM-call rate at the policy's δ (logged: agreement with the LLM)"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.distill_shift",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cache", type=Path, default=ROOT / ".cache" / "distill_shift")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "distill_shift.json")
    p.add_argument("--fresh", action="store_true", help="retrain the gate and refill the store")
    p.add_argument("--gate-train", type=int, default=320, help="training reviews per category")
    p.add_argument("--gate-lr", type=float, default=8e-5)
    p.add_argument("--log-per-category", type=int, default=100)
    p.add_argument("--test-per-category", type=int, default=100)
    p.add_argument("--dev-per-category", type=int, default=100)
    p.add_argument("--stage2-train", type=int, default=200, help="training reviews for stage 2")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--target", default="precision:0.9")
    p.add_argument(
        "--runs",
        default="2cd:0.7,2cd:0,stage1:0.7,finetune:0,gold-2cd:0.7,gold-2cd:0",
        help="[gold-]METHOD:δ_l; finetune with δ_l 0 is plain fine-tuning on all parsed "
        "answers; gold- uses the gold-label control store",
    )
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--stage2-max", type=int, default=64)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads: on a shared 2-core machine one thread is 3x faster than two",
    )
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    if args.fresh and args.cache.exists():
        shutil.rmtree(args.cache)
    args.cache.mkdir(parents=True, exist_ok=True)
    train_all = read_dataset("amazon-mds", split="train")
    gate_train = sample(train_all, OLD, args.gate_train, args.seed, set())
    skip = set(gate_train.texts)
    logged = sample(train_all, ALL, args.log_per_category, args.seed + 1, skip)
    dev = sample(
        read_dataset("amazon-mds", split="dev"), OLD, args.dev_per_category, args.seed, set()
    )
    test = sample(
        read_dataset("amazon-mds", split="test"), ALL, args.test_per_category, args.seed, set()
    )
    stage2 = Dataset(
        gate_train.examples[:: max(1, len(gate_train) // args.stage2_train)], gate_train.labels
    )

    t0 = time.perf_counter()
    gate_dir = ensure_gate(args.cache, gate_train, dev, args)
    t_gate = time.perf_counter() - t0
    store_info = ensure_store(args.cache, gate_dir, logged, args)
    gold = {e.text: (e.label, e.group) for e in logged.examples}
    teacher = llm_quality(args.cache / "calls.sqlite", gold)
    print(f"[llm] {json.dumps(teacher)}", flush=True)

    t0 = time.perf_counter()
    distillers: dict[bool, Distiller] = {}
    runs = []
    for spec in args.runs.split(","):
        kind, _, llm_min = spec.partition(":")
        control = kind.startswith("gold-")
        method = kind.removeprefix("gold-")
        if control not in distillers:
            store = args.cache / "calls.sqlite"
            if control:
                store = gold_store(store, args.cache / "calls-gold.sqlite", gold)
            distillers[control] = Distiller(gate_dir, store, dev=dev, train=stage2, eval_data=test)
        cfg = DistillConfig(
            method=method,
            llm_min_confidence=float(llm_min or 0.7),
            rounds=args.rounds,
            epochs=args.epochs,
            lr=args.lr,
            max_length=args.max_length,
            stage2_max=args.stage2_max,
            seed=args.seed,
        )
        name = f"{kind}(δ_l={cfg.llm_min_confidence:g})"
        print(f"\n[distill] {name}", flush=True)
        out = args.cache / f"gate-{kind}-{cfg.llm_min_confidence:g}"
        report = distillers[control].run(out, cfg)
        print(report.format(), flush=True)
        runs.append({"name": name, "report": report.to_dict()})
    t_distill = time.perf_counter() - t0
    table = summary(runs)
    print("\n" + table)
    result = {
        "command": "make distill-shift  # " + command("bench.distill_shift", argv),
        "machine": machine(torch_threads=args.threads),
        "data": {
            "gate_train": dict(Counter(e.group for e in gate_train.examples)),
            "logged": dict(Counter(e.group for e in logged.examples)),
            "test": dict(Counter(e.group for e in test.examples)),
            "dev (books+dvd)": len(dev),
            "stage2_train_pool": len(stage2),
        },
        "args": {k: str(v) for k, v in vars(args).items()},
        "store": store_info,
        "teacher": teacher,
        "runs": runs,
        "table": table,
        "seconds": {
            "gate (0 if cached)": t_gate,
            "distill (all runs)": t_distill,
            "total": time.perf_counter() - t_start,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {args.out} in {time.perf_counter() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
