"""What a run leaves behind: metrics.json, report.md, and the pictures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from marlgen.evaluate import evaluated_epoch  # noqa: E402

COLUMNS = [
    ("modes", lambda r: f"{r['modes_covered']}/{r['modes_total']}"),
    ("high quality", lambda r: _pct(r["high_quality_fraction"])),
    ("reverse KL", lambda r: _num(r["reverse_kl"])),
    ("delivered / decoded", lambda r: f"{r['delivered']}/{r['budget']}"),
    ("precision", lambda r: _num(r.get("precision"))),
    ("recall", lambda r: _num(r.get("recall"))),
    ("density", lambda r: _num(r.get("density"))),
    ("coverage", lambda r: _num(r.get("coverage"))),
    ("spread in mode", lambda r: _num(r.get("within_mode_spread"), 4)),
    (
        "small-budget modes",
        lambda r: f"{r['small_budget_modes_covered']:.2f} ± {_num(r['small_budget_modes_ci95'])}",
    ),
]


def write_metrics(run_dir: Path, results: dict) -> None:
    (run_dir / "metrics.json").write_text(json.dumps(json_safe(results), indent=2) + "\n")


ACTING = {  # how the evaluated team acted (eval.actions)
    "sample": "The team's agents **sample** their actions from the trained policy (`eval.actions=sample`,"
    " seeded): a fresh draw each episode, as a generator is used.",
    "greedy": "The team's agents act **greedily** (`eval.actions=greedy`): the trained policy's"
    " deterministic choice, the same anchors every episode from the same observations.",
}


def write_report(
    run_dir: Path,
    cfg,
    results: dict,
    timings: dict,
    history: list[dict],
    judge: str,
    images: dict | None = None,
    model_curve: list[dict] | None = None,
) -> None:
    """``images``: image runs' extra figures (marlgen.evaluate.image_summary) and picture files;
    ``model_curve``: the generative model's prior figures over its generator updates."""
    any_row = next(iter(results.values()))
    data = f"{cfg.data.source} (std {cfg.data.std})" if images is None else _image_source(cfg)
    quality = (
        f"High quality = within 3 std of a mean; reverse KL = KL(p_gen || uniform) over high-quality samples'"
        f" modes; true std {cfg.data.std}."
        if images is None
        else f"Modes: {images['assigner']}; high quality = the mode assigner places the sample in a mode;"
        " reverse KL = KL(p_gen || uniform) over those samples' modes; precision, recall, density and"
        " coverage are computed in the assigner's feature space (see Images below)."
    )
    lines = [
        f"# {cfg.name}: seed {cfg.seed}",
        "",
        f"Generators: {cfg.env.n_generators} × {cfg.agents.generator.algorithm.upper()}"
        f" ({'shared parameters' if cfg.agents.generator.share_parameters else 'one network each'}),"
        f" critic: {cfg.agents.critic.algorithm.upper()} judged by the **{judge}**."
        f" Model: {cfg.model.kind.upper()} on {data}. {ACTING[cfg.eval.actions]}",
        "",
        f"Every method decodes {any_row['budget']} samples; figures are over the samples it delivers"
        f" (the critic's rejects still cost their decode). {quality}"
        f" Small-budget modes: modes covered by {any_row['small_budget']} decoded samples"
        f" ({cfg.eval.small_budget_per_mode} per mode), mean ± 95% CI over"
        f" {any_row['small_budget_episodes']} episodes.",
        "",
        "| method | " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for method, row in results.items():
        lines.append(f"| {method} | " + " | ".join(fmt(row) for _, fmt in COLUMNS) + " |")
    if images is not None:
        lines += image_section(cfg, results, images)
    if model_curve:
        lines += model_curve_section(cfg, model_curve)
    lines += ["", "## Wall time", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {stage} | {sec:.1f} |" for stage, sec in timings.items()]
    if history:
        evaluated = evaluated_epoch(history)
        said = f"The team evaluated above is epoch {evaluated}'s policy, the best on held-out episodes."
        lines += [
            "",
            "## Training",
            "",
            *([said, ""] if evaluated is not None else []),
            "| epoch | agent steps | modes per episode | seconds | evaluated |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {h['epoch']} | {h['env_steps']} | {h['episode_modes_covered']:.2f} | {h['seconds']:.0f} | "
            f"{'yes' if h['epoch'] == evaluated else ''} |"
            for h in history
        ]
    pictures = ["samples.png"] if images is None else images.get("pictures", [])[:2]
    lines += (
        [""] + [f"![{Path(p).stem}]({p})\n" for p in pictures] + ["![learning curve](learning_curve.png)", ""]
    )
    (run_dir / "report.md").write_text("\n".join(lines))


IMAGE_COLUMNS = [
    ("modes", lambda r: f"{r['modes_covered']}/{r['modes_total']}"),
    ("in a mode", lambda r: _pct(r["high_quality_fraction"])),
    ("precision", lambda r: _num(r.get("precision"))),
    ("recall", lambda r: _num(r.get("recall"))),
    ("density", lambda r: _num(r.get("density"))),
    ("coverage", lambda r: _num(r.get("coverage"))),
    ("frechet_classifier", lambda r: _num(r.get("frechet_classifier"), 2)),
    ("class KL", lambda r: _num(r.get("class_kl"))),
]


def _image_source(cfg) -> str:
    where = f" `{cfg.data.path}`" if cfg.data.source == "npz" else ""
    return f"{cfg.data.source}{where} images"


def image_section(cfg, results: dict, images: dict) -> list[str]:
    """Image runs: the classifier's trustworthiness, feature-space figures, and a real-data reference row."""
    lines = ["", "## Images", ""]
    if "classifier_accuracy" in images:
        per = (
            " per channel (each channel is one digit; all three must be confident)"
            if images["n_modes"] == 1000
            else ""
        )
        lines.append(
            f"Mode classifier: held-out accuracy **{_pct(images['classifier_accuracy'])}** on"
            f" {images['classifier_test_images']} real test images{per}; a sample is in a mode only when"
            f" its top softmax probability is above {images['confidence']:g} (modes.confidence)."
        )
    lines += [
        "",
        "Features: the mode assigner's feature map (the classifier's penultimate layer; k-means: principal"
        " components). Precision/recall with k=3, density/coverage with k=5 against real training images;"
        " frechet_classifier = Frechet distance in that feature space (not FID: not Inception features);"
        " class KL = KL(p || uniform) of the class histogram of every delivered sample, confident or not."
        " The last row scores held-out real images the same way: the best a method can expect.",
        "",
        "| method | " + " | ".join(name for name, _ in IMAGE_COLUMNS) + " |",
        "|---" * (len(IMAGE_COLUMNS) + 1) + "|",
    ]
    real = images["real_held_out"]
    n_real, budget = real.get("n_images"), cfg.eval.budget
    rows = {**results, "real (held-out)" + (f", {n_real} images" if n_real else ""): real}
    lines += [f"| {m} | " + " | ".join(fmt(r) for _, fmt in IMAGE_COLUMNS) + " |" for m, r in rows.items()]
    if n_real and n_real < budget:
        lines += [
            "",
            f"The real row has only {n_real} images against the methods' {budget} samples: with"
            f" {images['n_modes']} modes its modes covered and class KL reflect that smaller sample"
            " (a uniform draw of so few leaves modes empty), not a level a method should reach.",
        ]
    lines += [
        "",
        "Pictures: `grids.png` (prior | team, one row per generator, labelled with its commonest classes),"
        " `mode_shares.png` (each agent's share of every mode), `team_grid.png`, `prior_grid.png`.",
    ]
    return lines


def image_summary_line(results: dict, images: dict) -> str:
    acc = images.get("classifier_accuracy")
    head = f"classifier held-out accuracy {100 * acc:.1f}%; " if acc is not None else ""
    nan = float("nan")
    body = "; ".join(
        f"{m} frechet_classifier {r.get('frechet_classifier', nan):.2f},"
        f" class KL {r.get('class_kl', nan):.3f}"
        for m, r in results.items()
    )
    return head + body


def plot_samples(path: Path, rollouts: dict, means: np.ndarray | None, n_generators: int) -> None:
    """Team samples coloured by agent beside the plain prior, over the true modes."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), sharex=True, sharey=True)
    for ax, (method, title) in zip(
        axes, [("prior", "plain model, prior"), ("team", "trained team")], strict=True
    ):
        r = rollouts[method]
        kept = r.accepted
        if method == "team":
            cmap = plt.get_cmap("tab10" if n_generators <= 10 else "hsv", n_generators)
            ax.scatter(*r.samples[~kept].T[:2], s=4, c="lightgray", label="rejected by critic")
            for i in range(n_generators):
                mine = kept & (r.agent == i)
                ax.scatter(*r.samples[mine].T[:2], s=4, color=cmap(i), label=f"generator_{i}")
        else:
            ax.scatter(*r.samples.T[:2], s=4, c="tab:gray", label="samples")
        if means is not None:
            ax.scatter(*means.T, marker="x", c="black", s=40, label="true means")
        ax.set_title(f"{title} ({int(kept.sum())} delivered of {len(kept)})")
        ax.set_aspect("equal")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), markerscale=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_learning_curve(path: Path, history: list[dict], results: dict, n_modes: int) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    steps = [h["env_steps"] for h in history]
    ax.plot(steps, [h["episode_modes_covered"] for h in history], marker="o", label="team (greedy)")
    for method, style in (("prior", "--"), ("random", ":")):
        if method in results:
            value = results[method]["small_budget_modes_covered"]
            ax.axhline(value, ls=style, c="gray", label=f"{method}: {value:.2f}")
    ax.axhline(n_modes, c="black", lw=0.8, label=f"all {n_modes} modes")
    ax.set_xlabel("agent steps (transitions collected)")
    ax.set_ylabel("modes covered per small-budget episode")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def model_curve_section(cfg, curve: list[dict]) -> list[str]:
    """How the generative model itself trained: its prior's figures after each stretch of updates."""
    guided = cfg.model.training == "guided"
    how = (
        f"guided: {cfg.model.guided.warmup_steps} conventional updates, then {cfg.model.guided.rounds} rounds"
        f" of team training and guided updates (signal: {cfg.model.guided.signal}; docs/guided.md)"
        if guided
        else "conventional"
    )
    budget = cfg.eval.budget
    regions = guided and cfg.model.guided.sampler == "regions"
    prior = (
        "the model's prior (from the first round on, the mixture of its latent regions: sampler=regions;"
        " the last column samples N(0, I) instead)"
        if regions
        else "the model's prior"
    )
    lines = [
        "",
        "## Generative model training",
        "",
        f"Training: {how}; {cfg.model.train_steps} generator updates in all. Figures of {budget} samples"
        f" from {prior} after each stretch of updates (`model_curve.json`, `model_curve.png`).",
        "",
        "| generator updates | modes | high quality | reverse KL | team modes (its rollout) |"
        + (" N(0, I): modes, high quality |" if regions else ""),
        "|---|---|---|---|---|" + ("---|" if regions else ""),
    ]
    for row in curve:
        team = f"{row['team_modes_covered']}" if "team_modes_covered" in row else "–"
        normal = ""
        if regions:
            normal = (
                f" {row['normal_modes_covered']}, {_pct(row['normal_high_quality_fraction'])} |"
                if "normal_modes_covered" in row
                else " – |"
            )
        lines.append(
            f"| {row['updates']} | {row['modes_covered']}/{row['modes_total']} |"
            f" {_pct(row['high_quality_fraction'])} | {_num(row['reverse_kl'])} | {team} |{normal}"
        )
    return lines + ["", "![model curve](model_curve.png)"]


def write_model_curve(run_dir: Path, cfg, curve: list[dict], n_modes: int) -> None:
    (run_dir / "model_curve.json").write_text(json.dumps(json_safe(curve), indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(6.5, 4))
    x = [row["updates"] for row in curve]
    ax.plot(x, [row["modes_covered"] for row in curve], marker="o", label="modes covered by the prior")
    if cfg.model.training == "guided":
        ax.axvline(cfg.model.guided.warmup_steps, ls=":", c="gray", label="guided rounds start")
        team = [(row["updates"], row["team_modes_covered"]) for row in curve if "team_modes_covered" in row]
        if team:  # the team's rollout precedes its round's model update
            ax.scatter(
                *zip(*team, strict=True),
                marker="x",
                c="tab:red",
                label="modes the team reached (before the update)",
            )
    ax.axhline(n_modes, c="black", lw=0.8, label=f"all {n_modes} modes")
    ax2 = ax.twinx()
    ax2.plot(
        x,
        [100 * row["high_quality_fraction"] for row in curve],
        c="tab:green",
        ls="--",
        label="high quality %",
    )
    ax2.set_ylim(0, 100)
    ax2.set_ylabel("high-quality samples (%)")
    ax.set_xlabel("generator updates")
    ax.set_ylabel(f"modes covered ({cfg.eval.budget} prior samples)")
    lines = ax.get_legend_handles_labels()
    extra = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + extra[0], lines[1] + extra[1], fontsize=8, loc="lower right")
    ax.set_title(f"{cfg.name}: {cfg.model.kind} trained {cfg.model.training}", fontsize=10)
    fig.tight_layout()
    fig.savefig(run_dir / "model_curve.png", dpi=110)
    plt.close(fig)


def _pct(x) -> str:
    return f"{100 * x:.1f}%"


def _num(x, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def json_safe(obj):
    """JSON has no NaN: write null where a figure is undefined."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return obj
