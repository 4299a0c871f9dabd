"""`shared_asset`: one small encoder reads every asset's [window, feature] block with the same
weights, so what it learns about one asset serves the others and its size does not grow with the
asset count; the flat MLP has a separate first-layer weight for every asset x bar x feature."""

from __future__ import annotations

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from core.policies.layout import ObservationLayout


class SharedAssetExtractor(BaseFeaturesExtractor):
    """Each asset's window is cut into patches of `patch` consecutive bars (the newest bars kept
    when the window is not a multiple); one linear layer embeds every patch of every asset
    (`channels` numbers: a convolution with stride = kernel, written as one matrix product because
    torch's CPU Conv1d is ~7x slower at these sizes), a second projects an asset's patches to
    `embedding` numbers. Each asset's newest feature row is passed on as it is beside its
    embedding (the newest bar is what a trading decision reads most: measured, without it the
    encoder mixed it into a patch of older bars and learnt the planted edge less reliably).
    The assets' blocks are concatenated (the action head must know which asset is which) with
    the portfolio state."""

    def __init__(
        self,
        observation_space: spaces.Dict,
        n_assets: int,
        window: int,
        timeframe_columns: list[int],
        timeframe_multiples: list[int],
        shared_columns: int,
        channels: int = 16,
        patch: int = 8,
        embedding: int = 32,
    ) -> None:
        layout = ObservationLayout(
            n_assets, window, tuple(timeframe_columns), tuple(timeframe_multiples), shared_columns
        )
        per_asset = embedding + layout.n_features
        super().__init__(observation_space, n_assets * per_asset + layout.portfolio_dim)
        self.layout = layout
        self.patch = min(patch, window)
        self.positions = window // self.patch
        self.embed = nn.Linear(self.patch * layout.n_features, channels)
        self.project = nn.Linear(channels * self.positions, embedding)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        layout = self.layout
        market = observations["market"]
        rows = market.shape[0]
        bars = market.view(rows, layout.n_assets, layout.window, layout.n_features)
        bars = bars[:, :, layout.window - self.positions * self.patch :]  # the newest bars
        patches = bars.reshape(rows * layout.n_assets * self.positions, -1)
        x = torch.relu(self.embed(patches)).view(rows * layout.n_assets, -1)
        x = torch.relu(self.project(x)).view(rows, layout.n_assets, -1)
        x = torch.cat([x, bars[:, :, -1]], dim=2).view(rows, -1)  # + each asset's newest row
        return torch.cat([x, observations["portfolio"]], dim=1)
