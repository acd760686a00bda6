"""Issue 13's evidence: certified δ, conformal label sets and the drift alarm, measured.

Gates: the packaged all-MiniLM-L6-v2 sentence encoder (frozen, inputs cut at 128 tokens) with a
logistic head trained here on 1,000 rows of each data set's train split (the ``embedding`` gate
of ``datashunt train-gate --kind embedding``; the head is fitted on cached embeddings). The
temperature is fitted on each calibration half, as ``datashunt calibrate`` does.

* Certified δ: 200 random calibration/test halves of a pool of 2,000 dev/test rows per data set;
  per split, δ from ``certify_threshold`` (Learn then Test) and from ``choose_threshold`` (the
  uncertified δ); the share of splits whose figure breaks the promise: against the pool (the
  guarantee's own terms), against the test half, and what an exactly valid δ would show against
  an independent test sample of the same size (exact binomial); and the LLM share.
* Conformal sets (LAC, coverage 0.9) on agnews and isear, the same 200 splits: coverage on the
  test half, mean set size, singletons (answered by the gate), candidate-list tokens saved.
* Drift: ``DriftMonitor`` (KS of confidences, Fisher tests of the LLM share and of audits, alpha
  0.05 spent over the tests) alone, with audits, and with ``EmbeddingDrift`` (the gate's input
  representation), over 20 streams that switch (amazon-mds books+dvd -> electronics+kitchen;
  SST-2 -> MR) and 20 that do not.

Run: ``make bench-guarantees`` (``python -m bench.guarantees``). Every distinct text is
embedded once and kept in ``.cache/guarantees/embeddings.npz`` (15,828 texts); each
split's calibrated probabilities are computed once for all its targets and the conformal sets.
Writes ``bench/results/guarantees.json``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import command, sample
from bench.guarantees_report import markdown
from datashunt.data import Dataset, find_data_dir, read_dataset
from datashunt.engine.drift import DriftMonitor
from datashunt.engine.representation import EmbeddingDrift
from datashunt.gates import EmbeddingGate, softmax
from datashunt.gates.embedding import fit_head
from datashunt.training import Budget, MaxAccuracy, PrecisionFloor, choose_threshold
from datashunt.training.fitting.metrics import fit_temperature
from datashunt.training.guarantees.certify import certify_threshold
from datashunt.training.guarantees.conformal import conformal_set, fit_conformal
from datashunt.training.guarantees.thresholds import coverage_table

#: An array of any shape and type (the embeddings, logits and masks passed around here).
Array = np.ndarray[Any, Any]

CACHE = Path(".cache/guarantees")
OUT = Path("bench/results/guarantees.json")
TRAIN_N, POOL_N, MAX_TOKENS = 1000, 2000, 128
# Floors this gate can reach on each data set (a floor it cannot reach sends everything to the
# LLM, certified or not: 0.95 on the sentiment sets did, in most splits).
FLOORS = {"amazon-mds": 0.9, "sst2": 0.9, "agnews": 0.95, "mr": 0.9, "isear": 0.8}
LLM_COLUMN = {"mr": "llm_label", "isear": "gpt35_label"}
_encoder: EmbeddingGate | None = None


def encoder() -> EmbeddingGate:
    global _encoder
    if _encoder is None:
        _encoder = EmbeddingGate(["a", "b"], np.zeros((2, 1)), np.zeros(2))
        _encoder.encoder.max_seq_length = MAX_TOKENS
    return _encoder


_store: dict[str, Array] | None = None
STORE = CACHE / "embeddings.npz"


def _key(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def embed(texts: Sequence[str], tag: str) -> Array:
    """Embeddings of ``texts``: each distinct text is embedded once, ever (a store keyed by the
    text's hash, ``.cache/guarantees/embeddings.npz``), whichever data set or stream asks."""
    global _store
    if _store is None:
        _store = {}
        if STORE.exists():
            with np.load(STORE) as z:
                _store = dict(zip(z["keys"].tolist(), z["vectors"], strict=True))
    keys = [_key(t) for t in texts]
    missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in _store}
    if missing:
        t0 = time.perf_counter()
        x = encoder().embed(list(missing.values())).astype(np.float32)
        _store.update(zip(missing, x, strict=True))
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(STORE, keys=np.array(list(_store)), vectors=np.stack(list(_store.values())))
        took = time.perf_counter() - t0
        print(f"  embedded {len(missing)} new {tag} texts in {took:.0f}s", flush=True)
    return np.stack([_store[k] for k in keys]).astype(np.float64)


def _csv(name: str, split: str) -> Dataset:
    path = find_data_dir() / name / f"{name}.csv"
    return read_dataset(
        str(path), split=split, text_col="text", label_col="label", split_col="split"
    )


def _llm_answers(name: str) -> dict[str, str]:
    path = find_data_dir() / name / f"{name}.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        return {r["text"].strip(): r[LLM_COLUMN[name]] for r in csv.DictReader(fh)}


def _in_sst2() -> set[str]:
    with (find_data_dir() / "mr" / "mr.csv").open(encoding="utf-8", newline="") as fh:
        return {r["text"].strip() for r in csv.DictReader(fh) if r["in_sst2"].strip()}


def _long(e: Any) -> bool:  # SST-2's splits hold phrases too: sentences of 8+ words only
    return len(e.text.split()) >= 8


def load(name: str) -> tuple[Dataset, Dataset]:
    """(head-training rows, pool rows) of a data set."""
    if name in ("mr", "isear"):
        train, dev, test = (_csv(name, s) for s in ("train", "dev", "test"))
        sst = _in_sst2() if name == "mr" else set()
        pool = Dataset(dev.examples + test.examples, train.labels, name)
        keep = (lambda e: e.text not in sst) if name == "mr" else None
        return (
            sample(train, TRAIN_N, 0, keep=keep, in_file_order=True),
            sample(pool, POOL_N, 1, keep=keep, in_file_order=True),
        )
    train = read_dataset(name, split="train")
    pool_split = "dev" if name == "sst2" else "test"
    pool = read_dataset(name, split=pool_split, labels=train.labels)
    keep = _long if name == "sst2" else None
    return (
        sample(train, TRAIN_N, 0, keep=keep, in_file_order=True),
        sample(pool, POOL_N, 1, keep=keep, in_file_order=True),
    )


def logits_of(train: Dataset, pool: Dataset, tag: str) -> Array:
    w, b = fit_head(embed(train.texts, tag + "-train"), np.array(train.y), len(train.labels))
    return np.asarray(embed(pool.texts, tag + "-pool") @ w.T + b)


def _calibrated(logits: Array, y: Array, cal: Array) -> Array:
    return softmax(logits, fit_temperature(logits[cal], y[cal]))


def _split(logits: Array, y: Array, s: int, draw: bool) -> tuple[Array, ...]:
    """Split ``s``: (calibration indices, test indices, calibrated probabilities). ``draw``:
    the calibration sample is n/2 draws with replacement (the guarantee's own terms) and the
    test is the whole pool; else a random half and the other half."""
    n = len(y)
    if draw:
        cal = np.random.default_rng(5000 + s).integers(0, n, n // 2)
        test = np.arange(n)
    else:
        perm = np.random.default_rng(1000 + s).permutation(n)
        cal, test = perm[: n // 2], perm[n // 2 :]
    return cal, test, _calibrated(logits, y, cal)


def _expected_break(target: Any, level: float, conf: Array, ok: Array, d: float, m: int) -> float:
    """P(a fresh iid test sample of ``m`` inputs shows δ breaking the promise), given the
    population (``conf``, ``ok``) at δ: exact, from the binomial laws of its counts."""
    from scipy import stats

    if isinstance(target, Budget):
        share = float((conf < d).mean())
        return float(stats.binom.sf(math.floor(m * target.max_llm_rate + 1e-9), m, share))
    small = conf >= d
    q = float(small.mean())
    if q == 0.0:
        return 0.0
    err = 1.0 - float(ok[small].mean())
    k = np.arange(1, m + 1)  # inputs above δ in the test sample; broken when errors > k(1-P)
    p_k = stats.binom.pmf(k, m, q)
    return float((p_k * stats.binom.sf(np.floor(k * (1.0 - level) + 1e-9), k, err)).sum())


def certified_splits(
    name: str, logits: Array, y: Array, llm_ok: Array | None, splits: int
) -> dict[str, Any]:
    """Per target: the share of splits whose figure breaks the promise, and LLM shares.

    Each split's calibrated probabilities are computed once and shared by every target."""
    targets: dict[str, Any] = {
        f"precision:{FLOORS[name]}": lambda ok: PrecisionFloor(FLOORS[name]),
        "budget:0.3": lambda ok: Budget(0.3),
    }
    if llm_ok is not None:
        targets["accuracy (LLM measured)"] = lambda ok: MaxAccuracy(llm_accuracy=float(ok.mean()))
    keys = ("pop", "expected", "cert", "plain", "all_llm")
    acc: dict[str, dict[str, list[float]]] = {
        t: {k: [] for k in (*keys, "cs", "ps")} for t in targets
    }
    half = len(y) // 2
    for s in range(splits):
        # the guarantee's own terms: the pool is the population, the calibration sample n/2
        # iid draws from it, the promise checked on the whole pool (no test-set noise)
        cal, _, probs = _split(logits, y, s, draw=True)
        conf, ok = probs.max(1), (probs.argmax(1) == y).astype(float)
        for spec, make in targets.items():
            target = make(llm_ok[cal] if llm_ok is not None else None)
            c = certify_threshold(conf[cal], ok[cal], target, 0.95)
            a = acc[spec]
            a["pop"].append(_breaks(target, c.guarantee.level, conf, ok, c.threshold))
            a["expected"].append(
                _expected_break(target, c.guarantee.level, conf, ok, c.threshold, half)
            )
        cal, test, probs = _split(logits, y, s, draw=False)
        conf, ok = probs.max(1), (probs.argmax(1) == y).astype(float)
        for spec, make in targets.items():
            target = make(llm_ok[cal] if llm_ok is not None else None)
            c = certify_threshold(conf[cal], ok[cal], target, 0.95)
            plain, _ = choose_threshold(conf[cal], ok[cal], target)
            a = acc[spec]
            a["all_llm"].append(c.threshold >= 1.0)
            for d, key, share in ((c.threshold, "cert", "cs"), (plain, "plain", "ps")):
                a[share].append(float((conf[test] < d).mean()))
                a[key].append(_breaks(target, c.guarantee.level, conf[test], ok[test], d))
    return {
        spec: {
            "violation_rate_population": float(np.mean(a["pop"])),
            "violation_rate_expected_test_half": float(np.mean(a["expected"])),
            "violation_rate_certified": float(np.mean(a["cert"])),
            "violation_rate_uncertified": float(np.mean(a["plain"])),
            "llm_share_certified": float(np.mean(a["cs"])),
            "llm_share_uncertified": float(np.mean(a["ps"])),
            "splits_all_to_llm": int(np.sum(a["all_llm"])),
        }
        for spec, a in acc.items()
    }


def _breaks(target: Any, level: float, conf: Array, ok: Array, d: float) -> bool:
    """Whether δ breaks the promise on these inputs (the library's coverage table at δ)."""
    row = coverage_table(conf, ok, [d])[0]
    if isinstance(target, Budget):
        return row.llm_rate > target.max_llm_rate
    return row.small_accuracy is not None and row.small_accuracy < level


def conformal_splits(
    labels: Sequence[str], logits: Array, y: Array, splits: int, alpha: float = 0.1
) -> dict[str, Any]:
    tok = functools.lru_cache(maxsize=None)(encoder().count_tokens)
    full = tok(", ".join(labels))
    cover, size, single, single_ok, saved = [], [], [], [], []
    for s in range(splits):
        cal, test, probs = _split(logits, y, s, draw=False)  # the splits of certified_splits
        rule = fit_conformal(probs[cal], y[cal], alpha)
        sets = [conformal_set(dict(zip(labels, probs[i], strict=True)), rule, labels) for i in test]
        hit = np.array([labels[y[i]] in st for i, st in zip(test, sets, strict=True)])
        sizes = np.array([len(st) for st in sets])
        cover.append(hit.mean())
        size.append(sizes.mean())
        single.append((sizes == 1).mean())
        single_ok.append(hit[sizes == 1].mean() if (sizes == 1).any() else np.nan)
        multi = [st for st in sets if len(st) > 1]
        saved.append(float(np.mean([full - tok(", ".join(st)) for st in multi])) if multi else 0.0)
    return {
        "alpha": alpha,
        "coverage_mean": float(np.mean(cover)),
        "coverage_p5_p95": [float(np.percentile(cover, 5)), float(np.percentile(cover, 95))],
        "mean_set_size": float(np.mean(size)),
        "labels": len(labels),
        "singleton_share": float(np.mean(single)),
        "singleton_accuracy": float(np.nanmean(single_ok)),
        "candidate_tokens_full": full,
        "candidate_tokens_saved_per_llm_prompt": float(np.mean(saved)),
    }


DELTA = 0.9  # δ of the drift streams: the LLM share is the share below it; audits sit above
#: The drift monitors measured: (name, window, step, audit rate, representation test).
MONITORS: tuple[tuple[str, int, int, float, bool], ...] = (
    ("confidences, window 200 / step 50 (the earlier default)", 200, 50, 0.0, False),
    ("confidences, window 400 / step 100 (the default)", 400, 100, 0.0, False),
    ("+ audits at rate 0.2", 400, 100, 0.2, False),
    ("+ audits at rate 1.0 (every gate answer)", 400, 100, 1.0, False),
    ("+ audits 0.2 + representation test", 400, 100, 0.2, True),
)


@dataclass(frozen=True)
class Domain:
    """One domain of a drift stream: the gate's logits, the gold labels, the embeddings."""

    logits: Array
    y: Array
    emb: Array


def _alarm_at(
    conf: Array,
    ok: Array,
    emb: Array,
    ref: tuple[Array, Array, Array],
    monitor: tuple[str, int, int, float, bool],
    rng: np.random.Generator,
) -> int | None:
    """Where the first alarm fires on one stream (inputs seen), or None. Audits: the gold
    label stands for the LLM's answer (a perfect LLM); the audit reference is the calibration
    sample's confident inputs. With the representation test, alpha 0.05 is split 0.025 / 0.025
    between it and the monitor (Bonferroni)."""
    _, window, step, rate, rep = monitor
    conf_ref, ok_ref, emb_ref = ref
    big = conf_ref >= DELTA
    mon = DriftMonitor(
        conf_ref,
        threshold=DELTA,
        alpha=0.025 if rep else 0.05,
        window=window,
        step=step,
        warn=False,
        audit_reference=(int((ok_ref[big] == 0).sum()), int(big.sum())),
        audit_alpha=0.5 if rate > 0 else 0.0,
    )
    emb_mon = EmbeddingDrift(emb_ref, alpha=0.025, warn=False) if rep else None
    audit = (conf >= DELTA) & (rng.random(conf.size) < rate)
    for i in range(conf.size):
        alarm = mon.observe(conf[i : i + 1])
        if alarm is None and audit[i]:
            alarm = mon.observe_audits([bool(ok[i])])
        if alarm is None and emb_mon is not None:
            alarm = emb_mon.observe(emb[i : i + 1])
        if alarm is not None:
            return i + 1
    return None


def drift_streams(
    same: Domain, other: Domain | None, *, ref_n: int, pre: int, streams: int = 20
) -> dict[str, Any]:
    """Streams of ``pre`` same-domain inputs then the other domain (or same-domain only), for
    each monitor of :data:`MONITORS`; stream s draws its calibration sample with seed 2000+s."""
    out: dict[str, Any] = {}
    for monitor in MONITORS:
        delays, false_alarms = [], 0
        for s in range(streams):
            rng = np.random.default_rng(2000 + s)
            perm = rng.permutation(len(same.y))
            ref, rest = perm[:ref_n], perm[ref_n:]
            t = fit_temperature(same.logits[ref], same.y[ref])
            p_ref = softmax(same.logits[ref], t)
            ref_stats = (
                p_ref.max(1),
                (p_ref.argmax(1) == same.y[ref]).astype(float),
                same.emb[ref],
            )
            order = [(same, rest[:pre] if other is not None else rest)]
            if other is not None:
                order.append((other, rng.permutation(len(other.y))))
            probs = [softmax(dom.logits[ix], t) for dom, ix in order]
            conf = np.concatenate([p.max(1) for p in probs])
            ok = np.concatenate(
                [p.argmax(1) == dom.y[ix] for p, (dom, ix) in zip(probs, order, strict=True)]
            )
            emb = np.concatenate([dom.emb[ix] for dom, ix in order])
            at = _alarm_at(conf, ok, emb, ref_stats, monitor, np.random.default_rng(3000 + s))
            if at is not None and (other is None or at <= pre):
                false_alarms += 1
            elif at is not None:
                delays.append(at - pre)
        r: dict[str, Any] = {"streams": streams, "false_alarm_rate": false_alarms / streams}
        if other is not None:
            r.update(
                {
                    "switch_after": pre,
                    "detected": len(delays),
                    "detected_within_500": int(sum(d <= 500 for d in delays)),
                    "delay_median": float(np.median(delays)) if delays else None,
                    "delay_max": int(max(delays)) if delays else None,
                }
            )
        else:
            r["stream_length"] = len(same.y) - ref_n
        out[monitor[0]] = r
    return out


def shift_of(same: Domain, other: Domain, ref_n: int) -> dict[str, Any]:
    """What the switch changes for the gate (temperature fitted on the first stream's
    calibration sample): accuracy, mean confidence, the share at or above δ and its accuracy."""
    ref = np.random.default_rng(2000).permutation(len(same.y))[:ref_n]
    t = fit_temperature(same.logits[ref], same.y[ref])
    out = {}
    for key, dom in (("before", same), ("after", other)):
        p = softmax(dom.logits, t)
        conf, ok = p.max(1), p.argmax(1) == dom.y
        out[key] = {
            "gate_accuracy": float(ok.mean()),
            "mean_confidence": float(conf.mean()),
            "small_share_at_delta": float((conf >= DELTA).mean()),
            "small_route_accuracy": float(ok[conf >= DELTA].mean()),
        }
    return out


def drift() -> dict[str, Any]:
    out: dict[str, Any] = {"delta": DELTA}
    # amazon-mds: a gate trained on 800 books+dvd train rows; the streams draw from the
    # dev+test rows (the test rows are the certified-δ pool: one embedding each, shared)
    bd = ("books", "dvd")
    _, pool = load("amazon-mds")
    train = read_dataset("amazon-mds", split="train")
    dev = read_dataset("amazon-mds", split="dev", labels=train.labels)
    head = sample(train, 800, 0, keep=lambda e: e.group in bd, in_file_order=True)
    rows = Dataset(pool.examples + dev.examples, train.labels)
    w, b = fit_head(embed(head.texts, "amazon-mds-train"), np.array(head.y), 2)

    def domain(ex: Sequence[Any], tag: str) -> Domain:
        x = embed([e.text for e in ex], tag)
        return Domain(x @ w.T + b, np.array([rows.labels.index(e.label) for e in ex]), x)

    same = domain([e for e in rows.examples if e.group in bd], "amazon-mds-pool")
    other = domain([e for e in rows.examples if e.group not in bd], "amazon-mds-pool")
    name = "amazon-mds books+dvd -> electronics+kitchen"
    out["gate amazon-mds"] = f"embedding gate on the {len(head.y)} books+dvd train rows"
    out[name] = drift_streams(same, other, ref_n=400, pre=300)
    out["amazon-mds books+dvd, no switch"] = drift_streams(same, None, ref_n=400, pre=0)
    out["shift " + name] = shift_of(same, other, 400)
    # SST-2 -> MR: the SST-2 gate (MR without its sentences that are also in SST-2)
    s_train, s_pool = load("sst2")
    _, m_pool = load("mr")
    w, b = fit_head(embed(s_train.texts, "sst2-train"), np.array(s_train.y), 2)
    x_s, x_m = embed(s_pool.texts, "sst2-pool"), embed(m_pool.texts, "mr-pool")
    same = Domain(x_s @ w.T + b, np.array(s_pool.y), x_s)
    other = Domain(x_m @ w.T + b, np.array(m_pool.y), x_m)
    out["sst2 -> mr"] = drift_streams(same, other, ref_n=1000, pre=500)
    out["sst2, no switch"] = drift_streams(same, None, ref_n=1000, pre=0)
    out["shift sst2 -> mr"] = shift_of(same, other, 1000)
    return out


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.guarantees", description=__doc__)
    p.add_argument("--splits", type=int, default=200)
    p.add_argument("--datasets", default="amazon-mds,sst2,agnews,mr,isear")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "command": command("bench.guarantees", argv),
        "gate": f"all-MiniLM-L6-v2 (frozen, {MAX_TOKENS} tokens) + logistic head on {TRAIN_N} "
        "train rows",
        "confidence": 0.95,
        "splits": args.splits,
        "certified": {},
        "conformal": {},
    }
    for name in args.datasets.split(","):
        print(f"{name} ...", flush=True)
        train, pool = load(name)
        logits = logits_of(train, pool, name)
        y = np.array(pool.y)
        llm_ok = None
        if name in LLM_COLUMN:
            answers = _llm_answers(name)
            llm_ok = np.array([answers.get(e.text, "") == e.label for e in pool.examples], float)
        result["certified"][name] = certified_splits(name, logits, y, llm_ok, args.splits)
        if name in ("agnews", "isear"):
            result["conformal"][name] = conformal_splits(pool.labels, logits, y, args.splits)
        print(_json({name: result["certified"][name]}), flush=True)
    print("drift ...", flush=True)
    result["drift"] = drift()
    result["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.out).write_text(_json(result) + "\n", encoding="utf-8")
    print(_json(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
