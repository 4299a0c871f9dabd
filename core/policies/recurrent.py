"""`lstm`'s policy: sb3-contrib's recurrent actor-critic with a sequence pass that does not fall
back to one LSTM call per step when a sequence merely begins an episode."""

from __future__ import annotations

import torch
from sb3_contrib.common.recurrent.policies import RecurrentMultiInputActorCriticPolicy
from torch import nn


class EpisodeStartLstmPolicy(RecurrentMultiInputActorCriticPolicy):
    """RecurrentPPO cuts its training sequences at episode starts, so a start can only be a
    sequence's first step, yet sb3-contrib steps the LSTM bar by bar whenever any sequence in a
    minibatch has one (most do: measured, the real env's minibatches looped 3,375 LSTM calls per
    16k steps against 834 on the zero-cost env). Zeroing those sequences' initial state and
    running the whole sequence in one call computes the same outputs; only a start after the
    first step (not produced by the buffer) takes sb3-contrib's loop."""

    @staticmethod
    def _process_sequence(
        features: torch.Tensor,
        lstm_states: tuple[torch.Tensor, torch.Tensor],
        episode_starts: torch.Tensor,
        lstm: nn.LSTM,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        n_seq = lstm_states[0].shape[1]
        starts = episode_starts.reshape((n_seq, -1))
        if torch.any(starts[:, 1:] != 0.0):
            return RecurrentMultiInputActorCriticPolicy._process_sequence(
                features, lstm_states, episode_starts, lstm
            )
        sequence = features.reshape((n_seq, -1, lstm.input_size)).swapaxes(0, 1)
        keep = (1.0 - starts[:, 0]).view(1, n_seq, 1)
        output, states = lstm(sequence, (keep * lstm_states[0], keep * lstm_states[1]))
        return torch.flatten(output.transpose(0, 1), start_dim=0, end_dim=1), states
