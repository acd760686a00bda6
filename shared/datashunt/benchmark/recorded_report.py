"""The recorded-answers benchmark's markdown: one data set's table and per-class table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .recorded_data import NOT_REPLAYABLE

__all__ = ["recorded_markdown"]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _gate_line(gate: Mapping[str, Any]) -> list[str]:
    """Where several gates were given: the mixture chosen on dev, against the first alone."""
    mix = gate.get("mixture")
    if not mix:
        return []
    parts = [f"{w:g} × `{m['dir']}`" for w, m in zip(mix["weights"], mix["members"], strict=True)]
    first = mix["first_alone"]
    return [
        f"Gate: {' + '.join(parts)} (mode `{mix['mode']}`, {mix['tried']} mixtures tried on "
        f"dev): mean dev accuracy over the budgets {_pct(mix['dev_accuracy'])} % against "
        f"{_pct(first['dev_accuracy'])} % for the first gate alone.",
        "",
    ]


def recorded_markdown(name: str, res: Mapping[str, Any]) -> str:
    """One data set's table (and per-class table) as markdown."""
    m = res["methods"]
    lines = [
        f"### {name}: {res['n_test']} test inputs, LLM = recorded `{res['primary']}`, "
        f"confidence score `{res['score']['chosen']}` (chosen on {res['n_dev']} dev)",
        "",
        *_gate_line(res.get("gate", {})),
        "| method | accuracy % | LLM calls % | δ (from dev) | dev accuracy % |",
        "|---|---:|---:|---:|---:|",
    ]
    auc = m["small"].get("auroc_gate_right")
    chosen = res["score"]["chosen"]
    mx = res["score"].get("test_auroc_gate_right", {}).get("max")
    what = f"AUROC of its confidence {auc:.3f}"
    if chosen != "max" and mx is not None:  # a learned score ranks by the LLM's benefit
        what = f"AUROC for 'gate right' of `{chosen}` {auc:.3f}, of `max` {mx:.3f}"
    lines.append(f"| gate alone ({what}) | {_pct(m['small']['accuracy'])} | 0.0 | | |")
    for key, v in m.items():
        if key.startswith("llm"):
            lines.append(
                f"| `{v['column']}` alone ({v['unreadable']} unreadable) | "
                f"{_pct(v['accuracy'])} | 100.0 | | {_pct(v['dev_accuracy'])} |"
            )
    for key, v in m.items():
        if key.startswith("ds-"):
            tag = key[3:]
            what = "max dev accuracy" if tag == "max" else f"budget {tag[1:]} %"
            lines.append(
                f"| Data Shunt, {what} | {_pct(v['accuracy'])} | {_pct(v['llm_rate'])} | "
                f"{v['delta']:.4f} | {_pct(v['dev_accuracy'])} |"
            )
            lines.append(
                f"| random router, same rate | {_pct(m['random-' + tag]['accuracy'])} "
                f"| {_pct(v['llm_rate'])} | | |"
            )
            lines.append(
                f"| oracle router, same rate | {_pct(m['oracle-' + tag]['accuracy'])} "
                f"| {_pct(v['llm_rate'])} | | |"
            )
    for c in (res.get("cascade") or {}).values():
        a, b = c["tiers"]
        lines.append(
            f"| cascade gate → `{a}` → `{b}`, cost ≤ {c['max_cost']:.2f} on dev "
            f"({_pct(c['rate_by_tier'][a])} % / {_pct(c['rate_by_tier'][b])} % calls, cost "
            f"{c['cost_vs_dearest_alone']:.2f} of `{b}` alone) | {_pct(c['accuracy'])} | "
            f"{_pct(c['llm_rate'])} | {c['delta_gate']:.4f} / {c['delta_agreement']:.2f} | "
            f"{_pct(c['dev']['accuracy'])} |"
        )
    for key in NOT_REPLAYABLE:
        lines.append(
            f"| {key}: not replayable (prompt differs from the recorded one) | – | – | | |"
        )
    per_class = res.get("per_class")
    if per_class:
        tags = [k[3:] for k in m if k.startswith("ds-")]
        cols = res["llm_columns"]
        lines += [
            "",
            "Accuracy % per class (LLM calls % in brackets):",
            "",
            "| class | n | gate | "
            + " | ".join(f"`{c}`" for c in cols)
            + " | "
            + " | ".join(f"ds-{t}" for t in tags)
            + " |",
            "|---|---:|---:|" + "---:|" * (len(cols) + len(tags)),
        ]
        for lab, row in per_class.items():
            cells = [_pct(row["small"])] + [_pct(row[c]) for c in cols]
            cells += [
                f"{_pct(row['ds-' + t])} ({_pct(row['ds-' + t + '-llm_rate'])})" for t in tags
            ]
            lines.append(f"| {lab} | {row['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
