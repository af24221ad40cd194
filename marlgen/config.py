"""Typed scenario schema, loading and validation.

A scenario is a YAML file. Its optional ``defaults`` block picks presets from ``configs/``
(``data: ring8`` merges ``configs/data/ring8.yaml`` into ``data``; ``agent: ppo`` merges
``configs/agent/ppo.yaml`` into both ``agents.generator`` and ``agents.critic``), the rest of the
file overrides them, and ``key=value`` arguments override everything (``agent=dqn`` re-picks a
preset). The dataclasses below are the schema: every field has a real default, so a config can be
built without any YAML at all (``Config()``).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
PRESET_GROUPS = ("data", "model", "agent")


class ConfigError(ValueError):
    """One clear message about bad scenario input: file, key, value given and the fix."""


@dataclass
class DataConfig:
    source: str = "ring"  # registry name in marlgen.data.SOURCES
    n_modes: int = 8  # ring: number of components
    radius: float = 1.0  # ring radius (PacGAN: 1)
    grid_size: int = 5  # grid: components per side (grid-25: 5)
    grid_spacing: float = 2.0  # grid: distance between neighbouring means (PacGAN: means at -4..4)
    std: float = 0.01  # component std (PacGAN: 0.01 ring, 0.05 grid)
    n_train: int = 20000  # real samples drawn for pretraining and the discriminator
    path: str = ""  # file-backed sources (npz)
    # Image sources (marlgen.image_data). They keep at most n_train training images (stacked digits: makes
    # exactly n_train stacks) and hold images out for the mode classifier's accuracy.
    root: str = "~/.cache/marlgen/datasets"  # torchvision sources: folder that holds cifar-10-batches-py
    download: bool = False  # torchvision sources: fetch into root when missing (needs internet, ~170 MB)
    n_test: int = 10000  # held-out images kept at most (stacked digits: stacks made from held-out digits)
    test_fraction: float = 0.2  # sources without a test split (digits, npz without test_*): share held out


@dataclass
class ClassifierConfig:
    """The conv classifier that says which class (mode) an image shows; trained once, cached."""

    width: int = 32  # channels of the first conv block; doubled at each halving of the resolution
    features: int = 128  # penultimate layer: the feature space of image PRDC and frechet_classifier
    train_steps: int = 3000  # gradient steps on the real labels
    batch_size: int = 128
    lr: float = 1e-3
    shift: int = 0  # augmentation: random translation by up to this many pixels (CIFAR: 2)
    hflip: bool = False  # augmentation: random horizontal flips (CIFAR: yes; digits: no)
    # torch CPU threads while training. More is faster on free cores (CIFAR: 1.6x with 2), but the
    # weights then differ in the last bits, so a value other than 1 gets a cache file of its own.
    train_threads: int = 1


@dataclass
class ModesConfig:
    """What a mode is: see marlgen.modes. ``auto`` picks mixture / classifier / kmeans from the data."""

    assigner: str = "auto"  # auto | mixture (toy) | classifier (labelled images) | kmeans (any data)
    # classifier: a sample counts for its class (mode >= 0) only when the classifier's top softmax
    # probability is above this (stacked digits: every channel's); else it is no mode (-1).
    confidence: float = 0.5
    n_clusters: int = 10  # kmeans: number of cells (modes)
    pca_dim: int = 32  # kmeans: cells live in this many principal components of the pixels
    # kmeans: a sample is good when its distance to the nearest centre is below this quantile of the
    # real samples' distances to theirs.
    kmeans_quantile: float = 0.95
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)


@dataclass
class GuidedConfig:
    """RL-guided training of a GAN (``model.training=guided``; marlgen.guided, docs/guided.md).

    After ``warmup_steps`` conventional updates, ``rounds`` rounds share the rest of
    ``model.train_steps``: the team trains on the current model, then the model is updated with
    latents from the team's regions, a region classifier (specialisation) and real samples
    weighted by the team's diversity reward.
    """

    warmup_steps: int = 10000  # conventional generator updates first: the team needs a model to steer
    rounds: int = 5  # agents-then-model rounds sharing model.train_steps - warmup_steps updates
    agent_epochs: int = 2  # team training epochs per round (train.steps_per_epoch each); the team carries on
    # Whose mode histogram names the under-covered modes and which latents are regions: the trained team
    # (team) or, as the no-agents ablation, a greedy pick over every anchor's decode (greedy).
    signal: str = "team"
    reward_weight: float = 1.0  # eta: real samples of mode j are drawn with weight exp(eta * M * r_j)
    region_fraction: float = 0.5  # region latents per update, as a fraction of the batch (on top of N(0, I))
    region_spread: float = 0.1  # std of those latents around their anchor
    specialisation: float = 0.1  # weight of the region classifier's cross-entropy in the generator loss
    vacancies: bool = True  # each mode nobody covers gets a region at the free anchor decoding nearest it
    # Guidance that falls linearly to 0 by the last round: none, reward (reward_weight only; regions,
    # vacancies and specialisation stay), or all (reward_weight and specialisation).
    anneal: str = "none"
    anneal_to: float = 0.0  # the fraction of the annealed guidance left in the last round
    # The rounds carry on the warm-up's optimiser states (Adam's moments) rather than restarting Adam,
    # whose first steps after a restart jolt every weight by about the learning rate.
    continue_optimizers: bool = False
    # What counts as a good sample for the rounds (the team's env, its regions and the vacancies):
    # assigner (the mode assigner's verdict: on toy data the evaluation's own 3-std rule) or
    # discriminator (the GAN's own discriminator passes it, at the disc_quantile quantile of its logits on
    # real samples; its mode is the assigner's label without the quality bar). marlgen.guided, docs/guided.md.
    quality: str = "assigner"
    disc_quantile: float = 0.05  # discriminator gate: the share of real samples it would reject
    # The last `consolidate` generator updates train the discriminator against the model's own sampler
    # alone (the one that is evaluated: N(0, I), or the regions with sampler=regions), not the learned
    # mixture of both; regions, classifier and weights stay. 0: none.
    consolidate: int = 0
    # How the round's trained team is rolled out to name the regions, the vacancies and the weights:
    # greedy (its most likely anchors, the same in every episode) or sample (drawn from its policy).
    team_actions: str = "greedy"
    # Which delivering anchors become regions: all (every anchor the team delivered a good sample from)
    # or per_mode (for each mode delivered, the anchor that delivered it most often: one region per mode,
    # so the region classifier never has to tell apart two anchors of one mode).
    regions: str = "all"
    # What the specialisation term asks of a region's samples: region (MGAN: a classifier of region
    # samples must tell which region made them, so regions stay distinct) or mode (AC-GAN: a classifier
    # of labelled real samples must see them as the mode the region stands for, the mode its anchor
    # delivered or a vacancy's lost mode).
    specialise_to: str = "region"
    # Which regions the specialisation term pulls in the generator's loss: all, or only the vacancies
    # (the lost modes' regions), so the regions on modes the model already makes are left to the GAN loss.
    specialise_regions: str = "all"
    # Each region (anchor, mode) a round names stays in every later round's plan, and later rounds add
    # regions only for modes not yet held, on free anchors: the latent patch the model was taught for a mode
    # is not handed to another mode or dropped when a sampled rollout happens to favour another anchor.
    keep_regions: bool = False
    # What the guided model samples from: prior (N(0, I), as the conventional model) or regions (the
    # mixture of its latent regions, each weighted by its mode's share of the data: a learned, disconnected
    # prior as in DeLiGAN or MGAN, so the generator need not decode latent mass between modes). With
    # regions, the consolidate updates train on region latents alone and every "prior" figure samples
    # the mixture; the N(0, I) figures stay beside them (normal_*). marlgen.models.latent_prior.
    sampler: str = "prior"


@dataclass
class ModelConfig:
    kind: str = "vae"  # registry name in marlgen.models.MODELS (gan, vae, conv_gan, conv_vae, ...)
    latent_dim: int = 2  # 2-D latents make the anchors' regions easy to picture
    hidden: int = 128
    depth: int = 3  # hidden layers per network
    train_steps: int = 20000  # generator updates in all (DESIGN probe: 20k steps, ~30 s)
    batch_size: int = 256
    lr: float = 1e-3
    kl_weight: float = 0.01  # VAE only: 2x decoder variance on standardised data (1.0 blurs all modes)
    # Flat models: standardise the data inside the model (false: raw values, as PacGAN's and VEEGAN's code).
    standardize: bool = True
    # Generator updates between checks of the model's prior (modes, high quality) while it trains; 0: none.
    curve_every: int = 0
    # GANs: decay of an exponential moving average of the generator's weights, which decodes outside
    # training (marlgen.models.mlp.generator_average); 0: none, the last weights decode.
    ema: float = 0.0
    # torch CPU threads while pretraining, as modes.classifier.train_threads (the guided rounds run at
    # train.torch_threads). Free cores: 2 threads 1.2-1.6x faster here, other last bits, cached apart.
    train_threads: int = 1
    training: str = "conventional"  # conventional | guided (the team steers the model's training)
    guided: GuidedConfig = field(default_factory=GuidedConfig)


@dataclass
class CriticConfig:
    judge: str = "oracle"  # oracle (true density, toy only) | discriminator (trained vs real data)
    # Acceptance bars over the judge's realism score in [0, 1]; the critic's discrete action picks one.
    bars: list[float] = field(default_factory=lambda: [0.0, 0.5, 0.75, 0.9])
    false_accept_cost: float = 1.0  # critic pays this per accepted low-quality sample
    false_reject_cost: float = 0.5  # ... and this per rejected high-quality sample
    disc_hidden: int = 128
    disc_lr: float = 1e-3
    disc_batch_size: int = 256
    disc_warmup_steps: int = 500  # steps against the plain model's samples before the env starts
    # What the discriminator sees: auto (images: the mode assigner's features, i.e. the classifier's
    # penultimate layer; flat data: the samples) | pixels (samples, flattened) | features
    disc_input: str = "auto"


@dataclass
class RewardConfig:
    coverage: float = 1.0  # weight of newly covered modes (per mode, / n_modes)
    entropy: float = 1.0  # weight of the entropy gain of the team's mode histogram (/ log n_modes)
    quality: float = 0.1  # weight of the fraction of an agent's samples the critic accepted
    credit: str = "difference"  # shared | difference | individual (see marlgen.rewards)
    # 0: each episode's rewards count its own samples only. n > 0: they also count up to n samples of
    # earlier episodes, so a sample's entropy gain is about -log of its mode's share over recent
    # episodes, the gradient of the long-run class KL (stacked digits: docs/images.md).
    memory: int = 0


@dataclass
class EnvConfig:
    n_generators: int = 4
    action: str = "discrete"  # discrete (one of n_anchors latent anchors) | continuous (latent centre)
    n_anchors: int = 64
    anchor_range: float = 2.5  # continuous centres live in [-range, range]^latent_dim
    samples_per_agent: int = 1  # latents drawn around each agent's choice per step (m)
    latent_spread: float = 0.05  # std of those latents around the choice: diversity inside a mode
    # Anchors are scale * (a normal Sobol set). 1.0: they tile the prior, and with the jitter the team's
    # latents have variance 1 + spread^2 per dimension. sqrt(1 - spread^2) keeps it at the prior's 1,
    # so that choosing anchors uniformly is drawing from the prior (docs/images.md, stacked digits).
    anchor_scale: float = 1.0
    # false: the generators' two histogram inputs are zeros (layout and widths unchanged). With 1,000
    # modes they are 2,000 inputs that change every step, and a team must learn a fixed preference
    # over anchors through them (stacked digits: docs/images.md).
    observe_histograms: bool = True
    episode_budget: int = 16  # decoded samples per episode; a multiple of n_generators * m
    critic: CriticConfig = field(default_factory=CriticConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)


@dataclass
class AgentConfig:
    # Update-schedule keys (update_repeats, buffer_size, updates_per_step) are read from
    # agents.generator for the whole team: one trainer drives every role.
    algorithm: str = "ppo"  # registry name in agents.BUILDERS (ppo | dqn) or a dotted path
    hidden: list[int] = field(default_factory=lambda: [128, 128])
    lr: float = 1e-3
    gamma: float = 0.9  # short episodes: the budget ends within a few steps
    share_parameters: bool = True  # generators only: one network for all, agent id in the obs
    # With share_parameters: each generator's own gain on every unit of the shared network's last hidden
    # layer (agents.gains): 16 generators on grid-25 learn as 16 separate networks do, at the shared
    # network's speed (docs/performance.md, 2.2). Off by default: the shipped studies were measured without.
    agent_gains: bool = False
    # PPO
    eps_clip: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    gae_lambda: float = 0.95
    update_repeats: int = 8  # passes over each collected rollout
    # DQN
    eps_train: float = 0.3  # epsilon-greedy, decayed linearly to eps_train_final over the first half
    eps_train_final: float = 0.02
    eps_test: float = 0.0
    buffer_size: int = 50000
    target_update_freq: int = 200
    n_step: int = 1
    updates_per_step: float = 0.1  # gradient steps per collected transition


@dataclass
class AgentsConfig:
    generator: AgentConfig = field(default_factory=AgentConfig)
    critic: AgentConfig = field(default_factory=AgentConfig)


@dataclass
class TrainConfig:
    epochs: int = 6
    steps_per_epoch: int = 8192  # agent steps (transitions, all agents counted) per epoch
    steps_per_collect: int = 2048  # agent steps between updates (rounded up to a multiple of slots)
    batch_size: int = 512
    n_envs: int = 16  # env copies in the lockstep adapter: more slots per collector step, less overhead
    # batched: every env copy in one vectorised step (marlgen.batched) | Tianshou's vector envs: dummy,
    # subproc, ray (pip install -e '.[ray]'); all train the same team, batched fastest on one machine
    vector_env: str = "batched"
    checkpoint_every: int = 1  # epochs between policy checkpoints
    torch_threads: int = 1  # small nets: more threads only add contention on a laptop


@dataclass
class EvalConfig:
    budget: int = 2500  # decoded samples per method (VEEGAN/PacGAN budget)
    small_budget_per_mode: int = 2  # small-budget coverage: this many samples per mode
    small_budget_episodes: int = 50
    knn_k: int = 5  # k for density/coverage (Naeem et al. 2020)
    # Discriminator rejection sampling baseline (marlgen.drs, used by marlgen.compare): the
    # discriminator's training steps against the plain model, and the quantile of F set as gamma.
    drs_steps: int = 10000  # 2,000 left it weak on grid-25: 70% high quality against 82% at 10,000
    drs_gamma_quantile: float = 0.5
    # How a trained team acts when evaluated (marlgen.evaluate.TeamActor): sample (each action drawn from
    # the policy, as a generator draws; seeded) | greedy (the policy's deterministic choice, which
    # replays the same anchors every episode).
    actions: str = "greedy"


@dataclass
class Config:
    name: str = "scenario"
    seed: int = 0
    device: str = "auto"  # auto picks cuda when available, else cpu
    out_dir: str = ""  # run directory; empty: runs/{name}__{algorithm}__{seed}__{time}
    cache_dir: str = ".marlgen_cache"  # pretrained model checkpoints, keyed by config hash
    data: DataConfig = field(default_factory=DataConfig)
    modes: ModesConfig = field(default_factory=ModesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    agents: AgentsConfig = field(default_factory=AgentsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# Allowed values and ranges, checked after types. Registries are checked where they live
# (marlgen.data, marlgen.models, agents) through `validate`.
CHOICES = {
    "env.action": ("discrete", "continuous"),
    "env.critic.judge": ("oracle", "discriminator"),
    "env.critic.disc_input": ("auto", "pixels", "features"),
    "modes.assigner": ("auto", "mixture", "classifier", "kmeans"),
    "env.reward.credit": ("shared", "difference", "individual"),
    "train.vector_env": ("batched", "dummy", "subproc", "ray"),
    "model.training": ("conventional", "guided"),
    "model.guided.signal": ("team", "greedy"),
    "model.guided.anneal": ("none", "reward", "all"),
    "model.guided.quality": ("assigner", "discriminator"),
    "model.guided.team_actions": ("greedy", "sample"),
    "model.guided.regions": ("all", "per_mode"),
    "model.guided.specialise_to": ("region", "mode"),
    "model.guided.specialise_regions": ("all", "vacancies"),
    "model.guided.sampler": ("prior", "regions"),
    "eval.actions": ("sample", "greedy"),
}
POSITIVE = (
    "data.n_modes data.radius data.grid_size data.grid_spacing data.std data.n_train "
    "model.latent_dim model.hidden model.depth model.train_steps model.batch_size model.lr "
    "model.train_threads modes.classifier.train_threads "
    "env.n_generators env.n_anchors env.samples_per_agent env.episode_budget env.anchor_range "
    "env.anchor_scale "
    "agents.generator.lr agents.critic.lr train.epochs train.steps_per_epoch "
    "train.steps_per_collect train.batch_size train.n_envs train.torch_threads train.checkpoint_every "
    "eval.budget eval.small_budget_per_mode "
    "eval.small_budget_episodes eval.knn_k eval.drs_steps "
    "data.n_test modes.n_clusters modes.pca_dim modes.classifier.width modes.classifier.features "
    "modes.classifier.train_steps modes.classifier.batch_size modes.classifier.lr "
    "env.critic.disc_lr env.critic.disc_hidden env.critic.disc_batch_size "
    "model.guided.warmup_steps model.guided.rounds model.guided.agent_epochs"
).split()
NON_NEGATIVE = (
    "model.kl_weight env.latent_spread env.reward.coverage env.reward.entropy env.reward.quality "
    "env.reward.memory env.critic.false_accept_cost env.critic.false_reject_cost train.checkpoint_every "
    "modes.classifier.shift "
    "env.critic.disc_warmup_steps seed "
    "model.curve_every model.guided.reward_weight model.guided.region_spread model.guided.specialisation "
    "model.guided.consolidate"
).split()
# Open or half-open unit intervals: (low, high, low inclusive, high inclusive).
FRACTIONS = {
    "data.test_fraction": (0.0, 1.0, False, False),
    "modes.confidence": (0.0, 1.0, True, False),
    "modes.kmeans_quantile": (0.0, 1.0, False, True),
    "eval.drs_gamma_quantile": (0.0, 1.0, True, True),
    "model.guided.region_fraction": (0.0, 1.0, True, True),
    "model.ema": (0.0, 1.0, True, False),
    "model.guided.anneal_to": (0.0, 1.0, True, True),
    "model.guided.disc_quantile": (0.0, 1.0, True, False),
}
# The same checks for both roles' agent settings (agents.generator.* and agents.critic.*).
AGENT_POSITIVE = "update_repeats buffer_size target_update_freq n_step updates_per_step eps_clip".split()
AGENT_NON_NEGATIVE = "ent_coef vf_coef".split()
AGENT_FRACTIONS = {
    "gamma": (0.0, 1.0, True, True),
    "gae_lambda": (0.0, 1.0, True, True),
    "eps_train": (0.0, 1.0, True, True),
    "eps_train_final": (0.0, 1.0, True, True),
    "eps_test": (0.0, 1.0, True, True),
}
for _role in ("generator", "critic"):
    POSITIVE += [f"agents.{_role}.{k}" for k in AGENT_POSITIVE]
    NON_NEGATIVE += [f"agents.{_role}.{k}" for k in AGENT_NON_NEGATIVE]
    FRACTIONS.update({f"agents.{_role}.{k}": span for k, span in AGENT_FRACTIONS.items()})
MAX_SEED = 2**32 - 1  # numpy's global seed range


def load_scenario(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Scenario file + presets + ``key=value`` overrides -> validated, read-only config."""
    path = Path(path)
    body = _read_yaml(path)
    preset_overrides = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in overrides if _is_preset(o)}
    dotted = [o for o in overrides if not _is_preset(o)]
    defaults = body.pop("defaults", None) or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: 'defaults' must be a mapping such as {{data: ring8, agent: ppo}}")
    defaults = {**defaults, **preset_overrides}

    cfg = OmegaConf.structured(Config)
    for group, name in defaults.items():
        cfg = _merge_preset(cfg, group, name, "command line" if group in preset_overrides else path)
    cfg = _merge(cfg, body, path)
    for item in dotted:
        if "=" not in item:
            raise ConfigError(f"command line: override '{item}' is not of the form key=value")
        cfg = _merge(cfg, OmegaConf.from_dotlist([item]), "command line", item)
    try:
        validate(cfg, str(path))
    except ConfigError as err:  # name the command line when the bad value came from there
        rest = str(err).removeprefix(f"{path}: ")
        given = {o.split("=", 1)[0] for o in dotted}
        if any(rest.startswith(f"{k}=") for k in given):
            raise ConfigError(f"command line: {rest}") from None
        raise
    OmegaConf.set_readonly(cfg, True)
    return cfg


def load_config_file(path: str | Path) -> DictConfig:
    """A resolved config as written into a run directory (no presets, no overrides)."""
    path = Path(path)
    cfg = _merge(OmegaConf.structured(Config), _read_yaml(path), path)
    validate(cfg, str(path))
    return cfg


def default_config(**sections: Any) -> DictConfig:
    """The schema's defaults with some sections replaced; handy in tests and notebooks."""
    cfg = OmegaConf.structured(Config)
    cfg = _merge(cfg, OmegaConf.create(sections), "arguments")
    validate(cfg, "arguments")
    return cfg


def validate(cfg: DictConfig, where: str) -> None:
    """Range and choice checks the type system cannot express."""
    for key, value in _leaves(OmegaConf.to_container(cfg)):  # nan passes `> 0` checks' negation
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: {key}={value!r} must be a finite number")
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{where}: {key}={value!r} is not one of {', '.join(allowed)}")
    for key in POSITIVE:
        value = OmegaConf.select(cfg, key)
        if not value > 0:
            raise ConfigError(f"{where}: {key}={value!r} must be greater than 0")
    for key in NON_NEGATIVE:
        value = OmegaConf.select(cfg, key)
        if value < 0:
            raise ConfigError(f"{where}: {key}={value!r} must not be negative")
    for key, (low, high, low_in, high_in) in FRACTIONS.items():
        value = OmegaConf.select(cfg, key)
        if not ((low <= value if low_in else low < value) and (value <= high if high_in else value < high)):
            span = f"{'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"
            raise ConfigError(f"{where}: {key}={value!r} must lie in {span}")
    if cfg.seed > MAX_SEED:
        raise ConfigError(f"{where}: seed={cfg.seed} must be at most {MAX_SEED}")
    for role in ("generator", "critic"):
        hidden = list(cfg.agents[role].hidden)
        if not hidden or any(h <= 0 for h in hidden):
            raise ConfigError(
                f"{where}: agents.{role}.hidden={hidden} must be a non-empty list of layer widths > 0"
            )
    bars = list(cfg.env.critic.bars)
    if not bars or any(not 0.0 <= b <= 1.0 for b in bars):
        raise ConfigError(f"{where}: env.critic.bars={bars} must be a non-empty list of values in [0, 1]")
    per_step = cfg.env.n_generators * cfg.env.samples_per_agent
    if cfg.env.episode_budget % per_step:
        raise ConfigError(
            f"{where}: env.episode_budget={cfg.env.episode_budget} must be a multiple of "
            f"env.n_generators * env.samples_per_agent = {per_step} (samples decoded per step)"
        )
    if cfg.env.action == "discrete" and cfg.env.n_anchors < 2:
        raise ConfigError(f"{where}: env.n_anchors={cfg.env.n_anchors} must be at least 2")
    _validate_registries(cfg, where)
    if cfg.model.ema > 0 and not _is_gan(cfg.model.kind):
        raise ConfigError(
            f"{where}: model.ema={cfg.model.ema} averages a GAN generator's weights; model.kind="
            f"{cfg.model.kind!r} has no generator to average: set model.ema=0 or use a GAN"
        )
    if cfg.model.training == "guided":
        _validate_guided(cfg, where)


def _is_gan(kind: str) -> bool:
    from marlgen.models import MODELS

    model_cls = getattr(MODELS[kind], "__self__", None)  # builders are classmethods
    return hasattr(model_cls, "discriminate")


def _validate_guided(cfg: DictConfig, where: str) -> None:
    """Guided training updates a GAN in place between team trainings over discrete anchors."""
    model, guided = cfg.model, cfg.model.guided
    if not _is_gan(model.kind):
        raise ConfigError(
            f"{where}: model.training='guided' trains a GAN's generator against its discriminator; "
            f"model.kind={model.kind!r} has none: use model.kind=gan or conv_gan, or "
            "model.training=conventional"
        )
    if not guided.warmup_steps + guided.rounds <= model.train_steps:
        raise ConfigError(
            f"{where}: model.guided.warmup_steps={guided.warmup_steps} plus model.guided.rounds="
            f"{guided.rounds} must not exceed model.train_steps={model.train_steps} (all generator updates, "
            "warm-up included): lower the warm-up or raise model.train_steps"
        )
    if guided.consolidate > model.train_steps - guided.warmup_steps:
        raise ConfigError(
            f"{where}: model.guided.consolidate={guided.consolidate} must not exceed the guided updates, "
            f"model.train_steps - model.guided.warmup_steps = {model.train_steps - guided.warmup_steps}"
        )
    if cfg.env.action != "discrete":
        raise ConfigError(
            f"{where}: model.training='guided' builds its regions from the latent anchors the team picks; "
            "set env.action=discrete"
        )
    if cfg.train.vector_env not in ("batched", "dummy"):
        raise ConfigError(
            f"{where}: model.training='guided' updates the model in place, which env copies in other "
            f"processes would not see; set train.vector_env=batched or dummy (was {cfg.train.vector_env!r})"
        )


def _validate_registries(cfg: DictConfig, where: str) -> None:
    # Imported here: the registries import torch and the builders, which config must not need.
    from agents import BUILDERS, is_on_policy
    from marlgen.data import SOURCES
    from marlgen.models import MODELS

    for key, registry in (("data.source", SOURCES), ("model.kind", MODELS)):
        value = OmegaConf.select(cfg, key)
        if value not in registry:
            raise ConfigError(f"{where}: {key}={value!r} is unknown{_suggest(value, registry)}")
    kinds = []
    for role in ("generator", "critic"):
        algo = cfg.agents[role].algorithm
        if algo not in BUILDERS and "." not in algo and ":" not in algo:
            raise ConfigError(
                f"{where}: agents.{role}.algorithm={algo!r} is unknown{_suggest(algo, BUILDERS)}"
                " (or give a dotted path 'package.module:build')"
            )
        try:
            kinds.append(is_on_policy(algo))
        except (ImportError, ValueError, AttributeError) as err:
            raise ConfigError(f"{where}: agents.{role}.algorithm={algo!r} cannot be loaded: {err}") from None
    if kinds[0] != kinds[1]:
        raise ConfigError(
            f"{where}: agents.generator.algorithm={cfg.agents.generator.algorithm!r} and "
            f"agents.critic.algorithm={cfg.agents.critic.algorithm!r} mix on- and off-policy "
            "learning; Tianshou trains one team with one kind: pick both from the same kind"
        )
    if cfg.env.action == "continuous" and cfg.agents.generator.algorithm == "dqn":
        raise ConfigError(
            f"{where}: env.action='continuous' needs a continuous-action algorithm for "
            "agents.generator (ppo); DQN only picks among discrete anchors"
        )


def _leaves(node: Any, prefix: str = ""):
    """(dotted key, value) for every value in a nested dict/list config."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict | list):
            yield from _leaves(value, dotted)
        else:
            yield dotted, value


def _is_preset(override: str) -> bool:
    return "=" in override and override.split("=", 1)[0] in PRESET_GROUPS


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: no such scenario file (give a path such as scenarios/gmm_ring8.yaml)")
    try:
        body = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path}: malformed YAML{at}: {problem}") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(body).__name__}")
    return body


def _merge_preset(cfg: DictConfig, group: str, name: str, scenario: Path | str) -> DictConfig:
    if group not in PRESET_GROUPS:
        raise ConfigError(
            f"{scenario}: defaults.{group} is not a preset group{_suggest(group, PRESET_GROUPS)}"
        )
    folder = CONFIGS_DIR / group
    preset = folder / f"{name}.yaml"
    if not preset.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ConfigError(
            f"{scenario}: preset {group}={name!r} not found in {folder}{_suggest(name, known)}"
            f" (known: {', '.join(known)})"
        )
    body = _read_yaml(preset)
    if group == "agent":
        body = {"agents": {"generator": body, "critic": body}}
    else:
        body = {group: body}
    return _merge(cfg, body, preset)


def _merge(cfg: DictConfig, body: Any, where: Any, item: str | None = None) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, body)
    except OmegaConfBaseException as err:
        raise ConfigError(_explain(err, where, item)) from None


def _explain(err: OmegaConfBaseException, where: Any, item: str | None) -> str:
    key = getattr(err, "full_key", None) or (item.split("=", 1)[0] if item else "?")
    value = getattr(err, "value", None)
    text = str(err).splitlines()[0]
    parent, _, leaf = key.rpartition(".")
    node = _schema_node(parent)
    if _schema_node(key) is not None:
        return f"{where}: '{key}' is a section, not a value: set its keys, e.g. '{key}.<key>=...'"
    if "Key" in type(err).__name__ and node is not None:
        valid = [f.name for f in fields(node)]
        return f"{where}: unknown key '{key}'{_suggest(leaf, valid)} (valid keys here: {', '.join(valid)})"
    expected = _schema_type(key)
    given = f" value {value!r}" if value is not None else ""
    hint = f"; expected {expected}" if expected else ""
    return f"{where}: bad{given} for '{key}'{hint} ({text})"


def _schema_node(dotted: str) -> type | None:
    node: Any = Config
    for part in filter(None, dotted.split(".")):
        match = [f for f in fields(node) if f.name == part]
        if not match:
            return None
        node = _field_type(match[0])
        if not is_dataclass(node):
            return None
    return node


def _schema_type(dotted: str) -> str | None:
    parent, _, leaf = dotted.rpartition(".")
    node = _schema_node(parent)
    if node is None:
        return None
    for f in fields(node):
        if f.name == leaf:
            return str(f.type)
    return None


def _field_type(f: Any) -> Any:
    hint = f.type
    if isinstance(hint, str):  # `from __future__ import annotations` keeps types as strings
        hint = globals().get(hint, hint)
    return hint


def _suggest(word: str, valid: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(v) for v in valid], n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def as_dict(cfg: DictConfig | ListConfig) -> Any:
    return OmegaConf.to_container(cfg, resolve=True)
