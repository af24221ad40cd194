"""Pictures of an image run: what each agent specialised in, beside the plain model's samples.

- ``team_grid.png``: row i = generator_i's delivered samples (torchvision ``make_grid``);
- ``prior_grid.png``: the plain model's prior samples, same layout;
- ``grids.png``: both side by side, each agent's row labelled with its commonest classes;
- ``mode_shares.png``: each agent's share of every mode's delivered samples (matplotlib).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torchvision.utils import make_grid, save_image  # noqa: E402

PER_ROW = 12  # samples shown per agent
TILE = 32  # small images are upscaled (nearest) to at least this many pixels a side


def write_pictures(run_dir: Path, rollouts: dict, parts, n_generators: int) -> list[str]:
    """All image-run pictures into ``run_dir``; returns their file names for the report."""
    team, prior = rollouts["team"], rollouts["prior"]
    names = mode_names(parts)
    team_rows = [team.samples[team.accepted & (team.agent == i)] for i in range(n_generators)]
    prior_rows = [prior.samples[i * PER_ROW : (i + 1) * PER_ROW] for i in range(n_generators)]
    shape = prior.samples.shape[1:]  # (C, H, W)
    team_grid, prior_grid = grid(team_rows, shape), grid(prior_rows, shape)
    save_image(team_grid, run_dir / "team_grid.png")
    save_image(prior_grid, run_dir / "prior_grid.png")
    labels = [row_label(i, team.modes[team.accepted & (team.agent == i)], names) for i in range(n_generators)]
    plot_grids(run_dir / "grids.png", prior_grid, team_grid, labels)
    plot_mode_shares(run_dir / "mode_shares.png", team, prior, parts.assigner.n_modes, n_generators, names)
    return ["grids.png", "mode_shares.png", "team_grid.png", "prior_grid.png"]


def grid(rows: list[np.ndarray], shape: tuple[int, ...]) -> torch.Tensor:
    """One row per list entry of images (k, C, H, W) in [-1, 1] (up to PER_ROW, evenly spread over
    the rollout; short or empty rows padded with blank grey tiles) -> a (3, H', W') grid in [0, 1]."""
    tiles = []
    for r in rows:
        picked = r[np.linspace(0, len(r) - 1, min(PER_ROW, len(r))).astype(int)] if len(r) else r
        blank = np.zeros((PER_ROW - len(picked), *shape), np.float32)  # 0: mid grey in [-1, 1]
        tiles.append(np.concatenate([picked.astype(np.float32), blank]))
    x = torch.from_numpy(np.concatenate(tiles))  # (rows * PER_ROW, C, H, W)
    scale = max(1, TILE // x.shape[-1])
    if scale > 1:
        x = F.interpolate(x, scale_factor=scale, mode="nearest")
    return make_grid(x, nrow=PER_ROW, padding=2, normalize=True, value_range=(-1, 1), pad_value=1.0)


def mode_names(parts) -> list[str]:
    """A name per mode: class names, or three digits for stacked digits, or cell numbers."""
    n, names = parts.assigner.n_modes, tuple(getattr(parts.dataset, "class_names", ()))
    if len(names) == n:
        return list(names)
    if n == 1000:
        return [f"{m:03d}" for m in range(n)]
    return [f"cell {m}" for m in range(n)]


def row_label(i: int, modes: np.ndarray, names: list[str]) -> str:
    """``generator_i: cat 60%, dog 20% (25 of 40 delivered)`` over the agent's delivered samples."""
    if not len(modes):
        return f"generator_{i}: nothing delivered"
    good = modes[modes >= 0]
    top = Counter(good.tolist()).most_common(2)
    parts = ", ".join(f"{names[m]} {100 * c / len(modes):.0f}%" for m, c in top)
    return f"generator_{i}: {parts or 'no confident class'} ({len(good)} of {len(modes)} confident)"


def plot_grids(path: Path, prior_grid: torch.Tensor, team_grid: torch.Tensor, labels: list[str]) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.55 * len(labels) + 1.6), gridspec_kw={"wspace": 0.05})
    for ax, g, title in ((axes[0], prior_grid, "plain model, prior samples"),
                         (axes[1], team_grid, "trained team: one row per generator")):  # fmt: skip
        ax.imshow(g.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(title)
        ax.set_xticks([])
        rows = len(labels)
        ax.set_yticks((np.arange(rows) + 0.5) * g.shape[1] / rows)
        ax.set_yticklabels(labels if ax is axes[1] else [f"{r + 1}" for r in range(rows)], fontsize=8)
    axes[1].yaxis.tick_right()  # the agents' labels go right of their rows, clear of the prior's grid
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def agent_mode_counts(rollout, n_modes: int, n_generators: int) -> np.ndarray:
    """(N, M) delivered samples of each agent in each mode (no-mode samples left out)."""
    ok = rollout.accepted & (rollout.modes >= 0) & (rollout.agent >= 0)
    counts = np.zeros((n_generators, n_modes), np.int64)
    np.add.at(counts, (rollout.agent[ok], rollout.modes[ok]), 1)
    return counts


def plot_mode_shares(path: Path, team, prior, n_modes: int, n_generators: int, names: list[str]) -> None:
    """Few modes: one bar per mode split by agent share, with counts; many modes (stacked digits):
    a heat map of shares over the covered modes, ordered by their main agent."""
    counts = agent_mode_counts(team, n_modes, n_generators)  # (N, M)
    per_mode = counts.sum(0)  # (M,)
    prior_counts = np.bincount(prior.modes[prior.modes >= 0], minlength=n_modes)
    cmap = plt.get_cmap("tab10" if n_generators <= 10 else "tab20", max(n_generators, 2))
    share = counts / np.maximum(per_mode, 1)  # (N, M)
    if n_modes <= 40:
        fig, ax = plt.subplots(figsize=(max(7, 0.6 * n_modes + 3), 4.2))
        bottom = np.zeros(n_modes)
        for i in range(n_generators):
            ax.bar(np.arange(n_modes), share[i], bottom=bottom, color=cmap(i), label=f"generator_{i}")
            bottom += share[i]
        for m in range(n_modes):
            ax.text(m, 1.02, f"{per_mode[m]}\n({prior_counts[m]})", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(np.arange(n_modes), names, rotation=45 if max(map(len, names)) > 3 else 0, fontsize=8)
        ax.set_ylim(0, 1.18)
        ax.set_ylabel("share of the mode's delivered team samples")
        ax.set_title(
            "Who covers which mode (above: team samples, (prior samples) at the same budget)", fontsize=9
        )
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    else:
        covered = np.flatnonzero(per_mode)
        order = covered[np.lexsort((-per_mode[covered], share[:, covered].argmax(0)))]
        fig, axes = plt.subplots(2, 1, figsize=(12, 6), height_ratios=[2, 1])
        axes[0].imshow(
            share[:, order], aspect="auto", cmap="viridis", interpolation="nearest", vmin=0, vmax=1
        )
        axes[0].set_yticks(
            np.arange(n_generators), [f"generator_{i}" for i in range(n_generators)], fontsize=7
        )
        axes[0].set_xlabel(f"the {len(covered)} of {n_modes} modes the team covers, grouped by main agent")
        axes[0].set_title("each agent's share of every covered mode (colour: 0 to 1)", fontsize=9)
        axes[1].plot(np.sort(per_mode)[::-1], label=f"team ({len(covered)} modes)")
        axes[1].plot(np.sort(prior_counts)[::-1], label=f"prior ({int((prior_counts > 0).sum())} modes)")
        axes[1].set_xlabel("modes, most sampled first")
        axes[1].set_ylabel("samples")
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
