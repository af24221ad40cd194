"""RL-guided training of a GAN: the team's latent regions and diversity reward steer the model's updates.

``model.training=guided`` (docs/guided.md). After ``guided.warmup_steps`` conventional updates
(cached like any pretraining), each of ``guided.rounds`` rounds does:

1. **Agents.** The team trains on the current, frozen model (``guided.agent_epochs`` epochs; the
   team carries on from the last round) and is rolled out for ``eval.budget`` samples.
2. **What the team tells the model** (:class:`RoundPlan`):
   - *regions*: the anchors whose samples the team delivered as high quality;
   - *vacancies*: each mode the team never covered gets a region at the free anchor whose decode
     lies nearest to that mode's real samples (a mode the model has lost has no latents left);
   - *mode weights*: the shared diversity reward one more sample of mode j would earn the team,
     ``r_j = G(h + e_j) - G(h)`` for its mean episode histogram h (marlgen.rewards.objective),
     turned into sampling weights ``exp(eta * M * r_j)`` for real samples of mode j (reward-weighted
     regression, Peters & Schaal 2007; AdaGAN's reweighting of the data the model misses).
3. **Model.** ``(train_steps - warmup_steps) / rounds`` generator updates, each:
   - real batch drawn with the mode weights; fake batch from a learned mixture prior: N(0, I), as
     conventional, plus ``region_fraction`` times as many latents around the regions' anchors
     (``region_spread``);
   - discriminator: the usual loss, real against all those fakes (it is the critic the generator
     can take gradients through; the critic agent's judge is the evaluation's ground truth on toy
     data, and must not train the model);
   - region classifier (MGAN's classifier, Hoang et al. 2018): predicts which region (anchor) a
     region sample came from;
   - generator: non-saturating loss plus ``specialisation`` times the classifier's cross-entropy,
     so every region keeps, or finds, an output no other region makes: distinct modes.
4. **Measure.** The model's prior at ``eval.budget`` samples (the same figures as the conventional
   learning curve, ``model.curve_every``), the same under N(0, I) plus the regions (``mixture_*``), and
   what the team reached.

``sampler=regions`` makes the regions the model's own prior (marlgen.models.latent_prior): after each
round the model samples N(anchor, ``region_spread``^2 I) of a region drawn in its mode's share of the
data; region latents are drawn in those weights, the ``consolidate`` updates train on them alone, and
``normal_*`` keeps the N(0, I) figures beside the prior's. Otherwise the prior stays N(0, I).

``signal=greedy`` replaces the agents by a greedy pick over every anchor's decode (one anchor per
reachable mode), the ablation that asks what the agents add.

``quality`` names what "a good sample" means to the rounds. ``assigner`` (the default): the mode
assigner's verdict, which on toy data is the evaluation's own 3-std rule. ``discriminator``: the
GAN's own discriminator (:class:`DiscriminatorGate`): a sample is good when its logit is at least the
``disc_quantile`` quantile of the logits of real samples, and its mode is the assigner's label
without the quality bar (nearest mean; the classifier's class). The team's env, its critic's judge,
the regions and the vacancies then never consult the evaluation's quality rule, so the learned
mixture prior (N(0, I) plus the regions) is a sampler of the guided model that can be reported
beside N(0, I) (:func:`mixture_figures`); :func:`greedy_mixture_figures` gives any GAN, the
conventional one included, the same kind of sampler from its discriminator and the labels.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor

from marlgen import metrics
from marlgen.build import Parts, make_env
from marlgen.config import ConfigError
from marlgen.errors import CheckpointError
from marlgen.evaluate import Rollout, prior_figures, steer
from marlgen.models.pretrain import model_config_dict, save_model_checkpoint
from marlgen.rewards import objective


@dataclass
class RoundPlan:
    """What one agents phase tells the model update."""

    regions: np.ndarray  # (R,) anchor indices the generator trains around: the team's, then vacancies
    n_vacancies: int  # the last n_vacancies regions were given to modes nobody covered
    covered: np.ndarray  # (M,) bool: the team (or the greedy pick) delivered the mode
    histogram: np.ndarray  # (M,) mean episode histogram that set the weights
    mode_weights: np.ndarray  # (M,) relative draw weight of each mode's real samples
    # (R,) the mode each region stands for: the mode its anchor delivered most, a vacancy's lost mode
    # (specialise_to=mode pulls each region's samples towards it); None where not known.
    region_modes: np.ndarray | None = None


@dataclass
class GuidedResult:
    history: list[dict]  # one row per measurement: warm-up end, then each round
    team_states: dict  # the last round's team (role -> state dict): the final training carries on
    seconds: float


def mode_labels(assigner):
    """The assigner's mode label of every sample regardless of quality: the nearest mixture mean
    (toy data), the classifier's or k-means' class (images). Raises ConfigError for other assigners."""
    nearest = getattr(assigner, "nearest", None)
    if nearest is not None:
        return lambda x: nearest(np.asarray(x))[0]
    classes = getattr(assigner, "classes", None)
    if classes is not None:
        return classes
    raise ConfigError(
        f"model.guided.quality='discriminator' needs a mode assigner that labels every sample "
        f"(mixture, classifier or kmeans); {type(assigner).__name__} does not: use quality=assigner"
    )


class DiscriminatorGate:
    """The GAN's own discriminator as the rounds' quality verdict, calibrated on real data only.

    ``threshold`` is the ``quantile`` quantile of the discriminator's logits on the real samples (0.05:
    95% of real samples pass), computed once per round on the frozen model, so the bar moves with the
    discriminator and never looks at the evaluation's rule.
    """

    def __init__(self, model, real: np.ndarray, quantile: float):
        self.model = model
        self.threshold = float(np.quantile(self.logit(real), quantile))

    def logit(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model.discriminate(torch.as_tensor(np.asarray(x, np.float32))).double().numpy()

    def passes(self, x: np.ndarray) -> np.ndarray:
        return self.logit(x) >= self.threshold


class GatedModes:
    """A mode assigner for the rounds: the assigner's label where the gate passes a sample, else -1."""

    def __init__(self, assigner, gate: DiscriminatorGate):
        self.labels, self.gate = mode_labels(assigner), gate
        self.n_modes = assigner.n_modes
        self.name = "mode label where the GAN's discriminator passes the sample"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        return np.where(self.gate.passes(x), self.labels(x), -1).astype(np.int64)


class GateJudge:
    """The critic's judge for the rounds: sigmoid(logit - threshold), so 0.5 is the gate's bar (as 0.5
    is the 3-std line of the oracle judge). It does not learn while the team trains: the model is frozen."""

    name = "the GAN's discriminator (guided rounds)"

    def __init__(self, gate: DiscriminatorGate):
        self.gate = gate

    def score(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.gate.logit(x) - self.gate.threshold)))

    def update(self, fake: np.ndarray, rng: np.random.Generator) -> None:
        """Frozen for the round."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing learned, nothing to restore."""


def round_parts(parts: Parts, gcfg, real: np.ndarray) -> Parts:
    """The parts the round's team and plan see: ``parts`` for quality=assigner; for discriminator, the
    same model and data with the gate as mode verdict and judge (recalibrated on the current model)."""
    if gcfg.quality == "assigner":
        return parts
    gate = DiscriminatorGate(parts.model, real, gcfg.disc_quantile)
    return dataclasses.replace(parts, assigner=GatedModes(parts.assigner, gate), judge=GateJudge(gate))


def reward_weights(histogram: np.ndarray, reward_cfg, eta: float) -> np.ndarray:
    """``exp(eta * M * r_j)`` with r_j the team objective's gain from one more sample of mode j."""
    n_modes = len(histogram)
    g = lambda h: objective(h, reward_cfg.coverage, reward_cfg.entropy)  # noqa: E731
    gains = g(histogram[None, :] + np.eye(n_modes)) - g(histogram)  # (M,)
    w = np.exp(eta * n_modes * (gains - gains.max()))  # shifted: only ratios matter
    return w / w.mean()


def region_weights(plan: RoundPlan, real_modes: np.ndarray, n_modes: int) -> np.ndarray:
    """(R,) each region's share of the learned prior (``sampler=regions``): the share of the real samples
    in the mode it stands for, split evenly among that mode's regions, so the prior's modes come in the
    data's proportions."""
    if len(plan.regions) == 0:
        raise ValueError(
            "model.guided.sampler=regions: the round named no region (the team delivered no good sample "
            "and vacancies are off), so there is no mixture to sample: set model.guided.vacancies=true"
        )
    share = np.bincount(real_modes[real_modes >= 0], minlength=n_modes).astype(np.float64)
    share /= share.sum()
    modes = np.asarray(plan.region_modes, np.int64)
    per_region = share[modes] / np.bincount(modes, minlength=n_modes)[modes]
    return per_region / per_region.sum()


def normal_figures(model, assigner, budget: int, seed: int) -> dict:
    """The prior figures of N(0, I) latents whatever the model's own prior (``normal_*`` keys): the
    same draw as :func:`marlgen.evaluate.prior_figures` of a model whose prior is N(0, I)."""
    z = torch.randn(budget, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        modes = assigner(model.decode(z).numpy())
    figures = metrics.mode_figures(modes, assigner.n_modes)
    return {f"normal_{k}": v for k, v in figures.items() if k != "modes_total"}


def decode_anchors(model, anchors: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model.decode(torch.as_tensor(anchors)).numpy()  # (K, *data_shape)


def mode_centroids(real: np.ndarray, real_modes: np.ndarray, n_modes: int) -> np.ndarray:
    """(M, D) mean of each mode's real samples, flattened (nan where a mode has none)."""
    flat = real.reshape(len(real), -1).astype(np.float64)
    sums = np.zeros((n_modes, flat.shape[1]))
    np.add.at(sums, real_modes[real_modes >= 0], flat[real_modes >= 0])
    counts = np.bincount(real_modes[real_modes >= 0], minlength=n_modes)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def vacancy_regions(
    decoded: np.ndarray,
    decoded_modes: np.ndarray,
    taken: np.ndarray,
    uncovered: np.ndarray,
    centroids: np.ndarray,
) -> list[int]:
    """For each uncovered mode, a free anchor whose decode is nearest its real samples' centroid.

    Anchors that decode into no mode (``decoded_modes`` -1: the seams between modes) go first: moving
    one onto a lost mode turns wasted samples into good ones instead of taking mass from a mode.
    """
    return [k for k, _ in vacancy_pairs(decoded, decoded_modes, taken, uncovered, centroids)]


def vacancy_pairs(decoded, decoded_modes, taken, uncovered, centroids) -> list[tuple[int, int]]:
    """:func:`vacancy_regions` as (anchor, the lost mode it was given) pairs."""
    flat = decoded.reshape(len(decoded), -1)
    free = np.ones(len(decoded), bool)
    free[np.asarray(taken, np.int64)] = False  # an empty list of regions arrives as float
    out = []
    for j in uncovered:
        if not free.any() or not np.all(np.isfinite(centroids[j])):
            continue
        candidates = free & (decoded_modes < 0) if (free & (decoded_modes < 0)).any() else free
        dist = np.where(candidates, ((flat - centroids[j]) ** 2).sum(1), np.inf)
        k = int(np.argmin(dist))
        out.append((k, int(j)))
        free[k] = False
    return out


def plan_from_team(
    rollout: Rollout,
    histograms: list[np.ndarray],
    decoded: np.ndarray,
    decoded_modes: np.ndarray,
    centroids,
    n_modes,
    gcfg,
    reward_cfg,
    previous: RoundPlan | None = None,
) -> RoundPlan:
    good = rollout.accepted & (rollout.modes >= 0)
    covered = np.zeros(n_modes, bool)
    covered[np.unique(rollout.modes[good])] = True
    histogram = (
        np.mean(histograms, axis=0) if histograms else np.bincount(rollout.modes[good], minlength=n_modes)
    )
    if gcfg.regions == "per_mode":
        regions, region_modes = per_mode_pairs(
            rollout.choice[good], rollout.modes[good], len(decoded), n_modes
        )
    else:
        regions = np.unique(rollout.choice[good])
        region_modes = np.asarray(
            [np.bincount(rollout.modes[good & (rollout.choice == k)]).argmax() for k in regions], np.int64
        )  # the mode each region's anchor delivered most
    return _plan(regions, covered, histogram, decoded, decoded_modes, centroids, gcfg, reward_cfg,
                 region_modes, previous)  # fmt: skip


def per_mode_pairs(choice: np.ndarray, modes: np.ndarray, n_anchors: int, n_modes: int):
    """One region per delivered mode, each on its own anchor: (anchor, mode) pairs taken greedily by how
    many good samples the anchor delivered of the mode, so every mode gets the anchor that delivered it
    most unless a mode it delivered more already holds that anchor (then its next best). An anchor
    whose samples straddle two modes cannot stand for both: one latent patch can be only one mode. A
    delivered mode whose every anchor is held gets no region here and becomes a vacancy (``_plan``)."""
    counts = np.zeros((n_modes, n_anchors), np.int64)
    np.add.at(counts, (modes, choice), 1)
    pairs, mode_free, anchor_free = [], np.ones(n_modes, bool), np.ones(n_anchors, bool)
    for flat in np.argsort(-counts, axis=None, kind="stable"):
        j, k = divmod(int(flat), n_anchors)
        if counts[j, k] == 0:
            break
        if mode_free[j] and anchor_free[k]:
            pairs.append((k, j))
            mode_free[j] = anchor_free[k] = False
    pairs.sort(key=lambda p: p[1])  # by mode, as before
    return np.asarray([k for k, _ in pairs], np.int64), np.asarray([j for _, j in pairs], np.int64)


def plan_greedy(decoded_modes: np.ndarray, decoded, centroids, n_modes, episode_budget, gcfg, reward_cfg,
                previous: RoundPlan | None = None):  # fmt: skip
    """No agents: one anchor per mode some anchor decodes into (the one nearest the mode's centroid)."""
    flat = decoded.reshape(len(decoded), -1)
    regions = []
    for j in np.unique(decoded_modes[decoded_modes >= 0]):
        mine = np.flatnonzero(decoded_modes == j)
        regions.append(int(mine[np.argmin(((flat[mine] - centroids[j]) ** 2).sum(1))]))
    covered = np.zeros(n_modes, bool)
    covered[np.unique(decoded_modes[decoded_modes >= 0])] = True
    histogram = covered * (episode_budget / max(covered.sum(), 1))  # a team spreading its budget evenly
    regions = np.asarray(regions, np.int64)
    region_modes = np.unique(decoded_modes[decoded_modes >= 0])  # one region per mode, in this order
    return _plan(regions, covered, histogram, decoded, decoded_modes, centroids, gcfg, reward_cfg,
                 region_modes, previous)  # fmt: skip


def kept_pairs(previous: RoundPlan, regions, region_modes) -> list[tuple[int, int]]:
    """keep_regions: last round's (anchor, mode) pairs, then this round's for modes not yet held, on
    anchors not yet taken, so the latent patch the model learnt for a mode stays that mode's."""
    kept = list(zip(previous.regions.tolist(), previous.region_modes.tolist(), strict=True))
    held, taken = {j for _, j in kept}, {k for k, _ in kept}
    return kept + [
        (k, j)
        for k, j in zip(regions.tolist(), region_modes.tolist(), strict=True)
        if j not in held and k not in taken
    ]


def _plan(regions, covered, histogram, decoded, decoded_modes, centroids, gcfg, reward_cfg,
          region_modes, previous: RoundPlan | None = None) -> RoundPlan:  # fmt: skip
    if previous is None:
        pairs = list(zip(regions.tolist(), region_modes.tolist(), strict=True))
    else:
        pairs = kept_pairs(previous, regions, region_modes)
    # Regions on modes nobody delivered this round count as vacancies, kept ones first, and come last.
    delivered = [p for p in pairs if covered[p[1]]]
    lost = [p for p in pairs if not covered[p[1]]]
    held = {j for _, j in pairs}
    # Modes nobody delivered, and (per_mode) delivered modes left without an anchor of their own.
    homeless = covered & (gcfg.regions == "per_mode")
    uncovered = np.asarray([j for j in np.flatnonzero(~covered | homeless) if j not in held], np.int64)
    taken = np.asarray([k for k, _ in pairs], np.int64)
    vacant = vacancy_pairs(decoded, decoded_modes, taken, uncovered, centroids) if gcfg.vacancies else []
    pairs = delivered + lost + vacant
    return RoundPlan(
        regions=np.asarray([k for k, _ in pairs], np.int64),
        n_vacancies=len(lost) + len(vacant),
        covered=covered,
        histogram=np.asarray(histogram, np.float64),
        mode_weights=reward_weights(np.asarray(histogram, np.float64), reward_cfg, gcfg.reward_weight),
        region_modes=np.asarray([j for _, j in pairs], np.int64),
    )


class GuidedUpdater:
    """The model phase: generator updates on the regions' mixture prior, the region classifier and
    reward-weighted real samples (see the module docstring)."""

    def __init__(self, model, real: np.ndarray, real_modes: np.ndarray, anchors: np.ndarray, gcfg, model_cfg,
                 seed: int):  # fmt: skip
        self.model, self.gcfg = model, gcfg
        self.batch_size = model_cfg.batch_size
        self.real = torch.as_tensor(real)  # (n, *data_shape)
        self.real_modes = torch.as_tensor(real_modes)  # (n,) -1: no mode
        self.anchors = torch.as_tensor(anchors)  # (K, latent_dim)
        self.n_modes = int(real_modes.max()) + 1 if len(real_modes) else 0
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            # specialise_to=region: which anchor's region made this sample (MGAN); mode: which mode a
            # sample is, learnt from labelled real samples (AC-GAN).
            self.head = model.make_head(self.n_modes if gcfg.specialise_to == "mode" else len(anchors))
        self.optimizers = model.make_optimizers(model_cfg.lr)
        if gcfg.continue_optimizers:  # the warm-up's Adam moments: the rounds carry on its training
            states = getattr(model, "optimizer_states", None)
            if states is None:
                raise CheckpointError(
                    "model.guided.continue_optimizers=true needs the warm-up's optimiser states, which this "
                    "cached warm-up model predates: delete its file in cache_dir to retrain it, or set "
                    "model.guided.continue_optimizers=false"
                )
            for name, optimizer in self.optimizers.items():
                optimizer.load_state_dict(states[name])
        self.head_optimizer = torch.optim.Adam(self.head.parameters(), lr=model_cfg.lr, betas=(0.5, 0.999))
        self.generator = torch.Generator().manual_seed(seed)

    def run(self, n_updates: int, plan: RoundPlan, sampler_only: bool = False,
            region_draw: np.ndarray | None = None) -> dict[str, float]:  # fmt: skip
        """``n_updates`` generator updates; the model is trainable inside and frozen again after.
        ``sampler_only``: the discriminator trains against the model's own sampler alone (``consolidate``):
        the N(0, I) fakes, or (``sampler=regions``) region latents only. ``region_draw`` (R,): each
        region's share of the region latents (None: uniform)."""
        w = torch.as_tensor(plan.mode_weights, dtype=torch.float32)
        draw = torch.where(self.real_modes >= 0, w[self.real_modes.clamp_min(0)], torch.ones(()))  # (n,)
        regions = torch.as_tensor(plan.regions)
        targets = None
        if self.gcfg.specialise_to == "mode":
            if plan.region_modes is None or len(plan.region_modes) != len(plan.regions):
                raise ValueError("specialise_to=mode needs the plan's region_modes, one per region")
            targets = torch.as_tensor(plan.region_modes)
        pulled = None  # specialise_regions=vacancies: the regions the specialisation term acts on
        if self.gcfg.specialise_regions == "vacancies":
            pulled = torch.arange(len(regions)) >= len(regions) - plan.n_vacancies  # vacancies come last
        region_draw = None if region_draw is None else torch.as_tensor(region_draw, dtype=torch.float32)
        self.model.train()  # batch norm (conv GANs) trains on batch statistics, as in pretraining
        self.model.requires_grad_(True)
        losses: dict[str, float] = {}
        try:
            for _ in range(n_updates):
                losses = self.step(draw, regions, sampler_only, targets, pulled, region_draw)
        finally:
            self.model.eval()
            self.model.requires_grad_(False)
        return losses

    def step(self, draw: Tensor, regions: Tensor, sampler_only: bool = False,
             targets: Tensor | None = None, pulled: Tensor | None = None,
             region_draw: Tensor | None = None) -> dict[str, float]:  # fmt: skip
        """One update. ``targets`` (specialise_to=mode): the mode each region stands for; ``pulled``
        (R,) bool: the regions the specialisation term acts on (None: all); ``region_draw`` (R,): the
        regions' shares (None: uniform)."""
        model, g, b = self.model, self.generator, self.batch_size
        real_idx = torch.multinomial(draw, b, replacement=True, generator=g)  # (B,)
        real = self.real[real_idx]  # (B, *data_shape)
        # sampler=regions, consolidating: the whole fake batch comes from the regions, the model's sampler.
        regions_only = sampler_only and self.gcfg.sampler == "regions" and len(regions) > 0
        n_prior = 0 if regions_only else b
        n_reg = (b if regions_only else int(round(b * self.gcfg.region_fraction))) if len(regions) else 0
        if region_draw is None:
            pick = torch.randint(len(regions), (n_reg,), generator=g)  # (R,) region of each region latent
        else:
            pick = torch.multinomial(region_draw, max(n_reg, 1), replacement=True, generator=g)[:n_reg]
        label = regions[pick]  # (R,) anchor of each region latent
        noise = self.gcfg.region_spread * torch.randn(n_reg, model.latent_dim, generator=g)
        z = torch.cat(
            [torch.randn(n_prior, model.latent_dim, generator=g), self.anchors[label] + noise]
        )  # (n_prior + R, d)
        fake = model.decode(z)  # (n_prior + R, *data_shape): prior samples, then region samples
        bce = F.binary_cross_entropy_with_logits

        # Real against every fake, region samples included: the model being trained is the generator
        # under the learned mixture prior, and that mixture is what must match the (reweighted) data.
        # sampler_only (the final ``consolidate`` updates): against the model's own sampler alone, the one
        # that is evaluated: the N(0, I) fakes (sampler=prior) or the regions (sampler=regions).
        judged = fake[:b] if sampler_only and not regions_only else fake
        logits_real, logits_fake = model.discriminate(real), model.discriminate(judged.detach())
        loss_d = bce(logits_real, torch.ones_like(logits_real)) + bce(
            logits_fake, torch.zeros_like(logits_fake)
        )
        _update(self.optimizers["discriminator"], loss_d)

        spec = n_reg > 0 and self.gcfg.specialisation > 0
        if spec and targets is not None:  # AC-GAN: the head learns the modes of labelled real samples
            labelled = self.real_modes[real_idx] >= 0
            loss_q = F.cross_entropy(self.head(real[labelled]), self.real_modes[real_idx][labelled])
            _update(self.head_optimizer, loss_q)
            label = targets[pick]  # the generator is pulled towards each region's mode
        elif spec:
            loss_q = F.cross_entropy(self.head(fake[n_prior:].detach()), label)
            _update(self.head_optimizer, loss_q)

        logits_gen = model.discriminate(fake)  # (n_prior + R,) non-saturating: prior and region samples alike
        loss_g = bce(logits_gen, torch.ones_like(logits_gen))
        out = {"loss_d": loss_d.item(), "loss_g": loss_g.item()}
        if spec:
            if pulled is None:
                loss_spec = F.cross_entropy(self.head(fake[n_prior:]), label)
            else:  # only the pulled regions' samples, each weighted as in the mean over all
                sel = pulled[pick]
                loss_spec = (
                    F.cross_entropy(self.head(fake[n_prior:][sel]), label[sel], reduction="sum") / n_reg
                    if bool(sel.any())
                    else torch.zeros(())
                )
            loss_g = loss_g + self.gcfg.specialisation * loss_spec
            out["loss_spec"] = loss_spec.item()
        _update(self.optimizers["generator"], loss_g)
        model.update_average()  # model.ema: the average decodes for the team and the measurements
        return out


def _update(optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def mixture_figures(
    model, assigner, anchors: np.ndarray, plan: RoundPlan, gcfg, budget: int, seed: int
) -> dict:
    """Figures of ``budget`` samples from the learned mixture prior the round trained the generator on:
    N(0, I) and, in the proportion of training, latents around the plan's regions."""
    return {
        f"mixture_{k}": v
        for k, v in _region_mixture(model, assigner, anchors, plan.regions, gcfg, budget, seed).items()
        if k != "modes_total"
    }


def _region_mixture(model, assigner, anchors, regions, gcfg, budget: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    n_reg = round(budget * gcfg.region_fraction / (1 + gcfg.region_fraction)) if len(regions) else 0
    pick = torch.randint(max(len(regions), 1), (n_reg,), generator=g)
    label = torch.as_tensor(np.asarray(regions, np.int64))[pick]  # (n_reg,) anchor of each region latent
    z_region = torch.as_tensor(anchors)[label] + gcfg.region_spread * torch.randn(
        n_reg, model.latent_dim, generator=g
    )
    z = torch.cat([torch.randn(budget - n_reg, model.latent_dim, generator=g), z_region])
    with torch.inference_mode():
        modes = assigner(model.decode(z).numpy())
    return metrics.mode_figures(modes, assigner.n_modes)


def discriminator_regions(model, assigner, anchors: np.ndarray, real: np.ndarray, quantile: float):
    """One anchor per mode label, picked without the evaluation's quality rule: among the anchors whose
    decode passes the GAN's discriminator gate (:class:`DiscriminatorGate`), the one with the highest
    logit for each label. Any GAN has this, trained conventionally or guided."""
    gate = DiscriminatorGate(model, real, quantile)
    decoded = decode_anchors(model, anchors)
    logits, labels = gate.logit(decoded), mode_labels(assigner)(decoded)
    ok = logits >= gate.threshold
    regions = [int(np.flatnonzero(ok & (labels == j))[np.argmax(logits[ok & (labels == j)])])
               for j in np.unique(labels[ok])]  # fmt: skip
    return np.asarray(regions, np.int64)


def discriminator_region_figures(model, assigner, anchors, real, gcfg, budget: int, seed: int) -> dict:
    """A pure region sampler built after training for any GAN (``dreg_*`` keys): latents only around
    :func:`discriminator_regions`' anchors, each weighted by its label's share of the real samples,
    spread ``region_spread``. It is what ``sampler=regions`` gives a guided model, made from the GAN's own
    discriminator and the labels instead of the team, so a conventional GAN can be given it too."""
    regions = discriminator_regions(model, assigner, anchors, real, gcfg.disc_quantile)
    if len(regions) == 0:
        return {"dreg_regions": 0}
    labels = mode_labels(assigner)
    region_modes = labels(decode_anchors(model, anchors[regions]))
    real_labels = np.asarray(labels(real), np.int64)
    share = np.bincount(real_labels[real_labels >= 0], minlength=assigner.n_modes)[region_modes] + 1e-12
    g = torch.Generator().manual_seed(seed)
    weights = torch.as_tensor(share / share.sum(), dtype=torch.float32)
    pick = torch.multinomial(weights, budget, replacement=True, generator=g)
    z = torch.as_tensor(anchors[regions])[pick] + gcfg.region_spread * torch.randn(
        budget, model.latent_dim, generator=g
    )
    with torch.inference_mode():
        modes = assigner(model.decode(z).numpy())
    figures = metrics.mode_figures(modes, assigner.n_modes)
    out = {f"dreg_{k}": v for k, v in figures.items() if k != "modes_total"}
    return {**out, "dreg_regions": len(regions)}


def greedy_mixture_figures(model, assigner, anchors, real, gcfg, budget: int, seed: int) -> dict:
    """The same mixture sampler (N(0, I) plus ``region_fraction`` as many latents around regions) with
    the regions of :func:`discriminator_regions`: a sampler any GAN can be given from its own
    discriminator and the mode labels, for a like-for-like comparison (``dmix_*`` keys)."""
    regions = discriminator_regions(model, assigner, anchors, real, gcfg.disc_quantile)
    figures = _region_mixture(model, assigner, anchors, regions, gcfg, budget, seed)
    out = {f"dmix_{k}": v for k, v in figures.items() if k != "modes_total"}
    return {**out, "dmix_regions": len(regions)}


def round_config(gcfg, r: int):
    """Round r's settings. ``anneal=reward``: the reward weight falls linearly to ``anneal_to`` times its
    value (0 by default) by the last round,
    so the last updates fit the data as it is rather than reweighted, while the regions, vacancies and
    specialisation still hold every mode; ``anneal=all``: the specialisation falls with it."""
    if gcfg.anneal == "none" or gcfg.rounds < 2:
        return gcfg
    floor = gcfg.anneal_to  # the fraction of the guidance left in the last round
    scale = floor + (1 - floor) * (gcfg.rounds - r) / (gcfg.rounds - 1)
    annealed = {"reward_weight": gcfg.reward_weight * scale}
    if gcfg.anneal == "all":
        annealed["specialisation"] = gcfg.specialisation * scale
    return OmegaConf.merge(gcfg, annealed)


def round_sizes(total: int, rounds: int) -> list[int]:
    """``total`` updates split into ``rounds`` near-equal parts, the larger ones first."""
    return [total // rounds + (i < total % rounds) for i in range(rounds)]


def guide(cfg, parts: Parts, run_dir: Path, progress: bool = True, log=print) -> GuidedResult:
    """The guided rounds; ``parts.model`` (the warm-up model) is updated in place."""
    from marlgen.train import train

    gcfg, model, assigner = cfg.model.guided, parts.model, parts.assigner
    start = time.perf_counter()
    real = parts.dataset.samples
    # Real samples' modes: the assigner's verdict, or (quality=discriminator) its label alone, so the
    # rounds never apply the evaluation's quality rule, not even to real data.
    real_modes = assigner(real) if gcfg.quality == "assigner" else mode_labels(assigner)(real)
    centroids = mode_centroids(real, real_modes, assigner.n_modes)
    anchors = make_env(cfg, parts).anchors
    updater = GuidedUpdater(model, real, real_modes, anchors, gcfg, cfg.model, cfg.seed)
    round_cfg = OmegaConf.merge(cfg, {"train": {"epochs": gcfg.agent_epochs}})
    measure_seed = cfg.seed + 1  # the conventional curve's prior draws (marlgen.build)
    updates = gcfg.warmup_steps
    history = [
        {"round": 0, "updates": updates, **prior_figures(model, assigner, cfg.eval.budget, measure_seed)}
    ]
    team_states: dict = {}
    plan = None  # the last round's, which keep_regions carries on
    base_gcfg = gcfg
    for r, n_updates in enumerate(round_sizes(cfg.model.train_steps - updates, gcfg.rounds), start=1):
        gcfg = updater.gcfg = round_config(base_gcfg, r)
        rparts = round_parts(parts, gcfg, real)  # quality=discriminator: the gate, recalibrated
        env = make_env(cfg, rparts)
        decoded = decode_anchors(model, anchors)
        decoded_modes = rparts.assigner(decoded)
        row: dict = {"round": r}
        if gcfg.signal == "team":
            trained = train(
                round_cfg, rparts, run_dir / "guided" / f"round_{r}", progress, log, init=team_states
            )
            team_states = trained.states
            # greedy: the policy's most likely anchors (the same each episode); sample: anchors drawn from
            # the policy, as it acts in training, from the actor's own seeded random state.
            actor = trained.team.actor(gcfg.team_actions, seed=20_000 + 100 * r)
            rollout, histograms = steer(env, actor, cfg.eval.budget, seed=20_000 + 100 * r)
            plan = plan_from_team(
                rollout, histograms, decoded, decoded_modes, centroids, assigner.n_modes, gcfg,
                cfg.env.reward, previous=plan if gcfg.keep_regions else None,
            )  # fmt: skip
            row["team_modes_covered"] = int(plan.covered.sum())
            row["team_episode_modes"] = (
                float(np.mean([(h > 0).sum() for h in histograms])) if histograms else 0.0
            )
        else:
            budget = cfg.env.episode_budget
            plan = plan_greedy(
                decoded_modes, decoded, centroids, assigner.n_modes, budget, gcfg, cfg.env.reward,
                previous=plan if gcfg.keep_regions else None,
            )  # fmt: skip
        # sampler=regions: the regions, each weighted by its mode's share of the data, are the model's prior.
        region_draw = None
        if gcfg.sampler == "regions":
            region_draw = region_weights(plan, real_modes, assigner.n_modes)
        # The last gcfg.consolidate updates of all: the discriminator sees the model's own sampler alone.
        start_sampler_only = cfg.model.train_steps - gcfg.consolidate
        n_sampler_only = min(n_updates, max(0, updates + n_updates - start_sampler_only))
        losses = {}
        if n_updates > n_sampler_only:
            losses = updater.run(n_updates - n_sampler_only, plan, region_draw=region_draw)
        if n_sampler_only:
            losses = updater.run(n_sampler_only, plan, sampler_only=True, region_draw=region_draw)
        if region_draw is not None:
            model.latent_prior.set_mixture(anchors[plan.regions], region_draw, gcfg.region_spread)
        updates += n_updates
        row.update(
            updates=updates,
            **prior_figures(model, assigner, cfg.eval.budget, measure_seed),
            **normal_figures(model, assigner, cfg.eval.budget, measure_seed),
            **mixture_figures(model, assigner, anchors, plan, gcfg, cfg.eval.budget, measure_seed),
            **greedy_mixture_figures(model, assigner, anchors, real, gcfg, cfg.eval.budget, measure_seed),
            regions=len(plan.regions),
            vacancies=plan.n_vacancies,
            max_weight_ratio=float(plan.mode_weights.max() / plan.mode_weights.min()),
            seconds=round(time.perf_counter() - start, 1),
            **{k: round(v, 4) for k, v in losses.items()},
        )
        history.append(row)
        log(
            f"guided round {r}/{gcfg.rounds}: {updates} generator updates, prior covers "
            f"{row['modes_covered']}/{assigner.n_modes} modes, "
            f"{100 * row['high_quality_fraction']:.1f}% high quality; "
            f"{len(plan.regions)} regions ({plan.n_vacancies} vacancies)"
        )
    write_history(run_dir / "guided" / "history.json", history)
    # The model guidance trained, its learned prior included: marlgen.models.pretrain.load_model_checkpoint.
    save_model_checkpoint(run_dir / "guided" / "model.pt", model, model_config_dict(cfg.model),
                          {"seed": int(cfg.seed), "curve": history})  # fmt: skip
    return GuidedResult(history, team_states, time.perf_counter() - start)


def write_history(path: Path, history: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(history, indent=2) + "\n")
