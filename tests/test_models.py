"""Models registry, pretraining and the checkpoint cache (fast: tiny networks, few steps)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from marlgen.config import ModelConfig
from marlgen.errors import CheckpointError
from marlgen.models import MODELS
from marlgen.models import pretrain as pretrain_mod
from marlgen.models.pretrain import build_model, load_model_checkpoint, pretrained_model
from tests.conftest import ROOT

KINDS = sorted(MODELS)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


def data_shape_for(kind: str) -> tuple[int, ...]:
    """Flat toy points for MLP kinds, small images for conv kinds; add a case for new data types."""
    return (1, 28, 28) if kind.startswith("conv") else (2,)


def mixture(n: int, shape: tuple[int, ...] = (2,), std: float = 0.05, seed: int = 0) -> np.ndarray:
    """Two Gaussian components at -1 and +1 (all features equal per component), float32 (n, *shape)."""
    rng = np.random.default_rng(seed)
    centre = rng.choice([-1.0, 1.0], size=(n,) + (1,) * len(shape))
    return (centre + std * rng.standard_normal((n, *shape))).astype(np.float32)


def tiny_cfg(kind: str, **overrides) -> ModelConfig:
    base = dict(kind=kind, latent_dim=2, hidden=16, depth=1, train_steps=20, batch_size=16, lr=1e-3)
    return ModelConfig(**{**base, **overrides})


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kind", KINDS)
def test_registry_builds_and_decodes(kind):
    shape = data_shape_for(kind)
    model = MODELS[kind](tiny_cfg(kind, latent_dim=3), shape)
    assert model.latent_dim == 3 and tuple(model.data_shape) == shape
    assert model.decode(torch.zeros(5, 3)).shape == (5, *shape)
    g = torch.Generator().manual_seed(1)
    first = model.sample_prior(7, generator=g)
    assert first.shape == (7, *shape)
    assert torch.equal(first, model.sample_prior(7, generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("kind", KINDS)
def test_training_step_reports_finite_losses(kind):
    shape = data_shape_for(kind)
    model = MODELS[kind](tiny_cfg(kind), shape)
    losses = model.training_step(torch.from_numpy(mixture(16, shape)), model.make_optimizers(1e-3))
    assert losses and all(isinstance(v, float) and np.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("kind", KINDS)
def test_cache_is_written_then_reused(kind, tmp_path, monkeypatch, caplog):
    shape = data_shape_for(kind)
    data, cfg = mixture(64, shape), tiny_cfg(kind)
    model = pretrained_model(cfg, data, seed=0, cache_dir=tmp_path, progress=False)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].startswith(kind) and files[0].endswith(".pt"), files  # no temp left
    assert not model.training and not any(p.requires_grad for p in model.parameters())

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although the cache holds these weights")

    monkeypatch.setattr(pretrain_mod, "train_model", no_training)
    with caplog.at_level(logging.INFO, logger=pretrain_mod.__name__):
        # A DictConfig with the same values must hit the same cache file as the dataclass.
        again = pretrained_model(OmegaConf.structured(cfg), data, seed=0, cache_dir=tmp_path, progress=False)
    assert any("reused" in r.getMessage() for r in caplog.records)
    assert same_weights(weights(model), weights(again))
    assert not again.training and not any(p.requires_grad for p in again.parameters())

    # The file alone rebuilds the model.
    alone = load_model_checkpoint(tmp_path / files[0])
    assert tuple(alone.data_shape) == shape and alone.config == cfg
    z = torch.randn(4, cfg.latent_dim)
    assert torch.equal(alone.decode(z), model.decode(z))


@pytest.mark.parametrize("kind", KINDS)
def test_seed_fixes_weights(kind, tmp_path):
    shape = data_shape_for(kind)
    data, cfg = mixture(64, shape), tiny_cfg(kind)
    rng_before = torch.get_rng_state()
    a = pretrained_model(cfg, data, seed=3, cache_dir=tmp_path / "a", progress=False)
    assert torch.equal(torch.get_rng_state(), rng_before), "pretraining must not consume the global RNG"
    b = pretrained_model(cfg, data, seed=3, cache_dir=tmp_path / "b", progress=False)
    c = pretrained_model(cfg, data, seed=4, cache_dir=tmp_path / "c", progress=False)
    assert same_weights(weights(a), weights(b))
    assert not same_weights(weights(a), weights(c))


def test_inputs_key_the_cache(tmp_path):
    data, cfg = mixture(64), tiny_cfg("vae")
    pretrained_model(cfg, data, seed=0, cache_dir=tmp_path, progress=False)
    pretrained_model(cfg, data, seed=1, cache_dir=tmp_path, progress=False)
    pretrained_model(tiny_cfg("vae", kl_weight=0.5), data, seed=0, cache_dir=tmp_path, progress=False)
    pretrained_model(cfg, data[:-1], seed=0, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.pt"))) == 4


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign", "wrong_weights"])
def test_bad_checkpoint_raises_checkpoint_error(damage, tmp_path):
    data, cfg = mixture(64), tiny_cfg("vae")
    pretrained_model(cfg, data, seed=0, cache_dir=tmp_path, progress=False)
    (path,) = tmp_path.glob("*.pt")
    if damage == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "foreign":
        torch.save({"hello": torch.zeros(2)}, path)
    else:
        ckpt = torch.load(path, weights_only=True)
        ckpt["state_dict"] = {"nope": torch.zeros(1)}
        torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as info:
        pretrained_model(cfg, data, seed=0, cache_dir=tmp_path, progress=False)
    message = str(info.value)
    assert str(path) in message and "delete" in message
    err = info.value  # no torch traceback chained to ours
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        load_model_checkpoint(tmp_path / "absent.pt")


@pytest.mark.slow
def test_vae_training_learns_the_mixture(tmp_path):
    """The trained VAE must use its latent: beat the collapsed VAE that decodes the data mean."""
    data = mixture(2000, seed=0)
    test = torch.from_numpy(mixture(500, seed=1))
    cfg = tiny_cfg("vae", hidden=32, depth=2, train_steps=400, batch_size=64, lr=3e-3, kl_weight=0.1)

    def elbo_loss(model) -> float:
        recon, kl = model.loss(test, torch.Generator().manual_seed(0))
        return float(recon + cfg.kl_weight * kl)

    torch.manual_seed(0)
    untrained = build_model(vars(cfg), (2,))
    untrained.fit_normalizer(torch.from_numpy(data))
    trained = pretrained_model(cfg, data, seed=0, cache_dir=tmp_path, progress=False)
    collapsed = 2.0  # KL = 0, recon = total variance of the standardised data
    with torch.no_grad():
        before, after = elbo_loss(untrained), elbo_loss(trained)
        assert after < 0.5 * before and after < 0.5 * collapsed, (before, after, collapsed)
        # Decodes land on both components (the means are at -1 and +1 in every feature).
        decoded = trained.sample_prior(400, torch.Generator().manual_seed(0))
    near_pos = (decoded - 1.0).norm(dim=1) < 0.3
    near_neg = (decoded + 1.0).norm(dim=1) < 0.3
    assert near_pos.sum() > 80 and near_neg.sum() > 80, (int(near_pos.sum()), int(near_neg.sum()))


def test_a_gan_cache_ignores_the_vae_only_kl_weight():
    """A GAN never reads kl_weight: changing it must find the same cached weights, not retrain."""
    from marlgen.models.pretrain import checkpoint_name, model_config_dict

    data = np.zeros((8, 2), np.float32)
    for kind in ("gan", "conv_gan"):
        a = model_config_dict({"kind": kind, "kl_weight": 0.01})
        b = model_config_dict({"kind": kind, "kl_weight": 1.0})
        assert checkpoint_name(a, data, 0) == checkpoint_name(b, data, 0)
    vae = [model_config_dict({"kind": "vae", "kl_weight": w}) for w in (0.01, 1.0)]
    assert checkpoint_name(vae[0], data, 0) != checkpoint_name(vae[1], data, 0)


@pytest.mark.parametrize("kind", ["gan", "conv_gan"])
def test_generator_average_follows_the_weights_and_decodes_outside_training(kind, tmp_path):
    """model.ema: the average is decay * average + (1 - decay) * weights after every generator step;
    training decodes with the weights, eval (the agents, every measurement) with the average."""
    shape = data_shape_for(kind)
    model = build_model(vars(tiny_cfg(kind, ema=0.9)), shape)
    model.train()
    optimizers = model.make_optimizers(1e-2)
    real = torch.from_numpy(mixture(8, shape))
    gen = torch.Generator().manual_seed(0)
    model.training_step(real, optimizers, gen)  # the first step copies the weights
    expected = [p.detach().clone() for p in model.generator.parameters()]
    for _ in range(3):
        model.training_step(real, optimizers, gen)
        for e, p in zip(expected, model.generator.parameters(), strict=True):
            e.mul_(0.9).add_(0.1 * p.detach())
    averaged = list(model.generator_ema.module.parameters())
    assert all(torch.allclose(a, e, atol=1e-6) for a, e in zip(averaged, expected, strict=True))
    assert not all(torch.equal(a, p) for a, p in zip(averaged, model.generator.parameters(), strict=True))
    z = torch.randn(4, 2, generator=gen)
    with torch.no_grad():
        assert torch.equal(model.decode(z), model.denormalize(model.generator(z).view(4, *shape)))
        model.eval()
        assert torch.equal(model.decode(z), model.denormalize(model.generator_ema.module(z).view(4, *shape)))
    # The average is part of the cached weights: a reload decodes the same.
    trained = pretrained_model(tiny_cfg(kind, ema=0.9), mixture(32, shape), 0, tmp_path, progress=False)
    again = load_model_checkpoint(next(tmp_path.glob(f"{kind}-*.pt")))
    with torch.no_grad():
        assert torch.equal(trained.decode(z), again.decode(z))
        assert not torch.equal(trained.decode(z), trained.denormalize(trained.generator(z).view(4, *shape)))


def test_ema_keys_the_cache_only_when_set_and_needs_a_gan():
    from marlgen.config import ConfigError, load_scenario
    from marlgen.models.pretrain import checkpoint_name, model_config_dict

    data = np.zeros((8, 2), np.float32)
    plain = model_config_dict({"kind": "gan"})
    old = {k: v for k, v in plain.items() if k != "ema"}  # the key did not exist: old caches stay valid
    averaged = model_config_dict({"kind": "gan", "ema": 0.999})
    assert (
        checkpoint_name(plain, data, 0) == checkpoint_name(old, data, 0) != checkpoint_name(averaged, data, 0)
    )
    with pytest.raises(ConfigError, match="model.ema"):
        load_scenario(ROOT / "scenarios/gmm_ring8.yaml", ["model.ema=0.99", "model=vae"])
    with pytest.raises(ConfigError, match="model.ema"):
        load_scenario(ROOT / "scenarios/gmm_grid25_guided.yaml", ["model.ema=1.0"])


@pytest.mark.parametrize("kind", KINDS)
def test_a_learned_latent_prior_is_sampled_saved_and_loaded(kind):
    """sample_prior draws N(0, I) exactly as before until a mixture is set; then only around its
    regions, in their weights; the mixture travels in the state dict, and a state saved before learned
    priors existed (no latent_prior keys) loads as N(0, I)."""
    model = build_model(vars(tiny_cfg(kind)), data_shape_for(kind)).eval()
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(model.sample_prior(6, torch.Generator().manual_seed(3)), model.decode(z))
    old_state = {k: v for k, v in model.state_dict().items() if not k.startswith("latent_prior.")}

    means = torch.tensor([[-3.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    model.latent_prior.set_mixture(means, torch.tensor([1.0, 3.0, 0.0]), spread=0.01)
    latents = model.latent_prior.sample(4000, torch.Generator().manual_seed(0))
    nearest = torch.cdist(latents, means).argmin(1)
    assert torch.cdist(latents, means).min(1).values.max() < 0.1  # only around the regions
    assert abs((nearest == 1).float().mean().item() - 0.75) < 0.03 and not (nearest == 2).any()

    reloaded = build_model(vars(tiny_cfg(kind)), data_shape_for(kind)).eval()
    reloaded.load_state_dict(model.state_dict())
    assert torch.equal(reloaded.latent_prior.means, means) and not reloaded.latent_prior.is_normal
    with torch.no_grad():
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        assert torch.equal(reloaded.sample_prior(8, g1), model.sample_prior(8, g2))
    reloaded.load_state_dict(old_state)
    assert reloaded.latent_prior.is_normal
    with pytest.raises(ValueError, match="at least one region"):
        model.latent_prior.set_mixture(torch.zeros(0, 2), torch.zeros(0), 0.1)
