"""The benchmark's outputs: markdown tables, the δ-sweep PNG and the JSON report."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import DataShuntError
from .tasks import METHOD_NAMES, METHODS, BenchConfig

__all__ = ["dataset_markdown", "jsonable_config", "markdown_report", "plot_curves", "write_json"]


def jsonable_config(config: BenchConfig) -> dict[str, Any]:
    """The configuration as plain JSON values (the report's ``config``)."""
    d = asdict(config)
    d["gates"] = dict(config.gates)
    return d


def write_json(report: Mapping[str, Any], path: str | Path, *, end: str = "") -> Path:
    """Write ``report`` as indented JSON (values JSON cannot hold written as text).

    Args:
        report: the report.
        path: the file; its folder is created.
        end: appended after the JSON (``"\\n"`` for a file that ends with a newline).
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + end, encoding="utf-8")
    return out


def _pct(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def dataset_markdown(name: str, res: Mapping[str, Any]) -> str:
    """One data set's table, and its per-slice table when the data has slices."""
    lines = [
        f"### {name}: {res['n_test']} test inputs, δ = {res['threshold']:.4f} "
        f"(target {res['target']} on {res['n_dev']} dev)",
        "",
        "| method | accuracy % | LLM calls % | LLM tokens | wall s |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, m in res["methods"].items():
        lines.append(
            f"| {METHOD_NAMES[key]} | {_pct(m['accuracy'])} | {_pct(m['llm_rate'])} | "
            f"{m['tokens']:,} | {m['wall_s']:.1f} |"
        )
    groups = res.get("groups") or {}
    if groups:
        keys = [k for k in METHODS if k in next(iter(groups.values()))]
        lines += [
            "",
            f"Accuracy % per {name} slice (LLM calls % in brackets):",
            "",
            "| slice | n | " + " | ".join(keys) + " |",
            "|---|---:|" + "---:|" * len(keys),
        ]
        for g, row in groups.items():
            cells = []
            for k in keys:
                acc, rate = row[k]["accuracy"], row[k]["llm_rate"]
                cells.append(_pct(acc) + (f" ({_pct(rate)})" if k.startswith("ds") else ""))
            lines.append(f"| {g} | {row['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown_report(report: Mapping[str, Any]) -> str:
    """The report's tables as markdown."""
    parts = [dataset_markdown(n, r) for n, r in report["datasets"].items()]
    return "\n".join(parts)


def plot_curves(report: Mapping[str, Any], path: str | Path) -> Path:
    """Accuracy against LLM-call rate as δ sweeps, one panel per data set, saved as a PNG.

    Reference lines: LLM alone and small model alone; the random and oracle routers; the
    measured methods at the δ chosen on dev as points.
    """
    try:
        import matplotlib
    except ImportError as exc:
        raise DataShuntError(
            "the PNG plot needs matplotlib: pip install 'datashunt[plot]' (or pass --no-plot)"
        ) from exc

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = list(report["datasets"].items())
    fig, axes = plt.subplots(1, len(items), figsize=(5.2 * len(items), 4.8), squeeze=False)
    markers = {"ds-none": "o", "ds-soft": "s", "ds-hard": "^", "ds-plus": "D"}
    for ax, (name, res) in zip(axes[0], items, strict=True):
        c, m = res["curve"], res["methods"]
        rate = [100 * r for r in c["llm_rate"]]
        ax.plot(rate, [100 * a for a in c["ds_none"]], color="C0", label="Data Shunt (δ sweep)")
        ax.plot(rate, [100 * a for a in c["oracle"]], color="C2", ls=":", label="oracle router")
        ax.plot(rate, [100 * a for a in c["random"]], color="C7", ls="--", label="random router")
        ax.axhline(100 * m["llm"]["accuracy"], color="C3", lw=1, label="LLM alone")
        ax.axhline(100 * m["small"]["accuracy"], color="C1", lw=1, label="small model alone")
        for key, mk in markers.items():
            if key in m:
                ax.scatter(
                    100 * m[key]["llm_rate"],
                    100 * m[key]["accuracy"],
                    marker=mk,
                    zorder=5,
                    label=f"{METHOD_NAMES[key]} (δ from dev)",
                )
        ax.set_title(f"{name} (n = {res['n_test']})")
        ax.set_xlabel("LLM calls (% of inputs)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(5, len(names)), fontsize=8)
    fig.suptitle(f"Accuracy against LLM-call rate — LLM: {report.get('model', '?')}")
    fig.tight_layout(rect=(0, 0.12 if len(items) > 1 else 0.2, 1, 1))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
