"""From a validated config to the parts of a run: data, pretrained model, modes, judge, env."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from marlgen.critic import make_judge
from marlgen.data import Dataset, load_data
from marlgen.env import CoverageEnv
from marlgen.evaluate import prior_figures
from marlgen.models.pretrain import pretrained_model
from marlgen.modes import make_assigner


@dataclass
class Parts:
    dataset: Dataset
    model: torch.nn.Module
    assigner: object
    judge: object


def build_parts(cfg, progress: bool = True) -> Parts:
    """Everything the env needs; the model's pretraining is cached by config and data fingerprint."""
    # Image parts run torch here too (classifier, judge warm-up): more threads than cores crawl on a busy CPU.
    torch.set_num_threads(cfg.train.torch_threads)
    dataset = load_data(cfg.data, cfg.seed)
    assigner = make_assigner(dataset, cfg.modes, cfg.seed, cfg.cache_dir, progress=progress)
    # The model's own learning curve: its prior's figures at the evaluation budget every curve_every updates.
    evaluate = functools.partial(prior_figures, assigner=assigner, budget=cfg.eval.budget, seed=cfg.seed + 1)
    model = pretrained_model(
        pretraining_config(cfg.model), dataset.samples, cfg.seed, cfg.cache_dir, progress=progress,
        evaluate=evaluate,
    )  # fmt: skip
    generator = torch.Generator().manual_seed(cfg.seed)

    def prior_samples(n: int) -> np.ndarray:
        with torch.inference_mode():
            return model.sample_prior(n, generator=generator).numpy()

    judge = make_judge(
        cfg.env.critic, dataset, prior_samples, cfg.seed,
        features=getattr(assigner, "features", None), nearest=getattr(assigner, "nearest", None),
    )  # fmt: skip
    return Parts(dataset, model, assigner, judge)


def pretraining_config(model_cfg):
    """The cached conventional stage: all of model.train_steps, or guided training's warm-up."""
    if model_cfg.training != "guided":
        return model_cfg
    from omegaconf import OmegaConf

    return OmegaConf.merge(model_cfg, {"train_steps": model_cfg.guided.warmup_steps})


def make_env(config, parts: Parts | None = None, learn_judge: bool = False, **env_overrides) -> CoverageEnv:
    """The scenario's PettingZoo ParallelEnv (builds and caches the parts when not given)."""
    parts = parts or build_parts(config, progress=False)
    env_cfg = config.env
    if env_overrides:
        from omegaconf import OmegaConf

        env_cfg = OmegaConf.merge(env_cfg, env_overrides)
    return CoverageEnv(
        parts.model, parts.assigner, parts.judge, env_cfg, anchor_seed=config.seed, learn_judge=learn_judge
    )
