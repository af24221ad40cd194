"""SlotReplayBuffer gives Tianshou's VectorReplayBuffer's answers, without its loops."""

import numpy as np
from tianshou.data import Batch, VectorReplayBuffer

from marlgen.buffers import SlotReplayBuffer


def filled(cls, steps: int, rng_seed: int = 0):
    """Both buffers fed the same transitions: 5 sub-buffers of 6, some filled past wrap-around,
    random episode ends, and sub-buffers stepped unevenly (one is never stepped)."""
    rng = np.random.default_rng(rng_seed)
    buf = cls(30, 5)
    for t in range(steps):
        ids = np.array([b for b in range(4) if b != 3 or t % 3 == 0])  # sub-buffer 3 lags, 4 stays empty
        done = rng.random(len(ids)) < 0.3
        buf.add(
            Batch(obs=rng.random((len(ids), 2)), act=np.zeros(len(ids)), rew=rng.random(len(ids)),
                  terminated=done, truncated=np.zeros(len(ids), bool), obs_next=rng.random((len(ids), 2))),
            buffer_ids=ids,
        )  # fmt: skip
    return buf


def test_next_prev_unfinished_match_tianshou():
    for steps in (1, 4, 9, 25):
        ours, theirs = filled(SlotReplayBuffer, steps), filled(VectorReplayBuffer, steps)
        every = np.arange(-3, 33)
        np.testing.assert_array_equal(ours.next(every), theirs.next(every))
        np.testing.assert_array_equal(ours.prev(every), theirs.prev(every))
        assert ours.next(7) == theirs.next(7) and ours.prev(7) == theirs.prev(7)
        np.testing.assert_array_equal(ours.unfinished_index(), theirs.unfinished_index())


def test_samples_are_uniform_over_stored_transitions():
    buf = filled(SlotReplayBuffer, 25)
    stored = set(VectorReplayBuffer.sample_indices(buf, 0).tolist())  # Tianshou's "all indices"
    draws = buf.sample_indices(60_000)
    assert set(draws.tolist()) == stored
    counts = np.bincount(draws, minlength=30)[sorted(stored)]
    assert np.abs(counts / counts.mean() - 1).max() < 0.1  # ~2,800 draws each: within 10%
    assert len(buf.sample_indices(0)) == len(stored)


def test_null_check_answers_as_tianshou_s():
    """hasnull, which Tianshou's Collector runs after every collect: the same verdict, read in place."""
    assert not SlotReplayBuffer(30, 5).hasnull()  # Tianshou's raises KeyError on an empty buffer
    for steps in (1, 9, 25):
        ours, theirs = filled(SlotReplayBuffer, steps), filled(VectorReplayBuffer, steps)
        assert ours.hasnull() is theirs.hasnull() is False
    for field, value in (("rew", np.nan), ("obs", np.nan), ("obs_next", np.nan), ("score", np.nan),
                         ("tag", None), ("act", 3)):  # fmt: skip
        answers = []
        for cls in (SlotReplayBuffer, VectorReplayBuffer):
            buf = cls(30, 5)
            for t in range(4):
                step = Batch(obs=np.zeros((2, 2)), act=np.zeros(2, np.int64), rew=np.zeros(2),
                             terminated=np.zeros(2, bool), truncated=np.zeros(2, bool),
                             obs_next=np.zeros((2, 2)),
                             info=Batch(score=np.ones(2), tag=np.array(["a", "b"], object)))  # fmt: skip
                if t == 2:
                    target = step.info if field in ("score", "tag") else step
                    target[field][1] = value
                buf.add(step, buffer_ids=[0, 2])
            answers.append(buf.hasnull())
        assert answers[0] == answers[1] == (field != "act"), field
    stale = filled(SlotReplayBuffer, 9)
    stale.rew[:] = np.nan  # storage only: after a reset no stored transition holds it
    stale.reset(keep_statistics=True)
    assert not stale.hasnull()
