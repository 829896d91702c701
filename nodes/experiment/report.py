"""The console report of a finished run: training, selection, and the evaluations side by side."""

from __future__ import annotations

from typing import Any

REPORT_COLUMNS = (("survival", "survival_rate"), ("steps", "mean_survival_steps"),
                  ("tokens/1000", "tokens_per_1000_steps"), ("task return", "mean_task_return"),
                  ("homeo return", "mean_homeo_return"), ("return", "mean_return"), ("violations", "violations"))


def report_lines(s: dict[str, Any]) -> list[str]:
    lines = [
        f"run {s['run_id']}: {s['env_steps']} env steps, {s['episodes']} episodes in {s['wall_s']} s",
        f"  train: violations {s['train']['violations_executed']}, interventions "
        f"{s['train']['shield_interventions']}, fallback steps {s['train']['fallback_steps']}, "
        f"intervention rate {s['train']['intervention_rate_first_10pct']} -> "
        f"{s['train']['intervention_rate_last_10pct']}",
    ]
    if "select" in s:
        lines.append(f"  select: version {s['select']['chosen_version']} of " + ", ".join(
            f"{c['version']} ({c['mean_survival_steps']})" for c in s["select"]["candidates"]))
    lines += side_by_side(s)
    if "eval_shielded" in s:
        lines.append("  eval_shielded: " + ", ".join(f"{k} {v}" for k, v in s["eval_shielded"].items()))
    return lines


def side_by_side(s: dict[str, Any]) -> list[str]:
    """The unshielded evaluations, one row each: what the policy learned next to what random and scripted do."""
    rows = [key for key in ("eval", "baseline_random", "baseline_scripted") if key in s]
    if not rows:
        return []
    columns = [(title, key) for title, key in REPORT_COLUMNS if any(key in s[r] for r in rows)]
    width = max(len(r) for r in rows)
    lines = [f"  {'unshielded, seed ' + str(s[rows[0]].get('seed', '')):<{width + 2}}"
             + "".join(f"{title:>14}" for title, _ in columns)]
    for r in rows:
        lines.append(f"    {r:<{width}}" + "".join(f"{s[r].get(key, '-')!s:>14}" for _, key in columns))
    return lines
