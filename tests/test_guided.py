"""Guided training (marlgen.guided): its pieces on hand-made cases, the cache rules, one short run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from marlgen.build import make_env
from marlgen.config import ConfigError, GuidedConfig, ModelConfig, load_scenario
from marlgen.errors import CheckpointError
from marlgen.evaluate import Rollout, prior_figures
from marlgen.guided import (
    DiscriminatorGate,
    GatedModes,
    GateJudge,
    GuidedUpdater,
    RoundPlan,
    discriminator_regions,
    greedy_mixture_figures,
    mode_centroids,
    mode_labels,
    plan_from_team,
    region_weights,
    reward_weights,
    round_config,
    round_parts,
    round_sizes,
    vacancy_regions,
)
from marlgen.models.mlp import MLPGAN
from marlgen.models.pretrain import (
    checkpoint_name,
    load_model_checkpoint,
    model_config_dict,
    pretrained_model,
)
from marlgen.run import main
from tests.conftest import ROOT

REWARD = SimpleNamespace(coverage=1.0, entropy=1.0)
GUIDED = ROOT / "scenarios/gmm_grid25_guided.yaml"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


def test_reward_weights_favour_the_mode_nobody_covered():
    hist = np.array([4.0, 4.0, 4.0, 0.0])  # mode 3 uncovered
    w = reward_weights(hist, REWARD, eta=1.0)
    assert np.argmax(w) == 3 and np.allclose(w[:3], w[0]) and w.mean() == pytest.approx(1.0)
    # By hand, M = 4: one more sample of mode 3 gives hist (4, 4, 4, 1): coverage 4/4 and entropy H1;
    # one more of mode 0 gives (5, 4, 4, 0): coverage 3/4 and entropy H0. Weights differ by exp(M * gap).
    entropy = lambda h: -(h / h.sum() * np.log(h / h.sum())).sum() / np.log(4)  # noqa: E731
    gap = (1.0 + entropy(np.array([4.0, 4, 4, 1]))) - (0.75 + entropy(np.array([5.0, 4, 4])))
    assert w[3] / w[0] == pytest.approx(np.exp(4 * gap))
    assert np.allclose(reward_weights(hist, REWARD, eta=0.0), 1.0)  # eta 0: conventional sampling
    even = reward_weights(np.array([3.0, 3.0, 3.0, 3.0]), REWARD, eta=2.0)
    assert np.allclose(even, 1.0)  # an even team histogram changes nothing


def test_vacancies_take_the_free_anchor_nearest_each_lost_mode():
    decoded = np.array([[0.0, 0.0], [5.0, 5.0], [4.0, 4.0], [-3.0, 0.0]], np.float32)  # anchors' decodes
    in_modes = np.array([0, 1, 1, 2])  # every anchor decodes into some mode
    centroids = np.array([[0.0, 0.0], [5.0, 5.0], [-4.0, 0.0]])
    # Anchor 1 is taken by the team; mode 1's nearest free anchor is 2, mode 2's is 3.
    assert vacancy_regions(decoded, in_modes, np.array([1]), np.array([1, 2]), centroids) == [2, 3]
    # Two lost modes never share an anchor.
    assert vacancy_regions(decoded, in_modes, np.array([0, 2, 3]), np.array([1, 2]), centroids) == [1]
    # An anchor decoding into no mode (a seam) goes first, even when another free anchor is nearer.
    seam = np.array([0, 1, -1, 2])
    assert vacancy_regions(decoded, seam, np.array([]), np.array([2]), centroids) == [2]


def test_mode_centroids_ignore_samples_of_no_mode():
    real = np.array([[0.0, 0.0], [2.0, 0.0], [9.0, 9.0], [1.0, 1.0]])
    c = mode_centroids(real, np.array([0, 0, -1, 1]), 3)
    assert np.allclose(c[0], [1.0, 0.0]) and np.allclose(c[1], [1.0, 1.0]) and np.isnan(c[2]).all()


def test_round_sizes_split_every_update():
    assert round_sizes(10, 3) == [4, 3, 3] and sum(round_sizes(10_000, 7)) == 10_000


def test_anneal_lowers_the_guidance_to_nothing_by_the_last_round():
    from omegaconf import OmegaConf

    gcfg = OmegaConf.structured(GuidedConfig(rounds=5, reward_weight=2.0, specialisation=0.4, anneal="all"))
    weights = [round_config(gcfg, r).reward_weight for r in range(1, 6)]
    assert weights == pytest.approx([2.0, 1.5, 1.0, 0.5, 0.0])
    assert round_config(gcfg, 5).specialisation == 0.0 and round_config(gcfg, 1).specialisation == 0.4
    reward_only = OmegaConf.merge(gcfg, {"anneal": "reward"})
    assert (
        round_config(reward_only, 5).reward_weight == 0.0
        and round_config(reward_only, 5).specialisation == 0.4
    )
    plain = OmegaConf.structured(GuidedConfig(rounds=5))
    assert round_config(plain, 5) is plain
    half = OmegaConf.merge(gcfg, {"anneal": "reward", "anneal_to": 0.5})  # a floor: half the weight stays
    assert [round_config(half, r).reward_weight for r in range(1, 6)] == pytest.approx(
        [2.0, 1.75, 1.5, 1.25, 1.0]
    )


def test_plan_from_team_keeps_good_anchors_and_fills_lost_modes():
    # Three modes; the team delivered modes 0 and 1 from anchors 5 and 7; anchor 2's sample was rejected.
    rollout = Rollout(
        samples=np.zeros((4, 2), np.float32),
        modes=np.array([0, 1, 1, -1]),
        accepted=np.array([True, True, False, True]),
        agent=np.array([0, 1, 1, 0]),
        choice=np.array([5, 7, 2, 3]),
    )
    decoded = np.zeros((8, 2), np.float32)
    decoded[4] = [9.0, 9.0]  # the free anchor nearest mode 2
    centroids = np.array([[0.0, 0.0], [1.0, 1.0], [9.0, 9.0]])
    decoded_modes = np.zeros(8, np.int64)  # every anchor decodes into mode 0
    plan = plan_from_team(
        rollout, [np.array([2, 1, 0])], decoded, decoded_modes, centroids, 3, GuidedConfig(), REWARD
    )
    assert plan.regions.tolist() == [5, 7, 4] and plan.n_vacancies == 1
    assert plan.covered.tolist() == [True, True, False] and np.argmax(plan.mode_weights) == 2


def test_updater_trains_regions_to_distinct_outputs_and_leaves_the_model_frozen():
    torch.manual_seed(0)
    model = MLPGAN((2,), latent_dim=2, hidden=32, depth=2)
    model.requires_grad_(False)
    real = np.concatenate([np.full((200, 2), -2.0), np.full((200, 2), 2.0)]).astype(np.float32)
    real += 0.05 * np.random.default_rng(0).standard_normal(real.shape).astype(np.float32)
    anchors = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    cfg = GuidedConfig(region_fraction=1.0, region_spread=0.05)
    updater = GuidedUpdater(model, real, np.repeat([0, 1], 200), anchors, cfg, ModelConfig(batch_size=64), 0)
    plan = RoundPlan(np.array([0, 1]), 0, np.ones(2, bool), np.ones(2), np.ones(2))
    losses = updater.run(300, plan)
    assert set(losses) == {"loss_d", "loss_g", "loss_spec"}
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    # The region classifier tells the two regions' samples apart: their outputs are distinct.
    z = torch.as_tensor(anchors[[0, 1]]).repeat_interleave(50, 0) + 0.05 * torch.randn(100, 2)
    with torch.no_grad():
        predicted = updater.head(model.decode(z)).argmax(1)
    assert (predicted == torch.arange(2).repeat_interleave(50)).float().mean() > 0.9


def test_updater_carries_on_the_warm_up_optimisers_when_asked(tmp_path):
    """continue_optimizers: the rounds start from the cached warm-up's Adam moments, not from scratch;
    a cached model without them is refused with the fix, not silently restarted."""
    data = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)
    cfg = ModelConfig(kind="gan", hidden=8, depth=1, train_steps=7, batch_size=16)
    warm = pretrained_model(cfg, data, 0, tmp_path, progress=False)
    reloaded = load_model_checkpoint(next(tmp_path.glob("gan-*.pt")))
    anchors = np.zeros((2, 2), np.float32)
    modes = np.zeros(64, np.int64)
    for model in (warm, reloaded):
        updater = GuidedUpdater(model, data, modes, anchors, GuidedConfig(continue_optimizers=True), cfg, 0)
        for name, optimizer in updater.optimizers.items():
            moments = optimizer.state_dict()["state"][0]
            assert float(moments["step"]) == 7, name  # seven warm-up steps already taken
            assert torch.equal(moments["exp_avg"], model.optimizer_states[name]["state"][0]["exp_avg"])
    fresh = GuidedUpdater(warm, data, modes, anchors, GuidedConfig(), cfg, 0)
    assert all(not optimizer.state for optimizer in fresh.optimizers.values())
    reloaded.optimizer_states = None  # a checkpoint written before the states were kept
    with pytest.raises(CheckpointError, match="continue_optimizers=false"):
        GuidedUpdater(reloaded, data, modes, anchors, GuidedConfig(continue_optimizers=True), cfg, 0)


def test_procedure_keys_stay_out_of_the_cache_and_new_keys_keep_old_names():
    data = np.zeros((8, 2), np.float32)
    base = model_config_dict(ModelConfig(kind="gan"))
    assert "training" not in base and "guided" not in base
    later = ("standardize", "curve_every", "train_threads")
    old = {k: v for k, v in base.items() if k not in later}  # a config from before these keys
    assert checkpoint_name(base, data, 0) == checkpoint_name(old, data, 0)
    guided = model_config_dict(ModelConfig(kind="gan", training="guided", guided=GuidedConfig(rounds=9)))
    assert checkpoint_name(guided, data, 0) == checkpoint_name(base, data, 0)
    for changed in (ModelConfig(kind="gan", standardize=False), ModelConfig(kind="gan", train_threads=2)):
        assert checkpoint_name(model_config_dict(changed), data, 0) != checkpoint_name(base, data, 0)


def test_learning_curve_does_not_change_the_weights(tmp_path):
    data = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)
    cfg = dict(kind="gan", latent_dim=2, hidden=16, depth=1, train_steps=30, batch_size=16)
    calls = []

    def evaluate(model):
        calls.append(model.training)
        torch.randn(3)  # a careless evaluator touching the global RNG must not change training
        return {"modes_covered": 1}

    plain = pretrained_model(ModelConfig(**cfg), data, 0, tmp_path / "a", progress=False)
    curved = pretrained_model(
        ModelConfig(**cfg, curve_every=10), data, 0, tmp_path / "b", progress=False, evaluate=evaluate
    )
    assert [row["updates"] for row in curved.curve] == [10, 20, 30] and calls == [False] * 3
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), curved.state_dict().values(),
                                                  strict=True))  # fmt: skip
    again = pretrained_model(ModelConfig(**cfg, curve_every=10), data, 0, tmp_path / "b", progress=False,
                             evaluate=evaluate)  # fmt: skip
    assert again.curve == curved.curve and len(calls) == 3  # the cache keeps the curve


def test_learning_curve_ends_at_the_final_model(tmp_path):
    """train_steps no multiple of curve_every: the last point is still the final model, cached or not."""
    data = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)
    cfg = ModelConfig(
        kind="gan", latent_dim=2, hidden=16, depth=1, train_steps=30, batch_size=16, curve_every=20
    )
    evaluate = lambda model: {"modes_covered": float(next(model.parameters()).sum())}  # noqa: E731
    model = pretrained_model(cfg, data, 0, tmp_path, progress=False, evaluate=evaluate)
    assert [row["updates"] for row in model.curve] == [20, 30]
    assert model.curve[-1]["modes_covered"] == evaluate(model)["modes_covered"]  # the model returned
    (path,) = tmp_path.glob("*.pt")  # a cache written before the last point was kept: measured on load
    ckpt = torch.load(path, weights_only=False)
    ckpt["curve"] = ckpt["curve"][:1]
    torch.save(ckpt, path)
    again = pretrained_model(cfg, data, 0, tmp_path, progress=False, evaluate=evaluate)
    assert again.curve == model.curve


def test_raw_coordinates_leave_the_normaliser_alone(tmp_path):
    data = (5.0 + np.random.default_rng(0).standard_normal((64, 2))).astype(np.float32)
    cfg = ModelConfig(kind="gan", hidden=8, depth=1, train_steps=2, batch_size=8, standardize=False)
    model = pretrained_model(cfg, data, 0, tmp_path, progress=False)
    assert torch.equal(model.data_mean, torch.zeros(2)) and model.data_scale.item() == 1.0


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["model=vae"], "model.kind='vae' has none"),
        (["model.guided.warmup_steps=20000"], "must not exceed model.train_steps=20000"),
        (["env.action=continuous"], "set env.action=discrete"),
        (["train.vector_env=subproc"], "set train.vector_env=batched or dummy"),
        (["model.guided.signal=oracle"], "model.guided.signal='oracle' is not one of team, greedy"),
        (["model.guided.region_fraction=1.5"], "must lie in [0.0, 1.0]"),
        (["model.guided.anneal=linear"], "model.guided.anneal='linear' is not one of none, reward, all"),
        (["model.guided.anneal_to=2"], "model.guided.anneal_to"),
        (["model.guided.quality=oracle"], "quality='oracle' is not one of assigner, discriminator"),
        (["model.guided.disc_quantile=1"], "model.guided.disc_quantile"),
    ],
)
def test_bad_guided_settings_are_refused(overrides, needle):
    with pytest.raises(ConfigError) as err:
        load_scenario(GUIDED, overrides)
    assert needle in str(err.value)


def test_short_guided_run_writes_the_model_curve(tmp_path, cache_dir):
    out = tmp_path / "run"
    code = main(
        [
            str(GUIDED),
            f"out_dir={out}",
            f"cache_dir={cache_dir}",
            "model.train_steps=260",
            "model.curve_every=100",
            "model.guided.warmup_steps=200",
            "model.guided.rounds=2",
            "model.guided.agent_epochs=1",
            "train.epochs=1",
            "train.steps_per_epoch=300",
            "train.steps_per_collect=150",
            "train.n_envs=2",
            "eval.budget=300",
            "eval.small_budget_episodes=3",
            "--no-progress",
        ]
    )
    assert code == 0 and json.loads((out / "status.json").read_text())["state"] == "complete"
    curve = json.loads((out / "model_curve.json").read_text())
    # Warm-up curve (100), the round-0 measurement at the warm-up's end (200), then the rounds' (230, 260).
    assert [row["updates"] for row in curve] == [100, 200, 230, 260]
    assert all(0 <= row["modes_covered"] <= 25 for row in curve)
    assert [row.get("team_modes_covered") is not None for row in curve] == [False, False, True, True]
    assert (out / "guided" / "round_2" / "checkpoints" / "best.pt").is_file()
    report = (out / "report.md").read_text()
    assert "## Generative model training" in report and "| 260 |" in report
    assert (out / "model_curve.png").stat().st_size > 10_000


def test_compare_trains_the_guided_rounds_once_per_seed(tmp_path, cache_dir, capsys):
    """A guided scenario in the comparison command: even the plain-prior baseline samples the model
    guidance trained, not the warm-up model. A seed's later job loads the rounds (model and team) the
    first one trained (marlgen.shared_rounds) and gets the figures and training it gets from training
    them itself. Studies "a" and "b" each train the rounds in their first job and load them in the
    second, run after it into the same folder (as a resumed study runs a missing job)."""
    from marlgen import compare

    def study(name: str, methods: str) -> dict:
        out = tmp_path / name
        argv = [str(GUIDED), "--seeds", "1", "--workers", "1", "--methods", methods, "--out", str(out)]
        argv += [f"cache_dir={cache_dir}", "model.train_steps=230", "model.guided.warmup_steps=200"]
        argv += ["model.guided.rounds=1", "model.guided.agent_epochs=1", "train.epochs=1"]
        argv += ["train.steps_per_epoch=512", "eval.budget=300", "eval.small_budget_episodes=3"]
        assert compare.main(argv) == 0
        return {m: json.loads((out / f"runs/{m}/seed0/result.json").read_text()) for m in methods.split(",")}

    trained = {"prior": study("a", "prior")["prior"], "team_ppo": study("b", "team_ppo")["team_ppo"]}
    loaded = {
        "team_ppo": study("a", "prior,team_ppo")["team_ppo"],
        "prior": study("b", "team_ppo,prior")["prior"],
    }
    untimed = lambda history: [{k: v for k, v in row.items() if "seconds" not in k} for row in history]  # noqa: E731
    for method in ("prior", "team_ppo"):
        assert loaded[method]["figures"] == trained[method]["figures"]
        assert untimed(loaded[method]["history"]) == untimed(trained[method]["history"])
    assert trained["team_ppo"]["history"]  # the team trained on, from the rounds' last team
    for name in ("a", "b"):
        assert len(list((tmp_path / name / "guided_rounds").iterdir())) == 1  # one seed, one config
        for method in ("prior", "team_ppo"):
            history = json.loads((tmp_path / name / f"runs/{method}/seed0/guided/history.json").read_text())
            assert [row["updates"] for row in history] == [200, 230]
    # Rounds that load only in part (another version's file) are said in a line and trained again
    # from the warm-up model, not from the half-loaded one (the model loads, the judge does not).
    (state,) = (tmp_path / "a" / "guided_rounds").glob("*/rounds.pt")
    torch.save({"team_states": {}}, state)  # no judge
    (tmp_path / "a" / "runs" / "prior" / "seed0" / "result.json").unlink()
    assert study("a", "prior")["prior"]["figures"] == trained["prior"]["figures"]
    assert "not usable guided rounds" in capsys.readouterr().out


class _FirstCoordinate(torch.nn.Module):
    """A stand-in GAN whose discriminator logit is the sample's first coordinate, decoding z to z."""

    latent_dim = 2

    def discriminate(self, x):
        return x[:, 0]

    def decode(self, z):
        return z


def _mixture_assigner():
    from marlgen.modes import MixtureModes

    return MixtureModes(np.array([[0.0, 0.0], [10.0, 0.0]]), std=0.1)  # two modes; 3 std = 0.3


def test_discriminator_gate_replaces_the_three_std_rule_by_the_gan_s_own_verdict():
    real = np.stack([np.arange(100.0), np.zeros(100)], 1)  # logits 0..99 on real data
    gate = DiscriminatorGate(_FirstCoordinate(), real, quantile=0.05)
    assert gate.threshold == pytest.approx(np.quantile(np.arange(100.0), 0.05))  # 4.95
    modes = GatedModes(_mixture_assigner(), gate)
    x = np.array([[10.0, 0.0], [9.0, 2.0], [4.0, 0.0], [0.0, 0.0]])
    # Sample 1 lies 20 std from mode 1 (the 3-std rule says -1) but the gate passes it: labelled 1.
    # Samples 2 and 3 fail the gate (logits 4 and 0), sample 3 though it sits on mode 0's mean.
    assert modes(x).tolist() == [1, 1, -1, -1] and modes.n_modes == 2
    assert _mixture_assigner()(x).tolist() == [1, -1, -1, 0]  # the evaluation's rule, for contrast
    judge = GateJudge(gate)
    assert judge.score(np.array([[gate.threshold, 0.0]]))[0] == pytest.approx(0.5)  # 0.5 is the gate's bar
    assert (np.diff(judge.score(x[::-1])) >= 0).all() and judge.state_dict() == {}


def test_round_parts_swap_in_the_gate_only_for_quality_discriminator():
    from marlgen.build import Parts

    parts = Parts(dataset=None, model=_FirstCoordinate(), assigner=_mixture_assigner(), judge="oracle")
    real = np.stack([np.arange(100.0), np.zeros(100)], 1)
    assert round_parts(parts, GuidedConfig(), real) is parts
    gated = round_parts(parts, GuidedConfig(quality="discriminator", disc_quantile=0.5), real)
    assert isinstance(gated.assigner, GatedModes) and isinstance(gated.judge, GateJudge)
    assert gated.judge.gate.threshold == pytest.approx(49.5) and gated.model is parts.model
    with pytest.raises(ConfigError, match="quality=assigner"):
        mode_labels(SimpleNamespace(n_modes=3))  # an assigner with no labels of its own


def test_discriminator_regions_pick_the_most_real_looking_anchor_per_label():
    real = np.stack([np.arange(100.0), np.zeros(100)], 1)
    anchors = np.array([[8.0, 0.0], [9.5, 0.0], [1.0, 0.0], [6.0, 0.0], [60.0, 0.0]], np.float32)
    # Labels (nearest of the means 0 and 10): 1, 1, 0, 1, 1; logits = first coordinate; gate at 4.95.
    # Anchor 2 (mode 0) fails the gate; of mode 1's, anchor 4 has the highest logit though it lies far
    # from every mode: the discriminator, not the 3-std rule, decides.
    regions = discriminator_regions(_FirstCoordinate(), _mixture_assigner(), anchors, real, 0.05)
    assert regions.tolist() == [4]
    figures = greedy_mixture_figures(
        _FirstCoordinate(), _mixture_assigner(), anchors, real, GuidedConfig(), budget=300, seed=0
    )
    assert figures["dmix_regions"] == 1 and set(figures) == {
        "dmix_regions", "dmix_modes_covered", "dmix_high_quality_fraction", "dmix_reverse_kl"
    }  # fmt: skip


def greedy_rounds(cache_dir, *overrides):
    """A short guided config (two rounds of 30 updates, greedy signal: no team training) and its parts."""
    from marlgen.build import build_parts

    cfg = load_scenario(GUIDED, [
        f"cache_dir={cache_dir}", "model.train_steps=260", "model.guided.warmup_steps=200",
        "model.guided.rounds=2", "model.guided.signal=greedy", "eval.budget=300", *overrides,
    ])  # fmt: skip
    return cfg, build_parts(cfg, progress=False)


def test_greedy_rounds_with_the_discriminator_gate_update_the_model(tmp_path, cache_dir):
    """quality=discriminator end to end through guide (greedy signal: no team training, fast)."""
    from marlgen.guided import guide

    cfg, parts = greedy_rounds(cache_dir, "model.curve_every=100", "model.guided.quality=discriminator")
    before = [p.clone() for p in parts.model.generator.parameters()]
    history = guide(cfg, parts, tmp_path, progress=False, log=lambda *a: None).history
    assert [row["updates"] for row in history] == [200, 230, 260]
    assert all("mixture_modes_covered" in row and "dmix_modes_covered" in row for row in history[1:])
    assert not all(torch.equal(a, b) for a, b in zip(before, parts.model.generator.parameters(), strict=True))
    assert parts.assigner.__class__.__name__ == "MixtureModes"  # the evaluation's assigner is untouched


def test_consolidation_shows_the_discriminator_the_prior_s_fakes_alone(tmp_path, cache_dir, monkeypatch):
    """consolidate: the last updates of all (across rounds) train the discriminator on N(0, I) fakes only."""
    from marlgen.build import build_parts
    from marlgen.guided import guide

    torch.manual_seed(0)
    model = MLPGAN((2,), latent_dim=2, hidden=8, depth=1)
    real = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)
    updater = GuidedUpdater(model, real, np.zeros(64, np.int64), np.zeros((3, 2), np.float32),
                            GuidedConfig(region_fraction=0.5), ModelConfig(batch_size=16), 0)  # fmt: skip
    seen = []
    discriminate = model.discriminate
    monkeypatch.setattr(model, "discriminate", lambda x: seen.append(len(x)) or discriminate(x))
    plan = RoundPlan(np.array([0, 1]), 0, np.ones(1, bool), np.ones(1), np.ones(1))
    updater.run(1, plan)
    assert seen == [16, 24, 24]  # real; every fake (16 prior + 8 region); the generator's pass
    seen.clear()
    updater.run(1, plan, sampler_only=True)
    assert seen == [16, 16, 24]  # the discriminator trains on the 16 prior fakes; the generator on all

    calls = []
    monkeypatch.setattr(GuidedUpdater, "run", lambda self, n, plan, sampler_only=False, region_draw=None:
                        calls.append((n, sampler_only)) or {})  # fmt: skip
    cfg = load_scenario(GUIDED, [
        f"cache_dir={cache_dir}", "model.train_steps=260", "model.curve_every=100",
        "model.guided.warmup_steps=200", "model.guided.rounds=2", "model.guided.signal=greedy",
        "model.guided.consolidate=40", "eval.budget=300",
    ])  # fmt: skip
    guide(cfg, build_parts(cfg, progress=False), tmp_path, progress=False, log=lambda *a: None)
    assert calls == [(20, False), (10, True), (30, True)]  # rounds of 30: the last 40 updates
    with pytest.raises(ConfigError, match="must not exceed the guided updates"):
        load_scenario(GUIDED, ["model.guided.consolidate=10001"])


def test_region_sampler_consolidates_on_region_latents_alone(monkeypatch):
    """sampler=regions: consolidating, the whole fake batch comes from the regions, in the given shares."""
    torch.manual_seed(0)
    model = MLPGAN((2,), latent_dim=2, hidden=8, depth=1)
    real = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32)
    anchors = np.array([[-5.0, 0.0], [5.0, 0.0], [0.0, 5.0]], np.float32)
    gcfg = GuidedConfig(region_fraction=0.5, region_spread=0.01, sampler="regions")
    updater = GuidedUpdater(model, real, np.zeros(64, np.int64), anchors, gcfg, ModelConfig(batch_size=16), 0)
    seen, decoded = [], []
    discriminate, decode = model.discriminate, model.decode
    monkeypatch.setattr(model, "discriminate", lambda x: seen.append(len(x)) or discriminate(x))
    monkeypatch.setattr(model, "decode", lambda z: decoded.append(z.detach().clone()) or decode(z))
    plan = RoundPlan(np.array([0, 1]), 0, np.ones(1, bool), np.ones(1), np.ones(1))
    updater.run(1, plan, region_draw=np.array([0.5, 0.5]))
    assert seen == [16, 24, 24]  # before consolidating: N(0, I) and region fakes, as for sampler=prior
    seen.clear(), decoded.clear()
    updater.run(50, plan, sampler_only=True, region_draw=np.array([0.0, 1.0]))
    assert seen[:3] == [16, 16, 16]  # real; 16 region fakes, no N(0, I) ones; the generator's pass
    z = torch.cat(decoded)
    assert torch.cdist(z, torch.as_tensor(anchors[[1]])).max() < 0.1  # only region 1 (share 1)


def test_region_weights_give_each_mode_its_share_of_the_data():
    plan = RoundPlan(np.array([4, 7, 9]), 0, np.ones(2, bool), np.ones(2), np.ones(2),
                     region_modes=np.array([0, 1, 1]))  # fmt: skip
    real_modes = np.array([0, 0, 0, 1, -1])  # mode 0 holds 3 of the 4 labelled samples
    assert np.allclose(region_weights(plan, real_modes, 2), [0.75, 0.125, 0.125])
    empty = RoundPlan(np.zeros(0, np.int64), 0, np.zeros(2, bool), np.ones(2), np.ones(2),
                      region_modes=np.zeros(0, np.int64))  # fmt: skip
    with pytest.raises(ValueError, match="vacancies=true"):
        region_weights(empty, real_modes, 2)


def test_region_sampler_becomes_the_guided_model_s_prior(tmp_path, cache_dir):
    """sampler=regions through guide: after each round the model samples the plan's regions, so its
    "prior" figures are the mixture's; the N(0, I) figures are kept beside them (normal_*)."""
    from marlgen.guided import guide

    cfg, parts = greedy_rounds(cache_dir, "model.guided.sampler=regions", "model.guided.consolidate=30")
    assert parts.model.latent_prior.is_normal
    history = guide(cfg, parts, tmp_path, progress=False, log=lambda *a: None).history
    prior = parts.model.latent_prior
    assert not prior.is_normal and len(prior.means) == history[-1]["regions"]
    assert abs(float(prior.spread) - cfg.model.guided.region_spread) < 1e-7
    assert all("normal_high_quality_fraction" in row for row in history[1:])
    anchors = make_env(cfg, parts).anchors
    assert all(any(np.allclose(m, a) for a in anchors) for m in prior.means.numpy())  # each on an anchor
    saved = load_model_checkpoint(tmp_path / "guided" / "model.pt")  # the run keeps the guided model
    assert torch.equal(saved.latent_prior.means, prior.means) and saved.curve == history
    prior.clear()  # the same draw from N(0, I) is what normal_* counted
    assert (
        prior_figures(parts.model, parts.assigner, 300, cfg.seed + 1)["high_quality_fraction"]
        == (history[-1]["normal_high_quality_fraction"])
    )


def test_rounds_roll_the_team_out_by_sampling_when_asked(tmp_path, cache_dir, monkeypatch):
    """team_actions=sample: the round's rollout draws each action from the policy (an actor with its own
    seeded random state); greedy (the default) replays the most likely anchors."""
    import marlgen.guided as guided

    actors = []
    steer = guided.steer
    monkeypatch.setattr(
        guided, "steer", lambda env, actor, *a, **k: actors.append(actor) or steer(env, actor, *a, **k)
    )
    base = [
        f"cache_dir={cache_dir}", "model.train_steps=230", "model.curve_every=100",
        "model.guided.warmup_steps=200", "model.guided.rounds=1", "model.guided.agent_epochs=1",
        "train.steps_per_epoch=300", "train.steps_per_collect=150", "train.n_envs=2", "eval.budget=200",
    ]  # fmt: skip
    from marlgen.build import build_parts

    for actions in ("greedy", "sample"):
        cfg = load_scenario(GUIDED, [*base, f"model.guided.team_actions={actions}"])
        guided.guide(
            cfg, build_parts(cfg, progress=False), tmp_path / actions, progress=False, log=lambda *a: None
        )
    assert actors[0].rng is None and actors[1].rng is not None
    with pytest.raises(ConfigError, match="team_actions"):
        load_scenario(GUIDED, ["model.guided.team_actions=best"])


def one_agent_rollout(modes, accepted, choice) -> Rollout:
    """A rollout of one agent's 2-d samples (values unused), as plan_from_team reads it."""
    n = len(modes)
    return Rollout(
        samples=np.zeros((n, 2), np.float32),
        modes=np.array(modes),
        accepted=np.array(accepted, bool),
        agent=np.zeros(n, np.int64),
        choice=np.array(choice),
    )


def test_per_mode_regions_keep_the_anchor_that_delivered_each_mode_most():
    # Mode 0 delivered by anchors 5 (twice) and 6 (once); mode 1 by anchor 7; anchor 2's sample rejected.
    rollout = one_agent_rollout(modes=[0, 0, 0, 1, 1], accepted=[1, 1, 1, 1, 0], choice=[5, 6, 5, 7, 2])
    decoded, centroids = np.zeros((8, 2), np.float32), np.zeros((3, 2))
    args = ([np.array([3, 1, 0])], decoded, np.zeros(8, np.int64), centroids, 3)
    every = plan_from_team(rollout, *args, GuidedConfig(vacancies=False), REWARD)
    assert every.regions.tolist() == [5, 6, 7]
    one = plan_from_team(rollout, *args, GuidedConfig(vacancies=False, regions="per_mode"), REWARD)
    assert one.regions.tolist() == [5, 7] and one.covered.tolist() == [True, True, False]
    with pytest.raises(ConfigError, match="regions"):
        load_scenario(GUIDED, ["model.guided.regions=some"])


def test_per_mode_regions_never_share_an_anchor_between_two_modes():
    """Anchor 5 delivered mode 0 three times and mode 1 twice: it stands for mode 0, mode 1 takes its
    next best anchor (6); mode 2, delivered only from anchor 5, becomes a vacancy on a free anchor."""
    rollout = one_agent_rollout(modes=[0, 0, 0, 1, 1, 1, 2], accepted=[1] * 7, choice=[5, 5, 5, 5, 5, 6, 5])
    decoded = np.zeros((8, 2), np.float32)
    decoded[3] = [9.0, 9.0]  # the free anchor decoding nearest mode 2's centroid
    centroids = np.array([[0.0, 0.0], [1.0, 1.0], [9.0, 9.0]])
    gcfg = GuidedConfig(regions="per_mode", specialise_to="mode")
    plan = plan_from_team(rollout, [np.array([3, 3, 1])], decoded, np.full(8, -1), centroids, 3, gcfg, REWARD)
    pairs = list(zip(plan.regions.tolist(), plan.region_modes.tolist(), strict=True))
    assert pairs == [(5, 0), (6, 1), (3, 2)]
    assert plan.n_vacancies == 1 and plan.covered.all()


def test_kept_regions_hold_their_modes_and_new_ones_fill_the_rest():
    """keep_regions: last round's (anchor, mode) pairs stay, whatever this round's rollout favoured."""
    decoded, centroids = np.zeros((10, 2), np.float32), np.array([[0.0, 0.0], [1.0, 1.0], [9.0, 9.0]])
    decoded[4] = [9.0, 9.0]  # the free anchor nearest mode 2
    # Last round: anchor 5 held mode 0, anchor 8 was the vacancy given to mode 1.
    previous = RoundPlan(np.array([5, 8]), 1, np.array([True, False, False]), np.ones(3), np.ones(3),
                         region_modes=np.array([0, 1]))  # fmt: skip
    # This round mode 0 came most from anchor 6 and mode 1 from anchor 7; mode 2 from nobody.
    rollout = one_agent_rollout(modes=[0, 0, 1], accepted=[1, 1, 1], choice=[6, 6, 7])
    args = ([np.array([2, 1, 0])], decoded, np.zeros(10, np.int64), centroids, 3)
    gcfg = GuidedConfig(regions="per_mode", keep_regions=True)
    fresh = plan_from_team(rollout, *args, gcfg, REWARD)
    assert fresh.regions.tolist() == [6, 7, 4] and fresh.region_modes.tolist() == [0, 1, 2]
    kept = plan_from_team(rollout, *args, gcfg, REWARD, previous=previous)
    assert kept.regions.tolist() == [5, 8, 4] and kept.region_modes.tolist() == [0, 1, 2]
    assert kept.n_vacancies == 1  # mode 2: the team delivered modes 0 and 1
    # A kept region on a mode this round's team missed counts as a vacancy (specialise_regions=vacancies).
    missed = one_agent_rollout(modes=[0], accepted=[1], choice=[6])
    plan = plan_from_team(missed, *args, gcfg, REWARD, previous=previous)
    assert plan.regions.tolist() == [5, 8, 4] and plan.n_vacancies == 2


def test_plans_name_the_mode_each_region_stands_for():
    # anchor 6 delivered mode 0 once and mode 1 twice
    rollout = one_agent_rollout(modes=[0, 0, 1, 1, 1], accepted=[1, 1, 1, 1, 1], choice=[5, 6, 6, 6, 7])
    decoded = np.zeros((8, 2), np.float32)
    decoded[4] = [9.0, 9.0]
    centroids = np.array([[0.0, 0.0], [1.0, 1.0], [9.0, 9.0]])
    plan = plan_from_team(rollout, [np.array([2, 3, 0])], decoded, np.zeros(8, np.int64), centroids, 3,
                          GuidedConfig(), REWARD)  # fmt: skip
    assert plan.regions.tolist() == [5, 6, 7, 4] and plan.region_modes.tolist() == [0, 1, 1, 2]  # 4: vacancy


def test_mode_specialisation_pulls_a_region_onto_its_mode():
    """specialise_to=mode (AC-GAN): the head learns labelled real samples; a region standing for mode 1
    is pulled there even from an anchor that starts elsewhere."""
    torch.manual_seed(0)
    model = MLPGAN((2,), latent_dim=2, hidden=32, depth=2)
    model.requires_grad_(False)
    real = np.concatenate([np.full((200, 2), -2.0), np.full((200, 2), 2.0)]).astype(np.float32)
    real += 0.05 * np.random.default_rng(0).standard_normal(real.shape).astype(np.float32)
    anchors = np.array([[-1.0, 0.0], [1.0, 0.0]], np.float32)
    cfg = GuidedConfig(region_fraction=1.0, region_spread=0.05, specialisation=1.0, specialise_to="mode")
    updater = GuidedUpdater(model, real, np.repeat([0, 1], 200), anchors, cfg, ModelConfig(batch_size=64), 0)
    assert updater.head(torch.zeros(1, 2)).shape == (1, 2)  # one logit per mode, not per anchor
    plan = RoundPlan(
        np.array([0, 1]), 0, np.ones(2, bool), np.ones(2), np.ones(2), region_modes=np.array([1, 0])
    )
    updater.run(400, plan)
    with torch.no_grad():
        out = model.decode(torch.as_tensor(anchors))
    assert out[0, 0] > 0 > out[1, 0]  # anchor 0 now decodes on mode 1 (+2), anchor 1 on mode 0 (-2)
    with pytest.raises(ValueError, match="region_modes"):
        updater.run(1, RoundPlan(np.array([0, 1]), 0, np.ones(2, bool), np.ones(2), np.ones(2)))
    with pytest.raises(ConfigError, match="specialise_to"):
        load_scenario(GUIDED, ["model.guided.specialise_to=anchor"])


def test_specialising_vacancies_only_leaves_the_other_regions_to_the_gan_loss():
    """specialise_regions=vacancies: only the lost modes' regions (the plan's last n_vacancies) are pulled."""
    torch.manual_seed(0)
    model = MLPGAN((2,), latent_dim=2, hidden=32, depth=2)
    model.requires_grad_(False)
    real = np.concatenate([np.full((200, 2), -2.0), np.full((200, 2), 2.0)]).astype(np.float32)
    anchors = np.array([[-1.0, 0.0], [1.0, 0.0]], np.float32)
    cfg = GuidedConfig(region_fraction=1.0, region_spread=0.05, specialisation=1.0, specialise_to="mode",
                       specialise_regions="vacancies")  # fmt: skip
    updater = GuidedUpdater(model, real, np.repeat([0, 1], 200), anchors, cfg, ModelConfig(batch_size=64), 0)

    def plan(n_vacancies):
        return RoundPlan(np.array([0, 1]), n_vacancies, np.ones(2, bool), np.ones(2), np.ones(2),
                         region_modes=np.array([1, 0]))  # fmt: skip

    assert updater.run(1, plan(0))["loss_spec"] == 0.0  # no vacancy: nothing is pulled
    assert updater.run(1, plan(1))["loss_spec"] > 0.0
    updater.run(400, plan(1))  # region 1 (anchor 1) is the vacancy, standing for mode 0
    with torch.no_grad():
        out = model.decode(torch.as_tensor(anchors))
    assert out[1, 0] < 0  # pulled onto mode 0 (-2)
    with pytest.raises(ConfigError, match="specialise_regions"):
        load_scenario(GUIDED, ["model.guided.specialise_regions=some"])
