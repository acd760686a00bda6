"""The BENCHMARKS.md tables of ``bench/results/guarantees.json`` (``python -m bench.guarantees``
prints them after a run)."""

from __future__ import annotations

from typing import Any

from bench.common import pct


def markdown(res: dict[str, Any]) -> str:
    """The BENCHMARKS.md tables of a result."""
    lines = [
        "| data set | target | broken (population) | broken (test half) | expected on a test "
        "half if exactly valid | broken, uncertified | LLM share certified "
        "| LLM share uncertified | splits all to LLM |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, targets in res["certified"].items():
        for spec, r in targets.items():
            lines.append(
                f"| {name} | {spec} | {pct(r['violation_rate_population'])} % "
                f"| {pct(r['violation_rate_certified'])} % "
                f"| {pct(r['violation_rate_expected_test_half'])} % "
                f"| {pct(r['violation_rate_uncertified'])} % "
                f"| {pct(r['llm_share_certified'])} % | {pct(r['llm_share_uncertified'])} % "
                f"| {r['splits_all_to_llm']} |"
            )
    lines += [
        "",
        "| data set | 1-α | coverage (mean) | 5th-95th pct | mean set size / labels | singletons "
        "(gate answers) | their accuracy | candidate tokens saved per LLM prompt |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res["conformal"].items():
        lo, hi = r["coverage_p5_p95"]
        lines.append(
            f"| {name} | {1 - r['alpha']:.2f} | {pct(r['coverage_mean'])} % "
            f"| {pct(lo)}-{pct(hi)} % "
            f"| {r['mean_set_size']:.2f} / {r['labels']} | {pct(r['singleton_share'])} % "
            f"| {pct(r['singleton_accuracy'])} % "
            f"| {r['candidate_tokens_saved_per_llm_prompt']:.1f} "
            f"of {r['candidate_tokens_full']} |"
        )
    lines += [
        "",
        "| stream | monitor | false alarms | detected | within 500 | median delay | max delay |",
        "|---|---|---|---|---|---|---|",
    ]
    drift = res["drift"]
    for stream, monitors in drift.items():
        if not isinstance(monitors, dict) or stream.startswith("shift "):
            continue
        for name, r in monitors.items():
            lines.append(
                f"| {stream} | {name} | {pct(r['false_alarm_rate'])} % "
                f"| {r.get('detected', '-')} "
                f"| {r.get('detected_within_500', '-')} | {r.get('delay_median', '-')} "
                f"| {r.get('delay_max', '-')} |"
            )
    lines += [
        "",
        f"| switch (δ = {drift.get('delta')}) | side | gate accuracy | mean confidence "
        "| share at or above δ | its accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for stream, sides in drift.items():
        if stream.startswith("shift "):
            for side, r in sides.items():
                lines.append(
                    f"| {stream[6:]} | {side} | {pct(r['gate_accuracy'])} % "
                    f"| {r['mean_confidence']:.3f} | {pct(r['small_share_at_delta'])} % "
                    f"| {pct(r['small_route_accuracy'])} % |"
                )
    return "\n".join(lines)
