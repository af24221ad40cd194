"""Conventional against guided training of the same GAN: same data, same generator updates, several seeds.

    python benchmarks/guided_vs_conventional.py scenarios/gmm_grid25_guided.yaml --seeds 5 \\
        --out benchmarks/results/grid25 [--methods conventional guided greedy] [--model-only] [key=value ...]

Each method is config overrides on the scenario (``model.training=conventional``, ``guided``, or
``guided`` with ``model.guided.signal=greedy``: the no-agents ablation), run through
``marlgen.run.run`` (``--model-only``: only the model's training, no final team or evaluation).
Runs go one after another: this machine has two shared cores. Writes ``curves.csv`` (the model's prior
after each stretch of updates), ``summary.md`` (final figures, convergence and stability across
seeds) and ``curves.png`` (modes and high quality against generator updates, bands across seeds).
On 2-D mixtures a model-only run also keeps its final prior samples (``<method>_seed<s>/final_prior.npz``,
the draw its last figures counted), and the command draws them (``samples.png``) and tells in
``summary.md`` how far the low-quality ones lie from the nearest mean: blurred modes or bridges between
modes. With a 2-D latent it also keeps which mode every point of a latent grid decodes to and draws
it (``latent_map.png``: where the latent plane's cells map). Every model-only run keeps its final
weights (``final_model.pt``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from marlgen.config import load_scenario  # noqa: E402

METHODS = {
    "conventional": ["model.training=conventional"],
    "guided": ["model.training=guided"],
    "greedy": ["model.training=guided", "model.guided.signal=greedy"],  # ablation: no agents
}
# Per row of a model curve; mixture_*: guided runs' learned mixture prior (marlgen.guided.mixture_figures);
# dmix_*: the mixture sampler with regions from the GAN's own discriminator and the mode labels
# (marlgen.guided.greedy_mixture_figures), for either method (conventional: the final model only).
FIELDS = ("updates", "modes_covered", "modes_total", "high_quality_fraction", "reverse_kl",
          "mixture_modes_covered", "mixture_high_quality_fraction", "team_modes_covered",
          "dmix_modes_covered", "dmix_high_quality_fraction", "dmix_regions",
          "normal_modes_covered", "normal_high_quality_fraction",
          "dreg_modes_covered", "dreg_high_quality_fraction", "dreg_regions", "within_mode_std")  # fmt: skip
COLOURS = {"conventional": "tab:gray", "guided": "tab:blue", "greedy": "tab:orange"}


def run_one(
    scenario: str, method: str, seed: int, out: Path, overrides: list[str], model_only: bool, progress: bool
) -> list:
    """The model's curve (rows of prior figures over updates) and, for full runs, the final metrics.

    Each guided round prints a line (a run takes minutes); ``progress`` adds the bars of pretraining
    and team training."""
    run_dir = out / f"{method}_seed{seed}"
    cfg = load_scenario(scenario, [*overrides, *METHODS[method], f"seed={seed}", f"out_dir={run_dir}"])
    run_dir.mkdir(parents=True, exist_ok=True)
    if model_only:
        from marlgen.build import build_parts

        parts = build_parts(cfg, progress=progress)
        curve = [dict(r) for r in getattr(parts.model, "curve", [])]
        if cfg.model.training == "guided":
            from marlgen.guided import guide

            def log(line: str) -> None:
                print(f"  {method} seed {seed}: {line}", flush=True)

            history = guide(cfg, parts, run_dir, progress=progress, log=log).history
            curve = [r for r in curve if r["updates"] < history[0]["updates"]] + history
        elif curve and curve[-1]["updates"] == cfg.model.train_steps and hasattr(parts.model, "discriminate"):
            # the conventional GAN, given the same kind of mixture sampler from its own discriminator
            from marlgen.build import make_env
            from marlgen.guided import greedy_mixture_figures

            anchors = make_env(cfg, parts).anchors
            curve[-1].update(greedy_mixture_figures(
                parts.model, parts.assigner, anchors, parts.dataset.samples, cfg.model.guided,
                cfg.eval.budget, cfg.seed + 1,
            ))  # fmt: skip
        if curve and hasattr(parts.model, "discriminate"):
            curve[-1].update(final_sampler_figures(parts, cfg))
        (run_dir / "model_curve.json").write_text(json.dumps(curve, indent=2) + "\n")
        save_final_samples(run_dir / "final_prior.npz", parts, cfg)
        # the trained model itself, for looking at it afterwards (its latent map, say) without retraining
        torch.save(parts.model.state_dict(), run_dir / "final_model.pt")
        return curve
    from marlgen.run import make_run_dir, run

    run(cfg, make_run_dir(cfg), progress=progress)
    return json.loads((run_dir / "model_curve.json").read_text())


def final_sampler_figures(parts, cfg) -> dict:
    """For either method's final GAN: a pure region sampler from its own discriminator and the labels
    (``dreg_*``, what ``sampler=regions`` gives a guided model), and on mixtures the high-quality samples'
    spread within their modes over the true std (near 1: modes as wide as the data's; near 0: collapsed)."""
    from marlgen.build import make_env
    from marlgen.evaluate import prior
    from marlgen.guided import discriminator_region_figures
    from marlgen.metrics import within_mode_spread

    anchors = make_env(cfg, parts).anchors
    out = discriminator_region_figures(parts.model, parts.assigner, anchors, parts.dataset.samples,
                                       cfg.model.guided, cfg.eval.budget, cfg.seed + 1)  # fmt: skip
    std = getattr(parts.assigner, "std", None)
    if std is not None:
        rollout = prior(parts.model, parts.assigner, cfg.eval.budget, cfg.seed + 1)
        good = rollout.modes >= 0
        out["within_mode_std"] = within_mode_spread(rollout.samples[good], rollout.modes[good]) / float(std)
    return out


def save_final_samples(path: Path, parts, cfg) -> None:
    """The final prior samples, the same draw as the curve's last figures (2-D mixtures only)."""
    means = getattr(parts.assigner, "means", None)
    if means is None or means.shape[1] != 2:
        return
    from marlgen.evaluate import prior

    rollout = prior(parts.model, parts.assigner, cfg.eval.budget, cfg.seed + 1)
    extra = {"latent_modes": latent_map(parts.model, parts.assigner)} if parts.model.latent_dim == 2 else {}
    learned = parts.model.latent_prior
    if extra and not learned.is_normal:  # sampler=regions: where the prior's regions sit on the map
        extra.update(region_means=learned.means.numpy(), region_spread=float(learned.spread))
    np.savez(path, samples=rollout.samples, modes=rollout.modes, means=means, std=parts.assigner.std,
             hq_threshold=parts.assigner.hq_threshold, **extra)  # fmt: skip


def load_final_samples(out: Path, methods: list[str]) -> dict:
    """{(method, seed): npz} of the runs under ``out`` that kept their final prior samples."""
    found = {}
    for method in methods:
        for path in sorted(out.glob(f"{method}_seed*/final_prior.npz")):
            found[(method, int(path.parent.name.rsplit("seed", 1)[1]))] = dict(np.load(path))
    return found


def distance_bands(final: dict) -> tuple[float, float, float]:
    """Shares of samples within the quality bar of the nearest mean, up to twice it, and beyond."""
    from marlgen.metrics import standardised_distance  # the distance the mode assigner's verdict reads

    d = standardised_distance(final["samples"], final["means"], float(final["std"]))
    bar = float(final["hq_threshold"])
    return float(np.mean(d < bar)), float(np.mean((d >= bar) & (d < 2 * bar))), float(np.mean(d >= 2 * bar))


def bands_table(finals: dict) -> list[str]:
    if not finals:
        return []
    bar = float(next(iter(finals.values()))["hq_threshold"])
    blur, far = f"{bar:g}-{2 * bar:g}", f">= {2 * bar:g}"
    lines = [
        "",
        "Where the final prior samples lie: distance to the nearest mean, in standard deviations "
        f"(< {bar:g}: high quality; {blur}: a blurred mode; {far}: between modes).",
        "",
        f"| method | seed | < {bar:g} | {blur} | {far} |",
        "|---|---|---|---|---|",
    ]
    for method in dict.fromkeys(m for m, _ in finals):
        shares = {seed: distance_bands(f) for (m, seed), f in sorted(finals.items()) if m == method}
        for seed, b in shares.items():
            lines.append(f"| {method} | {seed} | " + " | ".join(f"{100 * x:.1f}%" for x in b) + " |")
        mean = np.mean(list(shares.values()), axis=0)
        lines.append(f"| {method} | mean | " + " | ".join(f"{100 * x:.1f}%" for x in mean) + " |")
    return lines


LATENT_GRID = 121  # latent-map points per axis over [-LATENT_EXTENT, LATENT_EXTENT]
LATENT_EXTENT = 3.0  # in prior std: 99.5% of N(0, I)'s mass in 2-D lies inside


def latent_map(model, assigner) -> np.ndarray:
    """The mode (or -1) of every point of a grid over a 2-D latent: which latent cells map where.

    A continuous map must cross between modes somewhere, and the prior's mass on those crossings is the
    samples that land between modes (latent_islands counts the patches and that mass)."""
    axis = np.linspace(-LATENT_EXTENT, LATENT_EXTENT, LATENT_GRID, dtype=np.float32)
    z = np.stack(np.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)  # row i: latent y = axis[i]
    with torch.inference_mode():
        x = model.decode(torch.from_numpy(z)).numpy()
    return assigner(x).reshape(LATENT_GRID, LATENT_GRID)


ISLAND_MASS = 1e-3  # a latent island counts when it holds at least this share of the prior's mass


def latent_islands(grid: np.ndarray) -> tuple[int, int, float]:
    """(modes with an island, islands, prior mass on no mode) of a latent map.

    An island is a connected patch of latent cells decoding to one mode, holding at least
    ISLAND_MASS of N(0, I)'s mass on the grid. Between islands lie cells that decode to no mode: the
    more islands a map has, the more such boundaries it must pay for."""
    from scipy import ndimage

    axis = np.linspace(-LATENT_EXTENT, LATENT_EXTENT, grid.shape[0])
    mass = np.exp(-0.5 * (axis[:, None] ** 2 + axis[None, :] ** 2))
    mass /= mass.sum()  # each cell's share of the prior's mass on the grid
    modes, islands = 0, 0
    for mode in np.unique(grid[grid >= 0]):
        labels, n = ndimage.label(grid == mode)  # 4-connected patches
        kept = ndimage.sum_labels(mass, labels, np.arange(1, n + 1)) >= ISLAND_MASS
        modes, islands = modes + bool(kept.any()), islands + int(kept.sum())
    return modes, islands, float(mass[grid < 0].sum())


def islands_table(finals: dict) -> list[str]:
    runs = {k: f for k, f in sorted(finals.items()) if "latent_modes" in f}
    if not runs:
        return []
    lines = [
        "",
        f"The latent plane ([-{LATENT_EXTENT:g}, {LATENT_EXTENT:g}]^2, {LATENT_GRID}^2 points; "
        "`latent_map.png`): islands are connected patches of one mode holding >= "
        f"{100 * ISLAND_MASS:g}% of N(0, I)'s mass (N(0, I) even where the model's prior is another: "
        "sampler=regions).",
        "",
        "| method | seed | modes with an island | islands | N(0, I) mass on no mode | per island |",
        "|---|---|---|---|---|---|",
    ]
    for method in dict.fromkeys(m for m, _ in runs):
        found = {seed: latent_islands(f["latent_modes"]) for (m, seed), f in runs.items() if m == method}
        for seed, (modes, islands, white) in found.items():
            lines.append(f"| {method} | {seed} | {modes} | {islands} | {100 * white:.1f}% "
                         f"| {100 * white / max(islands, 1):.2f}% |")  # fmt: skip
        modes, islands, white = np.mean(list(found.values()), axis=0)
        lines.append(f"| {method} | mean | {modes:.1f} | {islands:.1f} | {100 * white:.1f}% "
                     f"| {100 * white / max(islands, 1):.2f}% |")  # fmt: skip
    return lines


def _run_panels(finals: dict, path: Path, suptitle: str, draw) -> None:
    """One panel per run (methods by rows, seeds by columns); ``draw(ax, npz)`` returns its title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(m for m, _ in finals))
    seeds = sorted({s for _, s in finals})
    size = (max(2.6 * len(seeds), 6.5), 3.1 * len(methods))  # wide enough for the two-line title
    fig, axes = plt.subplots(len(methods), len(seeds), figsize=size, squeeze=False, sharex=True, sharey=True)
    for (i, method), (j, seed) in ((im, js) for im in enumerate(methods) for js in enumerate(seeds)):
        ax, f = axes[i, j], finals.get((method, seed))
        ax.set_aspect("equal")
        if f is None:
            ax.set_axis_off()
            continue
        ax.set_title(f"{method} seed {seed}: {draw(ax, f)}", fontsize=7)
    fig.suptitle(suptitle, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_final_samples(finals: dict, path: Path, title: str) -> None:
    """High-quality samples blue, the rest orange, the true means as crosses."""
    lim = 1.6 * np.abs(next(iter(finals.values()))["means"]).max()

    def draw(ax, f) -> str:
        good = f["modes"] >= 0
        ax.scatter(*f["means"].T, marker="+", s=30, c="black", lw=0.6, zorder=1)
        ax.scatter(*f["samples"][~good].T, s=1, c="tab:orange", zorder=2)
        ax.scatter(*f["samples"][good].T, s=2, c="tab:blue", zorder=3)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        return f"{len(np.unique(f['modes'][good]))}/{len(f['means'])}, {100 * good.mean():.0f}% HQ"

    _run_panels(
        finals, path, f"{title}\nfinal prior samples: blue within the quality bar, orange outside", draw
    )


def plot_latent_maps(finals: dict, path: Path, title: str) -> None:
    """Each run's latent plane coloured by the mode its decode lands in (white: no mode), each mode
    in the colour of its mean's place in the data (hue by angle, lightness by radius)."""
    import matplotlib.colors as mcolors
    from matplotlib.patches import Circle

    runs = {k: f for k, f in finals.items() if "latent_modes" in f}
    if not runs:
        return
    means = next(iter(runs.values()))["means"]
    centred = means - means.mean(0)
    hue = (np.arctan2(centred[:, 1], centred[:, 0]) / (2 * np.pi)) % 1.0
    radius = np.linalg.norm(centred, axis=1) / max(np.linalg.norm(centred, axis=1).max(), 1e-9)
    colours = mcolors.hsv_to_rgb(np.stack([hue, 0.35 + 0.65 * radius, 0.95 - 0.35 * radius], 1))
    palette = np.vstack([colours, [1.0, 1.0, 1.0]])  # index -1: white

    def draw(ax, f) -> str:
        grid = f["latent_modes"]
        ax.imshow(palette[grid], origin="lower", extent=[-LATENT_EXTENT, LATENT_EXTENT] * 2,
                  interpolation="nearest")  # fmt: skip
        ax.add_patch(Circle((0, 0), 2.0, fill=False, lw=0.5, ls="--"))
        for centre in f.get("region_means", ()):  # the learned prior's regions, 2 std wide
            ax.add_patch(Circle(tuple(centre), 2 * float(f["region_spread"]), fill=False, lw=0.5))
        return f"{len(np.unique(grid[grid >= 0]))} modes in the plane"

    _run_panels(runs, path, f"{title}\nlatent plane by the mode its decode lands in (white: none; "
                "colour: the mean's place in the data); dashed: 2 std of N(0, I); circles: a learned prior's "
                "regions, 2 std", draw)  # fmt: skip


def summarise(rows: list[dict], n_modes: int, methods: list[str]) -> list[str]:
    """Final figures, convergence and stability per method, across seeds."""
    lines = [
        "| method | seeds | final modes mean ± sd [min, max] | seeds with all / >= M-1 modes"
        " | final high quality mean [min, max] | final reverse KL | updates to M-1 modes (median; never)"
        " | checks below M-1 after reaching it | learned mixture: final modes, high quality"
        " | discriminator mixture: final modes [min, max], high quality [min, max]"
        " | region sampler from the discriminator: final modes [min, max], high quality [min, max]"
        " | N(0, I) (where the prior is another): final modes, high quality"
        " | within-mode std / true std |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        runs = {}
        for r in rows:
            if r["method"] == method:
                runs.setdefault(r["seed"], []).append(r)
        if not runs:
            continue
        finals = [max(rs, key=lambda r: r["updates"]) for rs in runs.values()]
        modes = np.array([f["modes_covered"] for f in finals], float)
        hq = np.array([f["high_quality_fraction"] for f in finals])
        rkl = np.array([f["reverse_kl"] for f in finals], float)
        reach, drops = [], 0
        for rs in runs.values():
            rs = sorted(rs, key=lambda r: r["updates"])
            hit = [r["updates"] for r in rs if r["modes_covered"] >= n_modes - 1]
            reach.append(hit[0] if hit else None)
            if hit:  # stability over time: checkpoints below M-1 after first reaching it
                drops += sum(r["modes_covered"] < n_modes - 1 for r in rs if r["updates"] > hit[0])
        reached = [u for u in reach if u is not None]
        sd = modes.std(ddof=1) if len(modes) > 1 else 0.0
        mean_rkl = np.nanmean(rkl) if np.isfinite(rkl).any() else float("nan")  # nan: no mode covered
        n_all, n_most = int((modes == n_modes).sum()), int((modes >= n_modes - 1).sum())
        lines.append(
            f"| {method} | {len(finals)} | {modes.mean():.1f} ± {sd:.1f}"
            f" [{modes.min():.0f}, {modes.max():.0f}] | {n_all} / {n_most}"
            f" | {100 * hq.mean():.1f}% [{100 * hq.min():.1f}, {100 * hq.max():.1f}]"
            f" | {mean_rkl:.3f} | {np.median(reached) if reached else float('nan'):.0f};"
            f" {len(reach) - len(reached)} | {drops} | {_mixture(finals)}"
            f" | {_mixture(finals, 'dmix', True)} | {_mixture(finals, 'dreg', True)}"
            f" | {_mixture(finals, 'normal')} | {_mean(finals, 'within_mode_std')} |"
        )
    lines += ["", "| method | seed | modes | high quality | learned mixture | discriminator mixture"
              " | region sampler from the discriminator | N(0, I) | within-mode std / true std |",
              "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for method in methods:
        finals = {}
        for r in rows:
            if r["method"] == method and r["updates"] >= finals.get(r["seed"], {}).get("updates", -1):
                finals[r["seed"]] = r
        for seed, f in sorted(finals.items()):
            lines.append(
                f"| {method} | {seed:.0f} | {f['modes_covered']:.0f}"
                f" | {100 * f['high_quality_fraction']:.1f}%"
                f" | {_mixture([f])} | {_mixture([f], 'dmix')} | {_mixture([f], 'dreg')}"
                f" | {_mixture([f], 'normal')} | {_mean([f], 'within_mode_std')} |"
            )
    return lines


def _mean(finals: list[dict], key: str) -> str:
    values = [f.get(key, "") for f in finals]
    if any(v == "" for v in values):
        return "–"
    return f"{np.mean(np.asarray(values, float)):.2f}"


def _mixture(finals: list[dict], prefix: str = "mixture", spread: bool = False) -> str:
    if any(f.get(f"{prefix}_modes_covered", "") == "" for f in finals):
        return "–"
    modes = np.array([f[f"{prefix}_modes_covered"] for f in finals], float)
    hq = 100 * np.array([f[f"{prefix}_high_quality_fraction"] for f in finals], float)
    if len(finals) == 1:
        return f"{modes[0]:.0f}, {hq[0]:.1f}%"
    hq_span = f" [{hq.min():.1f}, {hq.max():.1f}]" if spread else ""
    return f"{modes.mean():.1f} [{modes.min():.0f}, {modes.max():.0f}], {hq.mean():.1f}%{hq_span}"


def plot(
    rows: list[dict],
    n_modes: int,
    methods: list[str],
    path: Path,
    title: str,
    warmup: int | None,
    budget: int,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        updates = sorted({r["updates"] for r in mine})
        seeds = sorted({r["seed"] for r in mine})
        for ax, key, scale in ((axes[0], "modes_covered", 1), (axes[1], "high_quality_fraction", 100)):
            grid = np.full((len(seeds), len(updates)), np.nan)
            for r in mine:
                grid[seeds.index(r["seed"]), updates.index(r["updates"])] = scale * r[key]
            mean = np.nanmean(grid, 0)
            c = COLOURS.get(method)
            ax.plot(updates, mean, marker="o", ms=3, c=c, label=f"{method} (mean of {len(seeds)} seeds)")
            ax.fill_between(updates, np.nanmin(grid, 0), np.nanmax(grid, 0), color=c, alpha=0.2)
    axes[0].axhline(n_modes, c="black", lw=0.8)
    axes[0].set_ylabel(f"modes covered ({budget:,} prior samples)")
    axes[1].set_ylabel("high-quality samples (%)")
    for ax in axes:
        ax.set_xlabel("generator updates")
        if warmup:
            ax.axvline(warmup, ls=":", c="gray")
    axes[0].legend(fontsize=8, title="band: min-max over seeds", title_fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenario")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run (e.g. cache_dir=...)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=["conventional", "guided"], choices=sorted(METHODS))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--model-only", action="store_true", help="train the model only (no team, no report)")
    args = parser.parse_intermixed_args(argv)
    progress = sys.stderr.isatty()  # bars on a terminal; a log gets the per-round and per-run lines
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = load_scenario(args.scenario, args.overrides)
    rows_path = args.out / "curves.csv"
    rows = list(csv.DictReader(rows_path.open())) if rows_path.exists() else []
    rows = [{k: (v if k == "method" or v == "" else float(v)) for k, v in r.items()} for r in rows]
    done = {(r["method"], int(r["seed"])) for r in rows}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for method in args.methods:
            if (method, seed) in done:  # rerunning the command resumes where it stopped
                continue
            start = time.perf_counter()
            print(f"{method} seed {seed}: training {cfg.model.train_steps} generator updates ...", flush=True)
            curve = run_one(args.scenario, method, seed, args.out, args.overrides, args.model_only, progress)
            for r in curve:
                rows.append({"method": method, "seed": seed, **{k: r.get(k, "") for k in FIELDS}})
            _write_rows(rows_path, rows)
            last = curve[-1]
            print(f"{method} seed {seed}: {last['modes_covered']}/{last['modes_total']} modes, "
                  f"{100 * last['high_quality_fraction']:.1f}% high quality after {last['updates']} updates; "
                  f"mixture {_mixture([last])}; discriminator mixture {_mixture([last], 'dmix')} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
    if not rows:
        parser.error("no runs to summarise")
    n_modes = int(rows[0]["modes_total"])
    methods = [m for m in args.methods if any(r["method"] == m for r in rows)]
    summary = summarise(rows, n_modes, methods)
    warmup = cfg.model.guided.warmup_steps
    model = cfg.model
    title = f"{cfg.name}: {model.kind} ({model.hidden}x{model.depth}), {model.train_steps} generator updates"
    plot(rows, n_modes, methods, args.out / "curves.png", title, warmup, cfg.eval.budget)
    finals = load_final_samples(args.out, methods)
    if finals:
        plot_final_samples(finals, args.out / "samples.png", title)
        plot_latent_maps(finals, args.out / "latent_map.png", title)
        summary += bands_table(finals) + islands_table(finals)
    (args.out / "summary.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    return 0


def _write_rows(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["method", "seed", *FIELDS])
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
