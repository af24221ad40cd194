"""Tianshou's collector, with bookkeeping that stays cheap when hundreds of episodes end at once.

The lockstep route ends an episode in every slot together: with 16 env copies of 16 generators and a
critic, 272 episodes end whenever a copy's budget runs out, every second collector step on two-step
episodes. Tianshou 2.0.1 handles each finished episode one by one in Python:

- ``CollectStats.update_at_episode_done`` grows the returns and lengths arrays by one
  ``np.concatenate`` per episode, so a collect costs time quadratic in its episodes;
- the collector reads each episode back from the buffer (``buffer[indices]``, a full ``Batch`` of
  observations, actions, rewards, infos) only to hand it to the episode hook and take its length.

Together they were half of a collect at 16 generators (docs/performance.md, section 2.1). Here the
statistics append to lists and become the same arrays when the collector refreshes them, and, when no
episode hook is set, the episode read-back yields the episode's length without building the batch.
The collected transitions, returns and statistics are unchanged (tests/test_collect.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tianshou.data import Collector, CollectStats

from marlgen.buffers import SlotReplayBuffer


@dataclass(kw_only=True)
class EpisodeStats(CollectStats):
    """CollectStats whose per-episode updates append (O(1)); the arrays are built on refresh."""

    _pending_returns: list = field(default_factory=list, repr=False)
    _pending_lens: list = field(default_factory=list, repr=False)

    def update_at_episode_done(self, episode_batch, episode_return, refresh_sequence_stats: bool = False):
        self._pending_lens.append(len(episode_batch))
        self._pending_returns.append(episode_return)
        self.n_collected_episodes += 1
        if refresh_sequence_stats:
            self.refresh_return_stats()
            self.refresh_len_stats()

    def _settle(self) -> None:
        """Move the pending episodes into ``returns`` and ``lens``, as Tianshou would have grown them."""
        if self._pending_lens:
            self.lens = np.concatenate((self.lens, self._pending_lens), dtype=int)
            returns = np.array(self._pending_returns, dtype=float)  # (n,) or (n, roles) in the MARL case
            self.returns = returns if self.returns.size == 0 else np.concatenate((self.returns, returns))
            self._pending_lens, self._pending_returns = [], []

    def refresh_return_stats(self) -> None:
        self._settle()
        super().refresh_return_stats()

    def refresh_len_stats(self) -> None:
        self._settle()
        super().refresh_len_stats()


class SlotCollector(Collector):
    """Tianshou's Collector with :class:`EpisodeStats` and, without an episode hook, episode lengths
    read from the buffer's indices instead of whole episode batches."""

    def __init__(self, policy, env, buffer: SlotReplayBuffer, **kwargs):
        super().__init__(policy, env, buffer, collect_stats_class=EpisodeStats, **kwargs)

    def _collect(self, *args, **kwargs):
        if self._on_episode_done_hook is not None:  # the hook reads the episode: build it
            return super()._collect(*args, **kwargs)
        # The only buffer[index array] read in Tianshou 2.0.1's Collector._collect is that read-back.
        with self.buffer.lengths_only():
            return super()._collect(*args, **kwargs)
