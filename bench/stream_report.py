"""The stream benchmark's table (``stream.md``) and figure (``stream.png``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

POLICIES = ("datashunt", "margin", "ocl", "llm")


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.1f}"


def table(runs: Sequence[Mapping[str, Any]]) -> str:
    """One row per data set, teacher and policy (means over orders)."""
    head = (
        "| data | teacher | policy | accuracy % | LLM share % | last 2,000 share % | "
        "LLM + fallback % | fidelity target | violation rate | repetitions | orders | wall s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in runs:
        viol = r.get("fidelity_violation_rate")
        rows.append(
            f"| {r['data']} | {r['teacher']} | {r['policy']} | {_pct(r['accuracy'])} | "
            f"{_pct(r['llm_share'])} | {_pct(r.get('last2000_share'))} | "
            f"{_pct(r.get('accuracy_with_fallback'))} | {r.get('fidelity_target') or '–'} | "
            f"{'–' if viol is None else f'{viol:.3f}'} | {r['repetitions']} | {r['orders']} | "
            f"{r['wall_s']} |"
        )
    return head + "\n".join(rows) + "\n"


def plot(details: Mapping[str, Any], path: Path) -> None:
    """Cumulative accuracy (top) and per-window LLM share (bottom) along each stream, mean over
    orders, per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(details)
    fig, axes = plt.subplots(2, len(names), figsize=(5 * len(names), 7), squeeze=False)
    for j, name in enumerate(names):
        per = details[name]["per_order"]
        for p in POLICIES:
            rows = per.get(p, [])
            if not rows:
                continue
            ends = [w["end"] for w in rows[0]["windows"]]
            share = np.mean([[w["llm_share"] for w in r["windows"]] for r in rows], axis=0)
            if "cumulative_accuracy" in rows[0]["windows"][0]:
                acc = np.mean(
                    [[w["cumulative_accuracy"] for w in r["windows"]] for r in rows], axis=0
                )
                axes[0][j].plot(ends, 100 * acc, label=p, marker=".")
            axes[1][j].plot(ends, 100 * share, label=p, marker=".")
        axes[0][j].set_title(name)
        axes[0][j].set_ylabel("cumulative accuracy %")
        axes[1][j].set_ylabel(
            f"LLM share % (windows of {ends[1] - ends[0] if len(ends) > 1 else ''})"
        )
        axes[1][j].set_xlabel("inputs seen")
        for ax in axes[:, j]:
            if ax.get_lines():
                ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _students(runs: Sequence[Mapping[str, Any]]) -> str:
    names = sorted({str(r.get("student", "embedding")) for r in runs})
    return ", ".join(
        "MiniLM's top layers fine-tuned" if n == "tuned" else "frozen-MiniLM head" for n in names
    )


def write_report(
    runs: Sequence[Mapping[str, Any]],
    details: Mapping[str, Any],
    md: Path,
    png: Path,
    total_s: float,
) -> None:
    """Write the table (with how it was measured) and the figure."""
    text = (
        "# Stream benchmark: no labels to start (issue 25)\n\n"
        "`make bench-stream` (`python -m bench.stream`): each stream starts from nothing; no "
        f"policy reads a gold label. Student: {_students(runs)}. "
        "Means over random orders. `llm`'s accuracy counts its "
        "unreadable answers wrong; `LLM + fallback` replaces them by the student's label. "
        "`margin` and `ocl` run at datashunt's total calls (threshold bisected). "
        "`offline-gold`: the same student trained on gold (cross-fitted, folds = its repetitions), "
        "routed at datashunt's "
        "share. Violation rate: over orders x held-out splits (repetitions = the certified "
        "gates), a gate certified on a shadow phase's held-out answers whose agreement with the "
        "LLM on the rest of the stream's inputs it keeps fell below the target.\n\n"
        + table(runs)
        + f"\nTotal wall time {total_s:.0f} s.\n\n![stream]({png.name})\n"
    )
    md.write_text(text, encoding="utf-8")
    plot(details, png)


def merge(out: Path, parts: Sequence[Path]) -> None:
    """One ``stream.{json,md,png}`` from runs made separately (``--data`` one stream each, e.g.
    in parallel): their runs and curves side by side, the wall time their sum."""
    runs: list[Any] = []
    details: dict[str, Any] = {}
    total = 0.0
    for part in parts:
        runs += json.loads(part.read_text(encoding="utf-8"))["runs"]
        extra = json.loads(part.with_name(part.stem + "_windows.json").read_text("utf-8"))
        details.update(extra["details"])
        total += float(extra["total_wall_s"])
    out.write_text(json.dumps({"runs": runs}, indent=2) + "\n", encoding="utf-8")
    windows = {"total_wall_s": round(total, 1), "merged_from": [str(p) for p in parts]}
    text = json.dumps({**windows, "details": details}, indent=1) + "\n"
    out.with_name(out.stem + "_windows.json").write_text(text, encoding="utf-8")
    write_report(runs, details, out.with_suffix(".md"), out.with_suffix(".png"), total)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.stream_report OUT PART.json ...``: :func:`merge`."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.stream_report",
        description="Merge the per-stream parts of bench.stream into one results file.",
    )
    parser.add_argument("out", type=Path, help="the merged stream.json to write")
    parser.add_argument("parts", type=Path, nargs="+", help="the parts' stream.json files")
    args = parser.parse_args(argv)
    merge(args.out, list(args.parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
