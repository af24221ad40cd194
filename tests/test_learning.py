"""The learning test: a trained team must coordinate, not just run.

Ring-8 with 4 generators and 16 samples an episode (2 per mode): the optimum covers all 8 modes
every episode; uniformly random agents cover about 5.6 (DESIGN.md: coordination is the hard
part). A team whose agents all drift to the same modes scores below random.
"""

import numpy as np
import pytest

from marlgen.build import build_parts, make_env
from marlgen.evaluate import RandomActor, modes_covered, steer
from marlgen.train import train
from tests.conftest import ROOT, quick_config

OPTIMUM = 8


@pytest.mark.slow
def test_trained_team_covers_ring8_far_better_than_random(tmp_path, cache_dir):
    cfg = quick_config(
        ROOT / "scenarios/gmm_ring8.yaml",
        cache_dir,
        "model.train_steps=5000",  # about half the prior's samples high quality: enough anchors
        # 3 epochs passed on one machine and not on another (numerics differ by CPU): seed 0 covered 6.0,
        # seeds 0-3 gave 6.0, 8.0, 8.0, 6.95; with 5 epochs seeds 0, 3 and 4 all reach 8.0.
        "train.epochs=5",
        "train.steps_per_epoch=8192",
    )
    parts = build_parts(cfg, progress=False)
    result = train(cfg, parts, tmp_path, progress=False, log=lambda *_: None)

    budget = cfg.env.episode_budget * 40
    team = modes_covered(steer(make_env(cfg, parts), result.team.actor(), budget, seed=123)[1])
    env = make_env(cfg, parts)
    random = modes_covered(steer(env, RandomActor(env, seed=123), budget, seed=123)[1])
    print(
        f"modes per 16-sample episode: team {np.mean(team):.2f}, random {np.mean(random):.2f}, "
        f"optimum {OPTIMUM}"
    )
    assert np.mean(team) >= 7.5
    assert np.mean(team) - np.mean(random) >= 1.5
