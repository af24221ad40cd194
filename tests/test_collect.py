"""marlgen.collect: the collector's cheap episode bookkeeping changes nothing it collects or reports."""

import numpy as np
import pytest
import torch
from tianshou.data import Batch, CollectStats

import marlgen.train
from marlgen.buffers import EpisodeLength, SlotReplayBuffer
from marlgen.build import build_parts
from marlgen.collect import EpisodeStats
from marlgen.train import train
from tests.conftest import ROOT, quick_config


@pytest.mark.parametrize("vector_returns", [False, True])
def test_episode_stats_equal_tianshous(vector_returns):
    rng = np.random.default_rng(0)
    ours, theirs = EpisodeStats(), CollectStats()
    for burst in (3, 1, 5):  # refreshed between bursts, as each collect does at its end
        for _ in range(burst):
            n = int(rng.integers(1, 6))
            ret = rng.normal(size=3) if vector_returns else float(rng.normal())
            for stats in (ours, theirs):
                stats.update_at_episode_done(EpisodeLength(n), ret)
        for stats in (ours, theirs):
            stats.refresh_all_sequence_stats()
        assert np.array_equal(ours.returns, theirs.returns) and ours.returns.dtype == theirs.returns.dtype
        assert np.array_equal(ours.lens, theirs.lens) and ours.lens.dtype == theirs.lens.dtype
        assert ours.returns_stat == theirs.returns_stat and ours.lens_stat == theirs.lens_stat
        assert ours.n_collected_episodes == theirs.n_collected_episodes


def test_buffer_gives_lengths_only_inside_its_context():
    buffer = SlotReplayBuffer(8, 2)
    step = Batch(obs=np.zeros((2, 3)), act=np.zeros(2), rew=np.zeros(2), terminated=np.zeros(2, bool),
                 truncated=np.zeros(2, bool), done=np.zeros(2, bool), obs_next=np.zeros((2, 3)),
                 info=np.array([{}, {}], dtype=object))  # fmt: skip
    buffer.add(step, buffer_ids=[0, 1])
    with buffer.lengths_only():
        assert isinstance(buffer[np.array([0])], EpisodeLength) and len(buffer[np.array([0, 4])]) == 2
    assert isinstance(buffer[np.array([0])], Batch)  # and a real batch again outside


def test_episode_lengths_only_equal_the_lengths_of_tianshou_s_episode_indices():
    buffer = SlotReplayBuffer(12, 3)  # sub-buffers of 4: [0, 4), [4, 8), [8, 12)
    for lo in (0, 4, 8):
        for start in range(lo, lo + 4):
            for stop in range(lo + 1, lo + 5):  # an episode's last index + 1, across the end or not
                indices = buffer.get_buffer_indices(start, stop)
                with buffer.lengths_only():
                    episode = buffer[buffer.get_buffer_indices(start, stop)]
                assert isinstance(episode, EpisodeLength) and len(episode) == len(indices), (start, stop)


TINY = ["train.n_envs=2", "train.epochs=1", "train.steps_per_epoch=600", "train.steps_per_collect=300"]


def test_training_through_slot_collector_equals_tianshous_collector(cache_dir, tmp_path, monkeypatch):
    cfg = quick_config(ROOT / "scenarios/gmm_ring8.yaml", cache_dir, *TINY)
    parts = build_parts(cfg, progress=False)

    def trained(name):
        result = train(cfg, parts, tmp_path / name, progress=False, log=lambda *a: None)
        state = result.team.algorithm.get_algorithm("generator").policy.state_dict()
        return result.history[0]["episode_modes_covered"], {k: v.clone() for k, v in state.items()}

    ours = trained("slot")
    from tianshou.data import Collector

    monkeypatch.setattr(marlgen.train, "SlotCollector", Collector)
    theirs = trained("tianshou")
    assert ours[0] == theirs[0]
    for key, tensor in ours[1].items():
        assert torch.equal(tensor, theirs[1][key]), key
