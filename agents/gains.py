"""Per-agent gains: how one network shared by many generators tells them apart.

With ``agents.generator.share_parameters`` every generator acts through one network, its one-hot id
among the inputs. The id then reaches the logits only through hidden units that every agent's updates
move, so a gradient that makes anchor a likelier for one generator makes it likelier for all: the team
herds onto the same anchors and the difference rewards push it back, epoch after epoch. Measured on
grid-25 with 16 generators (docs/performance.md, section 2.2): one shared network reached 17-19 modes
where 16 separate networks (Tianshou's AEC route) reached 19-21.

``agents.generator.agent_gains=true`` gives each generator its own gain on every unit of the shared
network's last hidden layer (a FiLM layer, Perez et al. 2018, conditioned on the agent id alone):
``h_i = h * g[id]``. The gains start at 1 plus unit noise, so the agents start from different
features, as separate networks start from different weights; they cost N x width parameters, not N
networks, and no extra forward pass.
"""

from __future__ import annotations

import torch
from tianshou.utils.net.common import Net
from tianshou.utils.net.discrete import DiscreteActor
from torch import Tensor, nn

GAIN_SPREAD = 1.0  # std of the initial gains around 1; agents must start apart (0 would start them equal)


class AgentGains(nn.Module):
    """``hidden * gains[agent]``, the agent read from the one-hot columns ``[start, stop)`` of the obs."""

    def __init__(self, id_columns: tuple[int, int], width: int):
        super().__init__()
        self.start, self.stop = int(id_columns[0]), int(id_columns[1])
        self.gains = nn.Parameter(1.0 + GAIN_SPREAD * torch.randn(self.stop - self.start, width))

    def forward(self, hidden: Tensor, obs) -> Tensor:  # (B, width), (B, obs_dim) -> (B, width)
        obs = torch.as_tensor(obs, dtype=hidden.dtype, device=hidden.device)
        return hidden * (obs[:, self.start : self.stop] @ self.gains)  # one-hot rows pick a gain vector


class GainedDiscreteActor(DiscreteActor):
    """Tianshou's DiscreteActor (preprocess net -> last layer) with per-agent gains in between."""

    def __init__(self, *, id_columns: tuple[int, int], **kwargs):
        super().__init__(**kwargs)
        self.gains = AgentGains(id_columns, self.preprocess.get_output_dim())

    def forward(self, obs, state=None, info=None):
        hidden, state = self.preprocess(obs, state)
        logits = self.last(self.gains(hidden, obs))
        return (torch.softmax(logits, dim=-1) if self.softmax_output else logits), state


class GainedQNet(nn.Module):
    """A Q-network as Tianshou's ``Net(state_shape, action_shape, hidden_sizes)``, with per-agent gains
    on its last hidden layer."""

    def __init__(self, state_shape, n_actions: int, hidden_sizes: list[int], id_columns: tuple[int, int]):
        super().__init__()
        self.body = Net(state_shape=state_shape, hidden_sizes=hidden_sizes)
        self.gains = AgentGains(id_columns, self.body.get_output_dim())
        self.head = nn.Linear(self.body.get_output_dim(), n_actions)

    def forward(self, obs, state=None, info=None):
        hidden, state = self.body(obs, state)
        return self.head(self.gains(hidden, obs)), state
