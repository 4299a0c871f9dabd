"""`multi_timeframe_cnn`: one convolution branch per timeframe, each over that timeframe's own
bars. A higher timeframe's row changes only when its bar closes (causal features), so its branch
samples the window every `multiple` base bars from the newest: a 4h branch on hourly bars sees
t, t-4, t-8, ... and no repeated rows."""

from __future__ import annotations

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from core.policies.layout import ObservationLayout


def branch_columns(layout: ObservationLayout) -> list[list[int]]:
    """Feature columns of each branch: its timeframe's group; the base branch also reads the
    shared columns (time encodings, exogenous series)."""
    columns, start = [], 0
    shared = list(range(sum(layout.timeframe_columns), layout.n_features))
    for index, width in enumerate(layout.timeframe_columns):
        own = list(range(start, start + width))
        columns.append(own + shared if index == 0 else own)
        start += width
    return columns


def branch_bars(layout: ObservationLayout, multiple: int) -> list[int]:
    """Window rows a branch reads, oldest first: every `multiple`-th bar back from the newest."""
    return list(range(layout.window - 1, -1, -multiple))[::-1]


class MultiTimeframeCNN(BaseFeaturesExtractor):
    """Each branch: a 1-d convolution (`channels`, kernel `kernel` clipped to the branch's length,
    stride 1) over its bars, ReLU, then its newest position and its mean over positions. The
    convolution is written as unfold + one linear layer: torch's CPU Conv1d took 1.7x as long
    at these sizes (36 vs 22 ms forward + backward for a 1,024 minibatch). The branches are
    concatenated and projected to `embedding` numbers per asset, with the same weights for every
    asset; the assets are concatenated with the portfolio state."""

    def __init__(
        self,
        observation_space: spaces.Dict,
        n_assets: int,
        window: int,
        timeframe_columns: list[int],
        timeframe_multiples: list[int],
        shared_columns: int,
        channels: int = 16,
        kernel: int = 3,
        embedding: int = 32,
    ) -> None:
        layout = ObservationLayout(
            n_assets, window, tuple(timeframe_columns), tuple(timeframe_multiples), shared_columns
        )
        super().__init__(observation_space, n_assets * embedding + layout.portfolio_dim)
        self.layout = layout
        branches: list[nn.Linear] = []
        self.kernels: list[int] = []
        self.widths: list[int] = []
        for index, (columns, multiple) in enumerate(
            zip(branch_columns(layout), layout.timeframe_multiples, strict=True)
        ):
            bars = branch_bars(layout, multiple)
            # Row-major [bar, feature] flat indices: one gather selects a branch's input.
            flat = [bar * layout.n_features + column for bar in bars for column in columns]
            self.register_buffer(f"gather_{index}", torch.tensor(flat), persistent=False)
            self.kernels.append(min(kernel, len(bars)))
            self.widths.append(len(columns))
            branches.append(nn.Linear(len(columns) * self.kernels[-1], channels))
        self.branches = nn.ModuleList(branches)
        self.fuse = nn.Linear(2 * channels * len(branches), embedding)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        layout = self.layout
        market = observations["market"]
        rows = market.shape[0]
        per_asset = market.view(rows * layout.n_assets, layout.window * layout.n_features)
        pooled = []
        for index, linear in enumerate(self.branches):
            picked = per_asset.index_select(1, getattr(self, f"gather_{index}"))
            bars = picked.view(len(picked), -1, self.widths[index])  # [row*asset, bar, column]
            taps = bars.unfold(1, self.kernels[index], 1)  # [row*asset, position, column, tap]
            out = torch.relu(linear(taps.reshape(len(picked), taps.shape[1], -1)))
            pooled += [out[:, -1], out.mean(dim=1)]
        fused = torch.relu(self.fuse(torch.cat(pooled, dim=1))).view(rows, -1)
        return torch.cat([fused, observations["portfolio"]], dim=1)
