"""The loop closes itself on MR, with gpt-3.5-turbo's recorded answers as the LLM (issue 14).

A gate fine-tuned on amazon-mds product reviews serves MR movie-review sentences (a shift of
domain and length). Its policy is certified on MR dev: small-route accuracy >= 0.85 with 90 %
confidence (at 0.9 it certifies nothing: every input would go to the LLM). Each round:

1. ~1,000 new MR *train* sentences go through a :class:`~datashunt.Shunt` that follows the
   registry's champion (``audit_rate`` 0.05, a SQLite store attached); the LLM is the recorded
   gpt-3.5-turbo answer for each sentence (``ColumnReplayLLM``).
2. :func:`datashunt.loop.run_round` distils the store's new records into a challenger (2CD),
   certifies it on MR dev, compares it with the champion on MR dev, amazon-mds dev and the
   audits, and promotes it only if its LLM share is lower and no slice loses > 0.5 points.
3. The champion is evaluated on the *test* splits, never on the traffic: its LLM share at its
   certified δ, its small-route accuracy, the shunt's accuracy with gpt-3.5's recorded
   answers on MR test; its accuracy on amazon-mds test (forgetting).

Variants: ``2cd`` (the method), ``stage1`` and ``finetune`` (ablations: stage 1 alone; plain
cross-entropy on the LLM's labels), ``smollm`` (the embedded SmolLM2-135M as teacher, one
round: the gatekeeping must refuse a worse gate).

Run: ``make loop-demo`` (2cd, 3 rounds, ``--demo``: a lighter configuration that fits in
25 minutes on 2 cores from a fresh clone) or ``make bench-loop`` (the evidence: every variant),
or ``.venv/bin/python -m bench.loop --variants 2cd,stage1 --rounds 3``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, command, csv_list, machine, sample
from datashunt import (
    Dataset,
    DistillConfig,
    HFGate,
    Shunt,
    ShuntResult,
    TrainConfig,
    calibrate,
    read_dataset,
    train_gate,
)
from datashunt.data import read_text_column
from datashunt.llm.replay import ColumnReplayLLM
from datashunt.loop import LoopConfig, run_round
from datashunt.loop.evidence import score_at_threshold
from datashunt.registry import GateRegistry
from datashunt.training.guarantees.targets import PrecisionFloor

# ``--demo`` (``make loop-demo``): the same scenario, lighter. A base gate on 1,000 reviews at 64
# tokens (cached under its own name, so the evidence's gate stays), smaller amazon-mds slices,
# 600 MR test sentences, one 2CD pass per round; still three rounds of 1,000 MR sentences.
DEMO = {
    "base_train": 1000,
    "max_length": 64,
    "amazon_dev": 200,
    "amazon_eval": 300,
    "stage2_train": 300,
    "stage2_max": 300,
    "distill_rounds": 1,
    "mr_eval": 600,
    "work": str(ROOT / ".cache" / "loop-demo"),
    "out": str(ROOT / ".cache" / "loop-demo" / "demo.json"),
}


def ensure_base_gate(
    cache: Path, args: argparse.Namespace, train: Dataset, mr_dev: Dataset
) -> Path:
    """The amazon-mds gate, certified on MR dev (cached)."""
    length = "" if args.max_length == 128 else f"-len{args.max_length}"
    gate_dir = cache / f"base-amazon-{args.base_train}{length}"
    t0 = time.perf_counter()
    if (gate_dir / "model.safetensors").is_file():
        print(f"[base] cached at {gate_dir}", flush=True)
    else:
        print(f"[base] fine-tuning MiniLM on {len(train)} amazon-mds reviews ...", flush=True)
        cfg = TrainConfig(epochs=1, max_length=args.max_length, seed=args.seed)
        train_gate(train, gate_dir, config=cfg, progress=not args.quiet)
    gate = HFGate(gate_dir, max_length=args.max_length, temperature=1.0)
    cal = calibrate(gate, mr_dev, PrecisionFloor(args.precision), confidence=args.confidence)
    cal.policy.save(gate_dir)
    print(f"[base] {time.perf_counter() - t0:.0f} s; δ = {cal.policy.threshold:.4f}", flush=True)
    return gate_dir


class ChampionOnTest:
    """The champion on the test splits: MR (LLM share, precision, shunt accuracy with the
    recorded answers) and amazon-mds (forgetting)."""

    def __init__(
        self,
        mr_test: Dataset,
        amazon_test: Dataset,
        answers: dict[str, str],
        max_length: int = 128,
    ) -> None:
        self.mr, self.amazon, self.answers = mr_test, amazon_test, answers
        self.max_length = max_length
        gold = [e.label for e in mr_test.examples]
        llm = [answers.get(e.text, "") for e in mr_test.examples]
        self.llm_alone = float(np.mean([a == g for a, g in zip(llm, gold, strict=True)]))
        # by registry and version: every variant has its own registry, with its own v0002
        self._cache: dict[tuple[str, str], dict[str, float]] = {}

    def __call__(self, registry: GateRegistry, version: str) -> dict[str, float]:
        key = (registry.location, version)
        if key in self._cache:
            return self._cache[key]
        gate, policy = registry.load(version, max_length=self.max_length)
        labels = list(policy.labels)
        p = np.asarray(gate.predict_proba(self.mr.texts))
        pred = [labels[i] for i in p.argmax(axis=1)]
        gold = [e.label for e in self.mr.examples]
        gate_acc, llm_share, small_acc = score_at_threshold(
            p, np.array([labels.index(g) for g in gold]), policy.threshold
        )
        small = p.max(axis=1) >= policy.threshold
        routed = [
            self.answers.get(e.text) or pred[i] if not small[i] else pred[i]
            for i, e in enumerate(self.mr.examples)
        ]
        pa = np.asarray(gate.predict_proba(self.amazon.texts)).argmax(axis=1)
        amazon = [labels[i] == e.label for i, e in zip(pa, self.amazon.examples, strict=True)]
        out = {
            "mr_test_llm_share": llm_share,
            "mr_test_small_accuracy": float("nan") if small_acc is None else small_acc,
            "mr_test_gate_accuracy": gate_acc,
            "mr_test_shunt_accuracy": float(
                np.mean([a == g for a, g in zip(routed, gold, strict=True)])
            ),
            "amazon_test_gate_accuracy": float(np.mean(amazon)),
            "threshold": policy.threshold,
        }
        self._cache[key] = out
        return out


def make_llm(variant: str, answers: dict[str, str]) -> tuple[Any, Any, str]:
    """The teacher: recorded gpt-3.5 answers, or the embedded SmolLM2 (a server to close)."""
    if variant != "smollm":
        return ColumnReplayLLM(answers, model="gpt-3.5-turbo (recorded)"), None, "gpt-3.5-turbo"
    from datashunt.llm.client import OpenAICompatLLM
    from datashunt.llm.server import LLMServer

    server = LLMServer().start()
    return OpenAICompatLLM(server.base_url, server.model_name), server, server.model_name


def run_variant(
    variant: str,
    base: Path,
    data: dict[str, Dataset],
    evaluate: ChampionOnTest,
    answers: dict[str, str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    work = Path(args.work) / variant
    shutil.rmtree(work, ignore_errors=True)
    registry = GateRegistry(work / "registry")
    v0 = registry.add(base, note="fine-tuned on amazon-mds, certified on MR dev")
    registry.promote(v0.version, reason="the serving gate")
    method = "2cd" if variant == "smollm" else variant
    config = LoopConfig(
        target=PrecisionFloor(args.precision),
        confidence=args.confidence,
        tolerance=args.tolerance,
        distill=DistillConfig(
            method=method,  # type: ignore[arg-type]
            rounds=args.distill_rounds,
            epochs=1,
            lr=args.lr,
            max_length=args.distill_length,
            trust_unscored=True,
            stage2_max=args.stage2_max,
            seed=args.seed,
        ),
    )
    llm, server, model = make_llm(variant, answers)
    rounds = 1 if variant == "smollm" else args.rounds
    rows: list[dict[str, Any]] = [
        {"round": 0, "champion": v0.version, "promoted": None, **evaluate(registry, "v0001")}
    ]
    reports = []
    print(f"\n== {variant}: round 0 (base gate) {json.dumps(rows[0])}", flush=True)
    try:
        shunt = Shunt.from_registry(
            registry,
            llm=llm,
            store=work / "calls.sqlite",
            prompt_mode="none",
            audit_rate=args.audit_rate,
            audit_seed=args.seed,
            max_concurrency=2 if server else 8,
            model_name=model,
        )
        follower = shunt.follow(registry, start=False)
        for r in range(1, rounds + 1):
            follower.check()  # serve the champion promoted by the last round
            lo = (r - 1) * args.round_size
            traffic = Dataset(
                data["mr_train"].examples[lo : lo + args.round_size], data["mr_train"].labels
            )
            t0 = time.perf_counter()
            results = [x for x in shunt.run_batch(traffic.texts) if isinstance(x, ShuntResult)]
            serve_s = time.perf_counter() - t0
            gold = [e.label for e in traffic.examples]
            traffic_acc = float(np.mean([x.label == g for x, g in zip(results, gold, strict=True)]))
            traffic_llm = float(np.mean([x.route == "llm" for x in results]))
            rep = run_round(
                registry,
                work / "calls.sqlite",
                calib=data["mr_dev"],
                slices={"mr dev": data["mr_dev"], "amazon-mds dev": data["amazon_dev"]},
                train=data["amazon_train"],
                config=config,
                out_root=work / "rounds",
                progress=not args.quiet,
            )
            reports.append(rep.to_json())
            champ = registry.champion() or v0.version
            row = {
                "round": r,
                "champion": champ,
                "promoted": rep.promoted,
                "traffic_accuracy": traffic_acc,
                "traffic_llm_share": traffic_llm,
                "serve_seconds": serve_s,
                "round_seconds": rep.seconds,
                "refused": list(rep.verdict.refused),
                **evaluate(registry, champ),
            }
            rows.append(row)
            print(rep.to_markdown(), flush=True)
            print(f"== {variant}: round {r} {json.dumps(row)}", flush=True)
    finally:
        if server is not None:
            server.stop()
    return {"rows": rows, "reports": reports}


def table(results: dict[str, Any], llm_alone: float) -> str:
    lines = [
        "| variant | round | champion | promoted | traffic acc. | traffic LLM share | "
        "MR test LLM share | MR test small-route acc. | MR test shunt acc. | "
        "amazon test acc. |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, res in results.items():
        for row in res["rows"]:
            t_acc = f"{row['traffic_accuracy']:.1%}" if "traffic_accuracy" in row else "–"
            t_llm = f"{row['traffic_llm_share']:.1%}" if "traffic_llm_share" in row else "–"
            lines.append(
                f"| {variant} | {row['round']} | {row['champion']} | "
                f"{row['promoted'] or ('–' if row['round'] == 0 else 'refused')} | {t_acc} | "
                f"{t_llm} | {row['mr_test_llm_share']:.1%} | "
                f"{row['mr_test_small_accuracy']:.1%} | {row['mr_test_shunt_accuracy']:.1%} | "
                f"{row['amazon_test_gate_accuracy']:.1%} |"
            )
    lines.append(f"\ngpt-3.5-turbo alone on MR test (recorded): {llm_alone:.1%}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.loop", description=__doc__)
    p.add_argument("--variants", default="2cd", help="comma-separated: 2cd,stage1,finetune,smollm")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--round-size", type=int, default=1000, help="new MR sentences per round")
    p.add_argument("--base-train", type=int, default=2000, help="amazon-mds reviews for the base")
    p.add_argument("--precision", type=float, default=0.85, help="small-route accuracy floor")
    p.add_argument("--confidence", type=float, default=0.9, help="of the certified δ")
    p.add_argument("--tolerance", type=float, default=0.005, help="largest slice loss allowed")
    p.add_argument("--audit-rate", type=float, default=0.05)
    p.add_argument("--lr", type=float, default=5e-5, help="2CD learning rate")
    p.add_argument(
        "--distill-length", type=int, default=64, help="tokens per input in 2CD and its scoring"
    )
    p.add_argument("--amazon-eval", type=int, default=500, help="amazon-mds test reviews")
    p.add_argument("--stage2-max", type=int, default=500, help="stage-2 inputs per 2CD round")
    p.add_argument("--amazon-dev", type=int, default=400, help="amazon-mds dev reviews (a slice)")
    p.add_argument(
        "--stage2-train", type=int, default=500, help="base training reviews for stage 2"
    )
    p.add_argument("--max-length", type=int, default=128, help="tokens per input for the base gate")
    p.add_argument("--distill-rounds", type=int, default=2, help="2CD passes per loop round")
    p.add_argument("--mr-eval", type=int, default=0, help="MR test sentences (0: all 1,299)")
    p.add_argument(
        "--demo",
        action="store_true",
        help="lighter defaults for `make loop-demo` (options given explicitly still win): "
        + ", ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in DEMO.items() if k not in ("work", "out")
        )
        + ", --work .cache/loop-demo, --out .cache/loop-demo/demo.json",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=str(ROOT / ".cache" / "loop"))
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "loop.json"))
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.demo:  # the preset replaces the defaults only
        p.set_defaults(**DEMO)
        args = p.parse_args(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    mr = {s: read_dataset("mr", split=s) for s in ("train", "dev", "test")}
    amazon_train = sample(read_dataset("amazon-mds", split="train"), args.base_train, args.seed)
    answers = read_text_column("mr", "llm_label")  # sentence -> gpt-3.5's label ("" = none)
    data = {
        # the file lists each split by label: the traffic must come in random order
        "mr_train": sample(mr["train"], len(mr["train"]), args.seed),
        "mr_dev": mr["dev"],
        "amazon_dev": sample(read_dataset("amazon-mds", split="dev"), args.amazon_dev, args.seed),
        # stage 2's share of the original domain (the base gate's own training sample)
        "amazon_train": sample(amazon_train, args.stage2_train, args.seed),
    }
    amazon_test = sample(read_dataset("amazon-mds", split="test"), args.amazon_eval, args.seed)
    mr_test = sample(mr["test"], args.mr_eval, args.seed) if args.mr_eval else mr["test"]
    base = ensure_base_gate(Path(args.work), args, amazon_train, mr["dev"])
    evaluate = ChampionOnTest(mr_test, amazon_test, answers, max_length=args.max_length)
    results = {}
    for variant in csv_list(args.variants):
        results[variant] = run_variant(variant, base, data, evaluate, answers, args)
    summary = table(results, evaluate.llm_alone)
    print("\n" + summary)
    out = {
        "command": command("bench.loop", argv),
        "seconds": time.perf_counter() - t0,
        "machine": machine(),
        "config": vars(args),
        "llm_alone_mr_test": evaluate.llm_alone,
        "variants": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str) + "\n")
    Path(args.out).with_suffix(".md").write_text(summary + "\n")
    print(f"\nwrote {args.out} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
