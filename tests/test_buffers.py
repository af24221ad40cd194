"""SlotReplayBuffer gives Tianshou's VectorReplayBuffer's answers, without its loops."""

import numpy as np
import pytest
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
    stored = set(filled(VectorReplayBuffer, 25).sample_indices(0).tolist())  # Tianshou's "all indices"
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


# --- add: every sub-buffer's state at once ---------------------------------------------------------


def random_add(rng, n_sub: int, roles: int, rew_dtype):
    """One add of a random subset of sub-buffers (in random order), random episode ends, rewards as
    scalars (roles=0) or (slots, roles) vectors."""
    ids = rng.permutation(n_sub)[: rng.integers(1, n_sub + 1)]
    n = len(ids)
    rew = rng.normal(size=(n, roles) if roles else n).astype(rew_dtype)
    terminated, truncated = rng.random(n) < 0.2, rng.random(n) < 0.1
    step = Batch(obs=rng.random((n, 3)).astype(np.float32), act=rng.integers(0, 5, n), rew=rew,
                 terminated=terminated, truncated=truncated, obs_next=rng.random((n, 3)).astype(np.float32),
                 info=Batch(score=rng.random(n)))  # fmt: skip
    return step, ids


def assert_same_buffers(ours, theirs):
    np.testing.assert_array_equal(ours.last_index, theirs.last_index)
    np.testing.assert_array_equal(ours._lengths, theirs._lengths)
    assert len(ours) == len(theirs)
    stored = VectorReplayBuffer.sample_indices(theirs, 0)
    np.testing.assert_array_equal(ours.sample_indices(0), stored)
    np.testing.assert_array_equal(ours.sample_indices(None), stored)
    if len(stored):
        for key in ("obs", "act", "rew", "terminated", "truncated", "done", "obs_next"):
            np.testing.assert_array_equal(ours[stored][key], theirs[stored][key], err_msg=key)
        np.testing.assert_array_equal(ours[stored].info.score, theirs[stored].info.score)
        every = np.arange(ours.maxsize)
        np.testing.assert_array_equal(ours.next(every), theirs.next(every))
        np.testing.assert_array_equal(ours.prev(every), theirs.prev(every))
    np.testing.assert_array_equal(ours.unfinished_index(), theirs.unfinished_index())


def assert_same_add(ours, theirs, step, ids):
    mine, tianshou = ours.add(step, buffer_ids=ids), theirs.add(step, buffer_ids=ids)
    for name, a, b in zip(("insertion", "return", "length", "start"), mine, tianshou, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert a.dtype == b.dtype and a.shape == b.shape, (name, a.dtype, b.dtype, a.shape, b.shape)


def test_add_stores_and_returns_what_tianshou_s_does():
    """Random adds to random sub-buffer subsets, episodes ending at random, far past wrap-around,
    with resets (keeping the episode statistics, as Tianshou's on-policy trainer does, or not) and a
    pickle round trip (checkpoints) in between: the same storage, indices and returns as Tianshou's."""
    import pickle

    for seed, (n_sub, size, roles, dtype) in enumerate([(5, 4, 0, np.float64), (7, 3, 2, np.float32),
                                                         (272, 8, 2, np.float32)]):  # fmt: skip
        rng = np.random.default_rng(seed)
        ours, theirs = SlotReplayBuffer(n_sub * size, n_sub), VectorReplayBuffer(n_sub * size, n_sub)
        for t in range(60):
            step, ids = random_add(rng, n_sub, roles, dtype)
            assert_same_add(ours, theirs, step, ids)
            assert_same_buffers(ours, theirs)
            if t % 17 == 16:
                keep = bool(t % 2)
                ours.reset(keep_statistics=keep)
                theirs.reset(keep_statistics=keep)
                assert_same_buffers(ours, theirs)
            if t == 30:
                ours = pickle.loads(pickle.dumps(ours))
        # Every slot at once (buffer_ids=None), as the lockstep collector adds.
        step, _ = random_add(np.random.default_rng(seed), n_sub, roles, dtype)
        step = Batch.cat([step] * n_sub)[:n_sub] if len(step) < n_sub else step[:n_sub]
        assert_same_add(ours, theirs, step, None)
        assert_same_buffers(ours, theirs)


def test_buffer_pickled_before_the_state_arrays_carries_on():
    """A checkpoint of an older marlgen holds the sub-buffers' state in the sub-buffer objects only:
    unpickled, the buffer takes it over and carries on as Tianshou's would."""
    rng = np.random.default_rng(3)
    ours, theirs = SlotReplayBuffer(7 * 3, 7), VectorReplayBuffer(7 * 3, 7)
    for _ in range(10):
        step, ids = random_add(rng, 7, 2, np.float32)
        ours.add(step, buffer_ids=ids)
        theirs.add(step, buffer_ids=ids)
    old = {k: v for k, v in vars(ours).items() if not k.startswith("_sub_")}
    for part, twin in zip(old["buffers"], theirs.buffers, strict=True):  # the state the old add kept there
        vars(part).update({k: getattr(twin, k) for k in ("_insertion_idx", "_size", "_ep_return", "_ep_len",
                                                         "_ep_start_idx")})  # fmt: skip
    revived = SlotReplayBuffer.__new__(SlotReplayBuffer)
    revived.__setstate__(old)
    for _ in range(20):
        step, ids = random_add(rng, 7, 2, np.float32)
        assert_same_add(revived, theirs, step, ids)
        assert_same_buffers(revived, theirs)


def test_add_refuses_one_sub_buffer_twice():
    step, _ = random_add(np.random.default_rng(0), 5, 0, np.float64)
    with pytest.raises(ValueError, match="appears twice"):
        SlotReplayBuffer(20, 5).add(step[:2], buffer_ids=[1, 1])
