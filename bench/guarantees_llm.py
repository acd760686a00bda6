"""Conformal label sets against today's ε hard pruning, with the local LLM, on agnews.

The agnews gate of ``bench.guarantees`` (MiniLM + logistic head on 1,000 train rows), its
temperature and both pruning rules fitted on 1,000 pool rows; ``--n`` other pool rows are
answered by two shunts under ``prompt_mode="hard"``: one with ε pruning (the policy's default
``prune_epsilon``), one with LAC conformal sets (1-α, default 0.98) at ``--delta``; the ε
shunt's δ is the one that gives the conformal shunt's LLM share on these rows (a singleton set
is answered by the gate; at 0.98 every input below δ = 0.9 has a set of two or more, so both
shunts route the same inputs and differ only in the labels offered). The LLM
is the embedded SmolLM2-135M server; answers are cached by prompt in
``.cache/guarantees/llm.sqlite``. Writes ``bench/results/guarantees_llm.json``.

Run: ``nice -n 19 python -m bench.guarantees_llm`` (600 rows, α 0.02 and 0.05).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import command
from bench.guarantees import CACHE, Array, load, logits_of
from datashunt import Shunt, ShuntPolicy, ShuntResult
from datashunt.gates import softmax
from datashunt.llm import CachedLLM, LLMCache, LLMServer, OpenAICompatLLM
from datashunt.prompts import conformal_candidates
from datashunt.training.fitting.metrics import class_recall, fit_temperature
from datashunt.training.guarantees.calibration import LogitsGate
from datashunt.training.guarantees.conformal import fit_conformal

OUT = Path("bench/results/guarantees_llm.json")


def _llm_share(probs: Array, d: float, qhat: float | None) -> float:
    """The share of inputs a shunt at δ = ``d`` sends to the LLM; with a conformal rule
    (``qhat``), an input whose set (the library's :func:`conformal_candidates`) is a single
    label is answered by the gate."""
    routed = probs.max(1) < d
    if qhat is not None:
        labels = tuple(str(i) for i in range(probs.shape[1]))
        sizes = [
            len(conformal_candidates(dict(zip(labels, map(float, row), strict=True)), labels, qhat))
            for row in probs
        ]
        routed &= np.asarray(sizes) > 1
    return float(routed.mean())


def compare(
    alpha: float,
    delta: float,
    logits: np.ndarray,
    y: np.ndarray,
    labels: tuple[str, ...],
    texts: Sequence[str],
    cal: np.ndarray,
    test: np.ndarray,
    llm: Any,
) -> dict[str, Any]:
    """Both shunts at one α (see the module docstring), on the ``test`` rows."""
    t = fit_temperature(logits[cal], y[cal])
    probs = softmax(logits, t)
    rule = fit_conformal(probs[cal], y[cal], alpha)
    qhat = float(rule.to_json()["qhat"])
    base: dict[str, Any] = {
        "labels": labels,
        "temperature": t,
        "class_recall": class_recall(probs[cal], y[cal], labels),
    }
    conformal = ShuntPolicy(threshold=delta, conformal=rule.to_json(), **base)
    share = _llm_share(probs[test], delta, qhat)
    # the ε shunt's δ with the same LLM share on these rows (the smallest δ reaching it)
    grid = np.unique(np.r_[probs[test].max(1), 1.0])
    d_eps = float(next(d for d in grid if _llm_share(probs[test], d, None) >= share))
    eps = ShuntPolicy(threshold=min(d_eps, delta), **base)
    gate = LogitsGate(labels, {texts[i]: logits[i] for i in test})
    gate.temperature = t
    batch = [texts[i] for i in test]
    gold = [labels[y[i]] for i in test]
    out: dict[str, Any] = {"alpha": alpha, "prune_epsilon": eps.prune_epsilon}
    right_of: dict[str, dict[int, bool]] = {}
    for name, policy in (("epsilon", eps), ("conformal", conformal)):
        res = [r for r in Shunt(gate, policy, prompt_mode="hard", llm=llm).run_batch(batch)]
        ok = [isinstance(r, ShuntResult) for r in res]
        if not all(ok):
            raise RuntimeError(f"{ok.count(False)} inputs failed")
        done = [r for r in res if isinstance(r, ShuntResult)]
        routed = [i for i, r in enumerate(done) if r.route == "llm"]
        right_of[name] = {i: done[i].label == gold[i] for i in routed}
        out[name] = {
            "delta": policy.threshold,
            "llm_share": len(routed) / len(done),
            "routed": len(routed),
            "routed_correct": int(sum(right_of[name].values())),
            "routed_accuracy": float(np.mean(list(right_of[name].values()))) if routed else None,
            "routed_true_label_offered": float(
                np.mean([gold[i] in done[i].decision.candidates for i in routed])
            )
            if routed
            else None,
            "labels_offered_mean": float(
                np.mean([len(done[i].decision.candidates) for i in routed])
            )
            if routed
            else None,
            "overall_accuracy": float(
                np.mean([r.label == g for r, g in zip(done, gold, strict=True)])
            ),
        }
        print(alpha, name, json.dumps(out[name]), flush=True)
    both = set(right_of["epsilon"]) & set(right_of["conformal"])
    out["routed_by_both"] = len(both)
    out["only_epsilon_right"] = sum(
        right_of["epsilon"][i] and not right_of["conformal"][i] for i in both
    )
    out["only_conformal_right"] = sum(
        right_of["conformal"][i] and not right_of["epsilon"][i] for i in both
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.guarantees_llm", description=__doc__)
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--delta", type=float, default=0.9)
    p.add_argument("--alpha", default="0.02,0.05", help="conformal α values, comma-separated")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    train, pool = load("agnews")
    logits = logits_of(train, pool, "agnews")
    y = np.array(pool.y)
    perm = np.random.default_rng(7).permutation(len(y))
    cal, test = perm[:1000], perm[1000 : 1000 + args.n]
    out: dict[str, Any] = {
        "command": command("bench.guarantees_llm", argv),
        "n": args.n,
        "delta": args.delta,
        "runs": [],
    }
    with LLMServer(n_threads=2) as server:
        cache = LLMCache(str(CACHE / "llm.sqlite"))
        llm = CachedLLM(
            OpenAICompatLLM(server.base_url, server.model_name, timeout=120, top_logprobs=0),
            cache,
            server.model_name,
        )
        out["llm"] = server.model_name
        for alpha in (float(a) for a in args.alpha.split(",")):
            out["runs"].append(
                compare(
                    alpha, args.delta, logits, y, tuple(pool.labels), pool.texts, cal, test, llm
                )
            )
    out["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
