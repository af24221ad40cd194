"""Every train.vector_env trains the same team: env copies are seeded alike in each (Tianshou's dummy,
subproc and ray, and marlgen.batched)."""

import pytest
import torch

from marlgen.build import build_parts
from marlgen.train import train
from tests.conftest import ROOT, quick_config

TINY = ["train.n_envs=2", "train.epochs=1", "train.steps_per_epoch=600", "train.steps_per_collect=300"]


def trained(kind: str, cache_dir, tmp_path):
    cfg = quick_config(ROOT / "scenarios/gmm_ring8.yaml", cache_dir, *TINY, f"train.vector_env={kind}")
    result = train(
        cfg, build_parts(cfg, progress=False), tmp_path / kind, progress=False, log=lambda *a: None
    )
    policy = result.team.algorithm.get_algorithm("generator").policy
    return result.history[0]["episode_modes_covered"], {k: v.clone() for k, v in policy.state_dict().items()}


def assert_same(a, b):
    assert a[0] == b[0]
    for key, tensor in a[1].items():
        assert torch.equal(tensor, b[1][key]), key


@pytest.fixture(scope="module")
def in_process(cache_dir, tmp_path_factory):
    return trained("dummy", cache_dir, tmp_path_factory.mktemp("dummy"))


def test_subprocess_envs_train_as_in_process_ones(in_process, cache_dir, tmp_path):
    assert_same(in_process, trained("subproc", cache_dir, tmp_path))


def test_batched_copies_train_as_separate_envs(in_process, cache_dir, tmp_path):
    assert_same(in_process, trained("batched", cache_dir, tmp_path))


@pytest.mark.ray
def test_ray_envs_train_as_in_process_ones(in_process, cache_dir, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is optional: pip install -e '.[ray]'")
    try:
        assert_same(in_process, trained("ray", cache_dir, tmp_path))
    finally:
        ray.shutdown()  # the local Ray that RayVectorEnv started
