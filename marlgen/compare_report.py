"""What a comparison leaves behind: per-job CSV, summary statistics, the markdown page and plots.

Statistics over seeds: mean with a 95% Student-t interval, the interquartile mean (rliable's IQM,
the mean of the middle half: robust to one odd seed), and the spread. Paired differences against
the plain model use the same seeds on both sides (same pretrained model per seed).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from marlgen import atomic  # noqa: E402
from marlgen.methods import METHODS  # noqa: E402
from marlgen.metrics import mean_ci95  # noqa: E402
from marlgen.report import ACTING, json_safe  # noqa: E402

REACHED = 0.9  # convergence: the first evaluation covering this share of the modes

# (key, column title, digits): the diversity-and-quality table, in this order.
FIGURES = [
    ("small_budget_modes_covered", "small-budget modes", 2),
    ("modes_covered", "modes (full budget)", 2),
    ("high_quality_fraction", "high quality", 3),
    ("reverse_kl", "reverse KL", 3),
    ("precision", "precision", 3),
    ("recall", "recall", 3),
    ("density", "density", 3),
    ("coverage", "coverage", 3),
    ("class_kl", "class KL", 3),
    ("frechet_classifier", "frechet_classifier", 2),
    ("delivered", "delivered", 0),
]
DYNAMICS = [
    ("env_steps_to_90", "env steps to 90% of modes", 0),
    ("seconds_to_90", "train seconds to 90%", 1),
    ("kept_90", "share of later evaluations still at 90%", 2),
    ("worst_drop", "largest drop after reaching (modes)", 2),
    ("train_seconds", "train seconds", 0),
]
PAIRED = ["small_budget_modes_covered", "reverse_kl", "high_quality_fraction", "recall", "coverage"]


def dynamics(result: dict) -> dict:
    """Convergence and stability of one training run, read from its per-epoch evaluations."""
    history = result.get("history") or []
    if not history:
        return {}
    n_modes = result["figures"]["modes_total"]
    covered = np.array([h["episode_modes_covered"] for h in history])
    reached = np.flatnonzero(covered >= REACHED * n_modes)
    out = {"train_seconds": result.get("train_seconds", float("nan"))}
    if len(reached) == 0:
        return {**out, "env_steps_to_90": math.nan, "seconds_to_90": math.nan, "kept_90": math.nan,
                "worst_drop": math.nan}  # fmt: skip
    first = reached[0]
    later = covered[first:]
    return {
        **out,
        "env_steps_to_90": history[first]["env_steps"] / result["n_agents"],
        "seconds_to_90": history[first]["seconds"],
        "kept_90": float((later >= REACHED * n_modes).mean()),
        "worst_drop": float(np.max(np.maximum.accumulate(later) - later)),
    }


def summarise(values) -> dict:
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    mean, half = mean_ci95(x)
    return {
        "n": int(x.size),
        "mean": mean,
        "ci95": half,
        "iqm": float(stats.trim_mean(x, 0.25)) if x.size else math.nan,
        "std": float(x.std(ddof=1)) if x.size > 1 else math.nan,
        "min": float(x.min()) if x.size else math.nan,
        "max": float(x.max()) if x.size else math.nan,
    }


def rows_by_method(results: list[dict]) -> dict[str, list[dict]]:
    """Flat rows (figures + dynamics) grouped by method, in the registry's order."""
    out: dict[str, list[dict]] = {}
    for r in results:
        row = {
            "method": r["method"],
            "seed": r["seed"],
            "seconds": r["seconds"],
            **r["figures"],
            **dynamics(r),
        }
        out.setdefault(r["method"], []).append(row)
    return {m: out[m] for m in METHODS if m in out}


def write_comparison(out: Path, results: list[dict], cfg, study: dict, seconds: float) -> None:
    grouped = rows_by_method(results)
    keys = [k for k, _, _ in FIGURES + DYNAMICS]
    summary = {
        m: {k: summarise([row.get(k) for row in rows]) for k in keys if any(k in row for row in rows)}
        for m, rows in grouped.items()
    }
    _write_csv(out / "results.csv", [row for rows in grouped.values() for row in rows])
    _write_csv(
        out / "summary.csv",
        [{"method": m, "metric": k, **s} for m, figs in summary.items() for k, s in figs.items()],
    )
    atomic.write_text(out / "summary.json", json.dumps(json_safe(summary), indent=2) + "\n")
    plot_learning_curves(out / "learning_curves.png", results, summary)
    plot_distribution(out / "final_distribution.png", grouped)
    atomic.write_text(out / "comparison.md", markdown(grouped, summary, cfg, study, seconds))


def markdown(grouped: dict, summary: dict, cfg, study: dict, seconds: float) -> str:
    any_row = next(iter(grouped.values()))[0]
    seeds = study["seeds"]
    lines = [
        f"# Comparison: {cfg.name}, {len(seeds)} seeds ({seeds[0]}..{seeds[-1]})",
        "",
        f"Command: `{study['command']}` ({seconds:.0f} s wall time).",
        "",
        f"Every method decodes {any_row['budget']} samples for the full-budget figures and"
        f" {any_row['small_budget']} per small-budget episode ({cfg.eval.small_budget_per_mode} per mode,"
        f" {any_row['small_budget_episodes']} episodes); figures are over delivered samples. Cells: mean"
        " ± 95% CI over seeds, IQM in brackets. Each seed has its own pretrained model, shared by all"
        f" methods of that seed. {ACTING[cfg.eval.actions]}",
        "",
        "## Diversity and quality",
        "",
    ]
    lines += _table(summary, [f for f in FIGURES if any(f[0] in s for s in summary.values())])
    trained = {m: s for m, s in summary.items() if "train_seconds" in s}
    if trained:
        lines += [
            "",
            "## Convergence and stability (trained methods)",
            "",
            f"From the held-out evaluation after every epoch (modes covered per small-budget episode)."
            f" 'Reached' = {REACHED:.0%} of the modes; runs that never reach it are left out of the step"
            " and second columns (n in the last column).",
            "",
        ]
        lines += _table(trained, DYNAMICS)
        lines += ["", "| method | runs reaching 90% |", "|---|---|"]
        lines += [f"| {m} | {s['env_steps_to_90']['n']}/{len(grouped[m])} |" for m, s in trained.items()]
    if "prior" in grouped:
        lines += ["", "## Paired differences against the plain model (same seeds)", ""]
        lines += _paired(grouped)
    lines += ["", "## Methods", ""]
    lines += [f"- `{m}`: {METHODS[m].description}" for m in grouped]
    lines += [
        "",
        "## Figures",
        "",
        "![learning curves](learning_curves.png)",
        "",
        "![final distribution](final_distribution.png)",
        "",
        "Per-job rows: `results.csv`; statistics: `summary.csv` / `summary.json`; each job's run folder"
        " (config, checkpoints, TensorBoard): `runs/METHOD/seedN/`.",
        "",
    ]
    return "\n".join(lines)


def _table(summary: dict, columns: list) -> list[str]:
    lines = [
        "| method | " + " | ".join(title for _, title, _ in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for method, figs in summary.items():
        cells = [_cell(figs.get(key), digits) for key, _, digits in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _cell(s: dict | None, digits: int) -> str:
    if not s or s["n"] == 0:
        return "n/a"
    ci = "" if not np.isfinite(s["ci95"]) else f" ± {s['ci95']:.{digits}f}"
    return f"{s['mean']:.{digits}f}{ci} [{s['iqm']:.{digits}f}]"


def _paired(grouped: dict) -> list[str]:
    prior = {row["seed"]: row for row in grouped["prior"]}
    lines = ["| method | " + " | ".join(f"Δ {k}" for k in PAIRED) + " |", "|---" * (len(PAIRED) + 1) + "|"]
    for method, rows in grouped.items():
        if method == "prior":
            continue
        cells = []
        for key in PAIRED:
            pairs = [(row.get(key), prior.get(row["seed"], {}).get(key)) for row in rows]
            diffs = [a - b for a, b in pairs if a is not None and b is not None and np.isfinite(a - b)]
            mean, half = mean_ci95(diffs)
            cells.append(
                "n/a" if not diffs else f"{mean:+.3f}" + ("" if not np.isfinite(half) else f" ± {half:.3f}")
            )
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def plot_learning_curves(path: Path, results: list[dict], summary: dict) -> None:
    """Modes per small-budget episode against env steps and train seconds: mean and 95% band."""
    curves: dict[str, list[dict]] = {}
    for r in results:
        if r.get("history"):
            curves.setdefault(r["method"], []).append(r)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    n_modes = results[0]["figures"]["modes_total"]
    for i, (method, runs) in enumerate(curves.items()):
        colour = plt.get_cmap("tab10")(i)
        length = min(len(r["history"]) for r in runs)
        y = np.array([[h["episode_modes_covered"] for h in r["history"][:length]] for r in runs])
        for ax, x in (
            (
                axes[0],
                np.array([[h["env_steps"] / r["n_agents"] for h in r["history"][:length]] for r in runs]),
            ),
            (axes[1], np.array([[h["seconds"] for h in r["history"][:length]] for r in runs])),
        ):
            mean = y.mean(0)
            half = np.array([mean_ci95(col)[1] for col in y.T]) if len(runs) > 1 else np.zeros(length)
            ax.plot(x.mean(0), mean, marker="o", ms=3, color=colour, label=f"{method} ({len(runs)} seeds)")
            ax.fill_between(x.mean(0), mean - half, mean + half, color=colour, alpha=0.2)
    for method, style in (("prior", "--"), ("random", ":"), ("drs", "-.")):
        if method in summary:
            value = summary[method]["small_budget_modes_covered"]["mean"]
            for ax in axes:
                ax.axhline(value, ls=style, c="gray", label=f"{method}: {value:.2f}")
    for ax, label in zip(axes, ("env steps (all copies)", "train seconds"), strict=True):
        ax.axhline(n_modes, c="black", lw=0.8)
        ax.set_xlabel(label)
    axes[0].set_ylabel("modes per small-budget episode (mean, 95% band)")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_distribution(path: Path, grouped: dict) -> None:
    """Each seed's final figure, per method: the spread a single run can land anywhere in."""
    keys = [
        (k, t)
        for k, t, _ in FIGURES[:8]
        if any(row.get(k) is not None for rows in grouped.values() for row in rows)
    ]
    cols = min(4, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.6 * rows), squeeze=False)
    methods = list(grouped)
    for ax in axes.flat[len(keys) :]:
        ax.set_visible(False)
    for ax, (key, title) in zip(axes.flat, keys, strict=False):
        data = [[row[key] for row in grouped[m] if row.get(key) is not None] for m in methods]
        ax.boxplot(data, widths=0.5, showfliers=False)
        for i, values in enumerate(data, 1):
            jitter = np.linspace(-0.12, 0.12, len(values))
            ax.scatter(np.full(len(values), i) + jitter, values, s=12, zorder=3, color=f"C{i - 1}")
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=45, fontsize=7, ha="right")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_csv(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(json_safe(rows))
