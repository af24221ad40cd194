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
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd
from tianshou.data import Batch, VectorReplayBuffer


class EpisodeLength:
    """A finished episode as the collector reads it back when no hook needs its contents: a length."""

    __slots__ = ("n",)

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


class SlotReplayBuffer(VectorReplayBuffer):
    read_lengths_only = False  # see lengths_only

    @contextmanager
    def lengths_only(self):
        """Within it, ``self[index array]`` is an :class:`EpisodeLength`, not a batch (marlgen.collect)."""
        self.read_lengths_only = True
        try:
            yield self
        finally:
            self.read_lengths_only = False

    def __getitem__(self, index):
        if self.read_lengths_only and isinstance(index, np.ndarray):
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
        if batch_size is None or batch_size <= 0 or total == 0 or self.stack_num > 1:
            return super().sample_indices(batch_size)
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
