"""A replay buffer for many slots: Tianshou's VectorReplayBuffer without its loops over sub-buffers.

The lockstep adapter gives every agent of every env copy its own sub-buffer (80 to 100 of them, more
with many agents). Tianshou's ``VectorReplayBuffer`` walks its sub-buffers one by one in Python in
``sample_indices``, ``unfinished_index``, ``next`` and ``prev`` (the last two are numba functions,
plain Python here: marlgen/__init__.py), and DQN calls these on every gradient step: with 80
sub-buffers they cost more than the gradient step itself (docs/performance.md).

Here they are array arithmetic over the sub-buffers' offsets, lengths and last indices. ``next``,
``prev`` and ``unfinished_index`` return exactly Tianshou's indices; ``sample_indices`` draws
uniformly over the stored transitions, as Tianshou's two-stage draw (a sub-buffer in proportion to
its length, then a position in it) does, from one draw of the buffer's own random state.

``add`` too: Tianshou's calls every sub-buffer's ``_update_state_pre_add`` in turn, a Python call per
slot per collector step (272 slots at 16 generators: 0.4-0.55 s of a 4 s PPO run). Here the
sub-buffers' state (insertion point, size, episode return, length and start) lives in arrays of the
buffer, one entry per sub-buffer, and an add moves them all at once: the same transitions stored at
the same indices, the same returns (tests/test_buffers.py). The sub-buffer objects still hold views of
the storage, but not that state: only stack_num=1 without sample_avail is supported.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd
from tianshou.data import Batch, VectorReplayBuffer
from tianshou.data.batch import alloc_by_keys_diff, create_value
from tianshou.data.buffer.buffer_base import MalformedBufferError


class EpisodeLength:
    """A finished episode as the collector reads it back when no hook needs its contents: a length."""

    __slots__ = ("n",)

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


class SlotReplayBuffer(VectorReplayBuffer):
    read_lengths_only = False  # see lengths_only

    def __init__(self, total_size: int, buffer_num: int, **kwargs):
        super().__init__(total_size, buffer_num, **kwargs)
        if self.stack_num != 1 or self._sample_avail:
            raise ValueError("SlotReplayBuffer supports stack_num=1 without sample_avail only")
        self._adopt_sub_buffer_state()

    def _adopt_sub_buffer_state(self) -> None:
        """The sub-buffers' state, as arrays with one entry per sub-buffer (also for buffers pickled
        before the arrays existed: then the sub-buffer objects hold it)."""
        parts = self.buffers
        self._sub_maxsize = np.array([b.maxsize for b in parts])
        self._sub_insert = np.array([b._insertion_idx for b in parts])
        self._sub_size = np.array([b._size for b in parts])
        self._sub_ep_len = np.array([b._ep_len for b in parts])
        self._sub_ep_start = np.array([b._ep_start_idx for b in parts])
        # Tianshou's returns start as the float 0.0 and take the rewards' dtype and shape on a sub-buffer's
        # first add (rewards are (slots, roles) vectors in the lockstep route); None until then.
        returns = [b._ep_return for b in parts]
        shaped = [np.asarray(r) for r in returns if type(r) is not float]
        self._sub_ep_return = None
        if shaped:
            self._sub_ep_return = np.zeros((len(parts), *shaped[0].shape), dtype=shaped[0].dtype)
            for i, value in enumerate(returns):
                self._sub_ep_return[i] = value

    def __setstate__(self, state) -> None:
        super().__setstate__(state)
        if "_sub_insert" not in vars(self):
            self._adopt_sub_buffer_state()

    def reset(self, keep_statistics: bool = False) -> None:
        self.last_index = self._offset.copy()
        self._lengths = np.zeros_like(self._offset)
        self._sub_insert[:] = 0
        self._sub_size[:] = 0
        self._sub_ep_start[:] = 0
        if not keep_statistics:
            self._sub_ep_len[:] = 0
            self._sub_ep_return = None

    def add(self, batch, buffer_ids=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Tianshou's ``ReplayBufferManager.add``, with every sub-buffer's ``_update_state_pre_add``
        done at once. Returns (insertion indices, episode returns, episode lengths, episode start
        indices), the last three for finished episodes only (zeros for the others)."""
        new_batch = Batch()
        for key in set(self._reserved_keys).intersection(batch.get_keys()):
            new_batch.__dict__[key] = batch[key]
        batch = new_batch
        batch.__dict__["done"] = np.logical_or(batch.terminated, batch.truncated)
        assert {"obs", "act", "rew", "terminated", "truncated", "done"}.issubset(batch.get_keys())
        if self._save_only_last_obs:
            batch.obs = batch.obs[:, -1]
        if not self._save_obs_next:
            batch.pop("obs_next", None)
        elif self._save_only_last_obs:
            batch.obs_next = batch.obs_next[:, -1]
        ids = np.arange(self.buffer_num) if buffer_ids is None else np.asarray(buffer_ids, dtype=np.int64)
        if len(np.unique(ids)) != len(ids):  # one sub-buffer twice in one add: Tianshou's, in turn
            raise ValueError(f"SlotReplayBuffer.add: a sub-buffer appears twice in buffer_ids {ids.tolist()}")
        rew = np.asarray(batch.rew)
        done = np.asarray(batch.done, dtype=bool)
        if self._sub_ep_return is None:  # Tianshou's 0.0 + the first reward: the rewards' dtype
            self._sub_ep_return = np.zeros((self.buffer_num, *rew.shape[1:]), dtype=np.result_type(0.0, rew))
        local = self._sub_insert[ids]
        self._sub_size[ids] = np.minimum(self._sub_size[ids] + 1, self._sub_maxsize[ids])
        self._sub_insert[ids] = (local + 1) % self._sub_maxsize[ids]
        self._sub_ep_return[ids] += rew
        self._sub_ep_len[ids] += 1
        if np.any(self._sub_ep_start[ids] > self._sub_size[ids]):
            raise MalformedBufferError("an episode starts beyond the stored transitions: a malformed buffer")
        done_rows = done.reshape(-1, *[1] * (rew.ndim - 1))
        ep_return = np.where(done_rows, self._sub_ep_return[ids], 0).astype(self._sub_ep_return.dtype)
        ep_len = np.where(done, self._sub_ep_len[ids], 0)
        ep_start = self._sub_ep_start[ids] + self._offset[ids]
        finished = ids[done]
        self._sub_ep_return[finished] = 0
        self._sub_ep_len[finished] = 0
        self._sub_ep_start[finished] = self._sub_insert[finished]
        insertion = local + self._offset[ids]
        self.last_index[ids] = insertion
        self._lengths[ids] = self._sub_size[ids]
        try:
            self._meta[insertion] = batch
        except ValueError:  # the first add allocates the storage (Tianshou's own fallback)
            batch.rew = batch.rew.astype(float)
            batch.done = batch.done.astype(bool)
            batch.terminated = batch.terminated.astype(bool)
            batch.truncated = batch.truncated.astype(bool)
            if len(self._meta.get_keys()) == 0:
                self._meta = create_value(batch, self.maxsize, stack=False)
            else:  # dynamic key pops up in batch
                alloc_by_keys_diff(self._meta, batch, self.maxsize, False)
            self._set_batch_for_children()
            self._meta[insertion] = batch
        return insertion, ep_return, ep_len, ep_start

    def _stored_indices(self) -> np.ndarray:
        """Every stored transition's index, sub-buffer by sub-buffer, oldest first (Tianshou's
        ``sample_indices(0)``)."""
        sizes = self._sub_size
        total = int(sizes.sum())
        if total == 0:
            return np.array([], int)
        starts = np.cumsum(sizes) - sizes
        within = np.arange(total) - np.repeat(starts, sizes)  # 0..size-1 in each sub-buffer
        full = np.repeat(sizes, sizes)
        return np.repeat(self._offset, sizes) + (np.repeat(self._sub_insert, sizes) + within) % full

    @contextmanager
    def lengths_only(self):
        """Within it, an episode's indices (``get_buffer_indices``) are only its :class:`EpisodeLength`,
        and ``self[index array]`` is the array's length: what the collector reads back of a finished
        episode when no hook needs its transitions (marlgen.collect)."""
        self.read_lengths_only = True
        try:
            yield self
        finally:
            self.read_lengths_only = False

    def get_buffer_indices(self, start: int, stop: int):
        if not self.read_lengths_only:
            return super().get_buffer_indices(start, stop)
        # Tianshou's indices run from start to stop - 1 in one sub-buffer, across its end when stop < start
        # (all sub-buffers have one size); 272 episodes end at once in the lockstep route.
        return EpisodeLength(int(stop - start if stop >= start else stop - start + self._sub_maxsize[0]))

    def __getitem__(self, index):
        if self.read_lengths_only and isinstance(index, np.ndarray | EpisodeLength):
            return EpisodeLength(len(index))
        return super().__getitem__(index)

    def _locate(self, index) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(index mod size, start, length >= 1, last index) of each index's sub-buffer."""
        index = np.asarray(index) % self._extend_offset[-1]
        buf = np.searchsorted(self._extend_offset, index, side="right") - 1
        return index, self._offset[buf], np.maximum(1, self._lengths[buf]), self.last_index[buf]

    def next(self, index: int | np.ndarray) -> np.ndarray:
        if not isinstance(index, list | np.ndarray):
            return self.next(np.array([index]))[0]
        index, start, length, last = self._locate(index)
        end_flag = self.done[index] | (index == last)
        return (index - start + 1 - end_flag) % length + start

    def prev(self, index: int | np.ndarray) -> np.ndarray:
        if not isinstance(index, list | np.ndarray):
            return self.prev(np.array([index]))[0]
        index, start, length, last = self._locate(index)
        sub = (index - start - 1) % length
        end_flag = self.done[sub + start] | (sub + start == last)
        return (sub + end_flag) % length + start

    def unfinished_index(self) -> np.ndarray:
        last = self.last_index[self._lengths > 0]
        return last[~self.done[last]]

    def sample_indices(self, batch_size: int | None) -> np.ndarray:
        total = int(self._lengths.sum())
        if batch_size is not None and batch_size < 0:
            return np.array([], int)
        if batch_size is None or batch_size == 0 or total == 0:  # all of them, in Tianshou's order
            return self._stored_indices()
        draw = self._random_state.randint(total, size=batch_size)  # uniform over stored transitions
        ends = np.cumsum(self._lengths)
        buf = np.searchsorted(ends, draw, side="right")
        return self._offset[buf] + draw - (ends[buf] - self._lengths[buf])

    def hasnull(self) -> bool:
        """Tianshou's NaN check, which its Collector runs after every collect, read in place.

        Tianshou's ``self[:].hasnull()`` copies every stored transition, then deep-copies that batch
        twice (a mask of pandas' isnull, then its any): a third of a shared PPO collect at 16
        generators (docs/performance.md). Here the same test, pandas' isnull (NaN or None), runs
        on the stored values at the stored indices, field by field, and stops at the first null.
        """
        return any_null(self._meta, self.sample_indices(0))


def any_null(batch, index: np.ndarray) -> bool:
    """Whether any value of ``batch`` (nested batches included) at ``index`` is null for pandas."""
    for value in batch.__dict__.values():
        if isinstance(value, Batch):
            if any_null(value, index):
                return True
            continue
        value = np.asarray(value)
        if value.dtype.kind not in "biu" and pd.isnull(value[index]).any():  # ints and bools hold no null
            return True
    return False
