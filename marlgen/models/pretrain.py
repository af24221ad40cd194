"""Pretrain a generative model once per (config, data, seed) and cache its weights.

Every run of a scenario needs the same frozen model; training it takes tens of seconds, so the
weights go to ``cache_dir`` under a name keyed by a hash of the inputs that fix them. A checkpoint
holds the model config and data shape, so :func:`load_model_checkpoint` rebuilds a model from the
file alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from marlgen import atomic
from marlgen.config import ModelConfig
from marlgen.errors import CheckpointError, TrainingDiverged, brief

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "marlgen-model"
# Part of the cache key: bump it when a change to the models or to training makes old weights stale.
CACHE_VERSION = 1
# Long pretraining (conv models on a CPU) saves its state this often to ``<cache file>.partial``; an
# interrupted run resumes from there with the same result. The file goes once the final weights exist.
PARTIAL_EVERY_SECONDS = 120.0
PARTIAL_FORMAT = "marlgen-partial-training"
# ModelConfig keys that say how training goes on after the cached conventional pretraining
# (marlgen.guided): they never change the cached weights, so they stay out of the cache and checkpoints.
PROCEDURE_KEYS = ("training", "guided")
# Keys added after cache version 1 enter the cache key only when set away from these defaults, so the
# weights cached before the keys existed stay valid.
LATER_KEYS = {"standardize": True, "curve_every": 0, "ema": 0.0, "train_threads": 1}
# Keys a model kind never reads: they must not split its cache (a GAN is the same GAN under any kl_weight).
UNUSED_BY_KIND = {"gan": ("kl_weight",), "conv_gan": ("kl_weight",)}

# (model) -> figures of its prior samples, e.g. {"modes_covered": 24, "high_quality_fraction": 0.93}
Evaluator = Callable[[nn.Module], dict]


def pretrained_model(
    model_cfg: Any,
    data: np.ndarray,
    seed: int,
    cache_dir: str | os.PathLike,
    progress: bool = True,
    device: str = "cpu",
    evaluate: Evaluator | None = None,
) -> nn.Module:
    """The model ``model_cfg`` describes, trained on ``data`` (n, *data_shape); cached on disk.

    A second call with the same config, data and seed loads the cached weights instead of training.
    The model comes back in eval mode with ``requires_grad`` off: it is frozen for the agents.
    Training runs on ``train_threads`` torch CPU threads: 1 by default, the same bits as every cache
    written before the key, and no OpenMP threads competing for a busy machine's cores.
    ``evaluate`` is called every ``curve_every`` updates (when that key is > 0); its rows, with
    ``updates``, are cached with the weights and come back as ``model.curve``.
    """
    cfg = model_config_dict(model_cfg)
    data = np.ascontiguousarray(data, dtype=np.float32)
    if data.ndim < 2 or data.shape[0] == 0:
        raise ValueError(f"data must have shape (n, *data_shape) with n > 0, got {data.shape}")
    data_shape = tuple(data.shape[1:])
    path = Path(cache_dir) / checkpoint_name(cfg, data, seed)
    if cfg["curve_every"] > 0 and evaluate is None:
        raise ValueError("model.curve_every > 0 needs an evaluate function for the model's prior")

    if path.exists():
        model = load_model_checkpoint(path, device=device)
        same = cache_identity(model_config_dict(model.config)) == cache_identity(cfg)
        if not same or tuple(model.data_shape) != data_shape:
            raise CheckpointError(
                f"{path}: checkpoint does not match the requested model config or data shape "
                f"{data_shape}; delete the file to retrain"
            )
        log.info("reused cached %s model %s (delete it to retrain)", cfg["kind"], path)
        _end_curve_at_final_model(model, model.curve, cfg, evaluate)  # caches written before it did
        return model

    dev = resolve_device(device)
    start = time.perf_counter()
    # A private RNG stream: the seed alone fixes the weights, and callers' global RNG is untouched.
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        model = build_model(cfg, data_shape).to(dev)
        data_t = torch.from_numpy(data).to(dev)  # (n, *data_shape)
        if cfg["standardize"]:
            model.fit_normalizer(data_t)
        gen = torch.Generator(device=dev).manual_seed(seed)
        partial = path.with_name(path.name + ".partial")
        curve: list[dict] = []
        optimizers = model.make_optimizers(cfg["lr"])
        with _torch_threads(cfg["train_threads"]):
            losses = train_model(
                model, data_t, cfg, gen, progress=progress, resume=partial,
                evaluate=evaluate if cfg["curve_every"] > 0 else None, curve=curve, optimizers=optimizers,
            )  # fmt: skip
    _check_finite(model, losses, cfg)  # a diverged model must not enter the cache
    _end_curve_at_final_model(model, curve, cfg, evaluate)
    seconds = time.perf_counter() - start
    save_model_checkpoint(
        path,
        model,
        cfg,
        extra={
            "seed": int(seed),
            "data_sha256": data_fingerprint(data),
            "train_seconds": seconds,
            "losses": losses,
            "curve": curve,
            "optimizers": optimizer_states(optimizers),
        },
    )
    partial.unlink(missing_ok=True)
    log.info("trained %s model in %.1f s, saved %s", cfg["kind"], seconds, path)
    model.curve = curve
    model.optimizer_states = optimizer_states(optimizers)
    return _freeze(model)


def optimizer_states(optimizers: Mapping[str, torch.optim.Optimizer]) -> dict:
    """The optimisers' states (Adam's moments), kept with the weights: training that carries on from a
    cached model (guided training after its warm-up) continues them instead of restarting Adam."""
    return {name: opt.state_dict() for name, opt in optimizers.items()}


def train_model(
    model: nn.Module,
    data: torch.Tensor,  # (n, *data_shape)
    cfg: Mapping[str, Any],
    generator: torch.Generator,
    progress: bool = True,
    resume: Path | None = None,
    evaluate: Evaluator | None = None,
    curve: list[dict] | None = None,
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
) -> dict[str, float]:
    """``cfg["train_steps"]`` steps on minibatches drawn with replacement; returns the last losses.

    ``resume``: a partial-training file; training continues from it when it exists and is saved to it
    every ``PARTIAL_EVERY_SECONDS`` (weights, optimiser and RNG states: the result does not change).
    ``evaluate``: called in eval mode every ``cfg["curve_every"]`` updates; rows are appended to ``curve``.
    It must draw from its own random generator, so that measuring does not change the weights.
    ``optimizers``: the model's optimisers, made here when not given (the caller may keep their state).
    """
    model.train()
    optimizers = optimizers if optimizers is not None else model.make_optimizers(cfg["lr"])
    n, batch_size = data.shape[0], cfg["batch_size"]
    losses: dict[str, float] = {}
    curve = curve if curve is not None else []
    first = _load_partial(resume, model, optimizers, generator, curve) if resume is not None else 0
    total = cfg["train_steps"]
    bar = tqdm(range(first, total), initial=first, total=total, desc=f"pretrain {cfg['kind']}",
               disable=not progress, leave=False)  # fmt: skip
    saved = time.perf_counter()
    for step in bar:
        idx = torch.randint(n, (batch_size,), generator=generator, device=data.device)  # (B,)
        losses = model.training_step(data[idx], optimizers, generator)
        if step % 500 == 0:
            bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()}, refresh=False)
        if evaluate is not None and (step + 1) % cfg["curve_every"] == 0:
            curve.append({"updates": step + 1, **measure(model, evaluate)})
        if resume is not None and time.perf_counter() - saved >= PARTIAL_EVERY_SECONDS and step + 1 < total:
            _save_partial(resume, model, optimizers, generator, step + 1, curve)
            saved = time.perf_counter()
    return losses


def _end_curve_at_final_model(
    model: nn.Module, curve: list[dict], cfg: dict, evaluate: Evaluator | None
) -> None:
    """Append the final model's point when ``train_steps`` is no multiple of ``curve_every``.

    Otherwise the curve would stop at the last multiple, and a comparison reading each curve's last
    point as "after train_steps updates" would compare models trained for different lengths.
    """
    total = cfg["train_steps"]
    if cfg["curve_every"] > 0 and evaluate is not None and (not curve or curve[-1]["updates"] < total):
        curve.append({"updates": total, **measure(model, evaluate)})


def measure(model: nn.Module, evaluate: Evaluator) -> dict:
    """``evaluate(model)`` in eval mode without gradients (batch norm keeps its running statistics)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        row = evaluate(model)
    model.train(was_training)
    return row


def _save_partial(
    path: Path, model: nn.Module, optimizers: dict, generator: torch.Generator, step: int, curve: list[dict]
):
    state = {
        "curve": curve,
        "format": PARTIAL_FORMAT,
        "step": int(step),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    atomic.torch_save(state, path)


def _load_partial(
    path: Path, model: nn.Module, optimizers: dict, generator: torch.Generator, curve: list[dict]
) -> int:
    """The step to continue from (0 without a partial file); a bad file raises CheckpointError."""
    if not path.is_file():
        return 0
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != PARTIAL_FORMAT:
            raise ValueError("not a partial-training file")
        model.load_state_dict(state["state_dict"])
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        curve[:] = state.get("curve", [])
    except Exception as err:  # truncated, foreign, or from other model code
        raise CheckpointError(
            f"{path}: cannot resume pretraining from it ({_first_line(err)}); delete the file to start over"
        ) from None
    log.info("resuming pretraining from step %d of %s", state["step"], path)
    return int(state["step"])


def load_model_checkpoint(path: str | os.PathLike, device: str = "cpu") -> nn.Module:
    """Rebuild a frozen model from a checkpoint written by :func:`pretrained_model`."""
    path = Path(path)
    fix = "delete the file to retrain"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model checkpoint file (run pretraining to create it)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds (pickle, zip, EOF, RuntimeError) for a bad file
        reason = _first_line(err)
        raise CheckpointError(f"{path}: not a readable model checkpoint ({reason}); {fix}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a marlgen model checkpoint; {fix}")
    try:
        cfg = model_config_dict(ckpt["model_config"])
        model = build_model(cfg, tuple(ckpt["data_shape"]))
        model.load_state_dict(ckpt["state_dict"])
    except Exception as err:  # missing keys, unknown kind, weights of another architecture
        raise CheckpointError(
            f"{path}: checkpoint does not fit the current model code ({_first_line(err)}); {fix}"
        ) from None
    model.curve = list(ckpt.get("curve") or [])  # prior figures measured while it trained
    model.optimizer_states = ckpt.get("optimizers")  # None in checkpoints written before they were kept
    return _freeze(model.to(resolve_device(device)))


def save_model_checkpoint(
    path: str | os.PathLike, model: nn.Module, cfg: Mapping[str, Any], extra: Mapping[str, Any] | None = None
) -> None:
    """Write atomically (temp file + rename) so an interrupted run never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {
        **(extra or {}),
        "format": CHECKPOINT_FORMAT,
        "version": CACHE_VERSION,
        "model_config": dict(cfg),
        "data_shape": list(model.data_shape),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    atomic.torch_save(ckpt, path)


def build_model(cfg: Mapping[str, Any], data_shape: tuple[int, ...]) -> nn.Module:
    """A fresh model from the registry; it remembers its config for checkpoints."""
    from marlgen.models import MODELS  # looked up at call time so later registrations count

    config = ModelConfig(**cfg)
    if config.kind not in MODELS:
        raise ValueError(f"unknown model kind {config.kind!r}; known: {', '.join(sorted(MODELS))}")
    model = MODELS[config.kind](config, tuple(data_shape))
    model.config = config
    return model


def model_config_dict(model_cfg: Any) -> dict[str, Any]:
    """A ModelConfig, DictConfig or mapping as a plain dict with every schema field filled in."""
    if dataclasses.is_dataclass(model_cfg):
        given = dataclasses.asdict(model_cfg)
    elif isinstance(model_cfg, Mapping):  # includes omegaconf.DictConfig
        given = {str(k): model_cfg[k] for k in model_cfg}
    else:
        raise TypeError(f"expected a ModelConfig or a mapping, got {type(model_cfg).__name__}")
    given = {k: v for k, v in given.items() if k not in PROCEDURE_KEYS}
    cfg = dataclasses.asdict(ModelConfig(**given))  # rejects unknown keys with a TypeError
    # Cast to the schema's types so lr=1 and lr=1.0 give the same cache key.
    return {k: type(getattr(ModelConfig, k))(v) for k, v in cfg.items() if k not in PROCEDURE_KEYS}


def data_fingerprint(data: np.ndarray) -> str:
    """sha256 of the float32 bytes and the shape: equal arrays give equal cache keys."""
    data = np.ascontiguousarray(data, dtype=np.float32)
    h = hashlib.sha256(json.dumps(list(data.shape)).encode())
    h.update(data.tobytes())
    return h.hexdigest()


def cache_identity(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The model config keys that decide its trained weights: what the cache is keyed on."""
    unused = UNUSED_BY_KIND.get(cfg["kind"], ())
    return {k: v for k, v in without_later_defaults(cfg, LATER_KEYS).items() if k not in unused}


def without_later_defaults(cfg: Mapping[str, Any], later: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` without the keys added after a cache format's first version while they hold the defaults
    in ``later``, so the files cached before those keys existed keep their names."""
    return {k: v for k, v in cfg.items() if k not in later or v != later[k]}


def checkpoint_name(cfg: Mapping[str, Any], data: np.ndarray, seed: int) -> str:
    """File name for the weights that (model config, data, seed) fix, e.g. ``vae-3f2a...c1.pt``."""
    identity = {"model": cache_identity(cfg), "data": data_fingerprint(data), "seed": int(seed)}
    key = json.dumps({**identity, "version": CACHE_VERSION}, sort_keys=True)
    return f"{cfg['kind']}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """``auto`` picks cuda when available; a cuda request without cuda falls back to cpu."""
    device = str(device)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        log.warning("device %r requested but cuda is unavailable; using cpu", device)
        device = "cpu"
    return torch.device(device)


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_finite(model: nn.Module, losses: Mapping[str, float], cfg: Mapping[str, Any]) -> None:
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    bad += [f"{name} loss" for name, value in losses.items() if not np.isfinite(value)]
    if bad:
        raise TrainingDiverged(
            f"pretraining the {cfg['kind']} model diverged: {', '.join(bad[:3])} hold NaN or inf; lower "
            f"model.lr (now {cfg['lr']}) and run again (nothing was cached)"
        )


def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    model.requires_grad_(False)
    return model


def _first_line(err: BaseException) -> str:
    return brief(err)
