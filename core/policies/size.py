"""Exact parameter counts of every policy a config can build, without torch: the planner sizes
memory and chooses the device before torch may load (tests compare each count with the real
model's)."""

from __future__ import annotations

from itertools import pairwise

from core.config import PolicyConfig
from core.policies.layout import ObservationLayout
from core.policies.registry import EXTRACTORS


def _linear(inputs: int, outputs: int) -> int:
    return inputs * outputs + outputs


def _conv(inputs: int, outputs: int, kernel: int) -> int:
    return inputs * outputs * kernel + outputs


def _lstm(inputs: int, hidden: int, layers: int) -> int:
    # torch.nn.LSTM: four gates, input and hidden weights, two bias vectors per layer
    first = 4 * hidden * (inputs + hidden) + 8 * hidden
    return first + (layers - 1) * (4 * hidden * (2 * hidden) + 8 * hidden)


def flat_size(policy: PolicyConfig, layout: ObservationLayout) -> tuple[int, int]:
    """SB3's flat input: no parameters, every observation number feeds the heads."""
    return 0, layout.obs_dim


def multi_timeframe_cnn_size(policy: PolicyConfig, layout: ObservationLayout) -> tuple[int, int]:
    widths = list(layout.timeframe_columns)
    widths[0] += layout.shared_columns
    lengths = [(layout.window - 1) // multiple + 1 for multiple in layout.timeframe_multiples]
    convs = sum(
        _conv(width, policy.channels, min(policy.kernel, length))
        for width, length in zip(widths, lengths, strict=True)
    )
    fuse = _linear(2 * policy.channels * len(widths), policy.embedding)
    return convs + fuse, _embedded(policy, layout)


def shared_asset_size(policy: PolicyConfig, layout: ObservationLayout) -> tuple[int, int]:
    patch = min(policy.patch, layout.window)
    positions = layout.window // patch
    params = _linear(patch * layout.n_features, policy.channels) + _linear(
        policy.channels * positions, policy.embedding
    )
    # + each asset's newest row beside its embedding
    return params, _embedded(policy, layout) + layout.n_assets * layout.n_features


def _embedded(policy: PolicyConfig, layout: ObservationLayout) -> int:
    return layout.n_assets * policy.embedding + layout.portfolio_dim


def extractor_size(policy: PolicyConfig, layout: ObservationLayout) -> tuple[int, int]:
    """(parameters, features_dim) of the features extractor the registry names."""
    counter = globals()[EXTRACTORS[policy.extractor].size]
    return counter(policy, layout)


def _trunk(policy: PolicyConfig, extractor: tuple[int, int]) -> tuple[int, int]:
    """(count, features_dim) of everything before the heads, from the extractor's (count,
    features_dim): one extractor or two (actor and critic), then RecurrentPPO's two LSTMs (whose
    parameters and multiply-adds per step are the same number)."""
    spec = EXTRACTORS[policy.extractor]
    count, features = extractor
    shared = policy.share_extractor or spec.extractor is None
    total = count * (1 if shared else 2)
    if spec.recurrent:
        # RecurrentPPO's defaults: an actor LSTM and a separate critic LSTM
        total += 2 * _lstm(features, policy.lstm_hidden, policy.lstm_layers)
        features = policy.lstm_hidden
    return total, features


def policy_parameters(policy: PolicyConfig, net_arch: list[int], layout: ObservationLayout) -> int:
    """Every trainable parameter of the actor-critic policy SB3 builds for these policy."""
    total, features = _trunk(policy, extractor_size(policy, layout))
    for _ in ("actor", "critic"):  # SB3 builds net_arch twice: policy and value networks
        width = features
        for hidden in net_arch:
            total += _linear(width, hidden)
            width = hidden
    last = net_arch[-1] if net_arch else features
    total += _linear(last, layout.n_assets) + _linear(last, 1) + layout.n_assets  # + log_std
    return total


def _linear_macs(widths: list[int]) -> int:
    return sum(a * b for a, b in pairwise(widths))


def _extractor_macs(policy: PolicyConfig, layout: ObservationLayout) -> tuple[int, int]:
    """(multiply-adds per observation, features_dim) of the features extractor."""
    if policy.extractor == "shared_asset":
        patch = min(policy.patch, layout.window)
        positions = layout.window // patch
        per_asset = positions * patch * layout.n_features * policy.channels
        per_asset += policy.channels * positions * policy.embedding
        return layout.n_assets * per_asset, shared_asset_size(policy, layout)[1]
    if policy.extractor == "multi_timeframe_cnn":
        widths = list(layout.timeframe_columns)
        widths[0] += layout.shared_columns
        lengths = [(layout.window - 1) // multiple + 1 for multiple in layout.timeframe_multiples]
        convs = sum(
            layout.n_assets * length * width * policy.channels * min(policy.kernel, length)
            for width, length in zip(widths, lengths, strict=True)
        )
        fuse = layout.n_assets * 2 * policy.channels * len(widths) * policy.embedding
        return convs + fuse, _embedded(policy, layout)
    params, features = extractor_size(policy, layout)  # flat (none) and the recurrent ones
    return params, features


def policy_macs(policy: PolicyConfig, net_arch: list[int], layout: ObservationLayout) -> int:
    """Multiply-adds of one forward pass of the actor-critic for one observation: what a GPU's
    minibatch does per sample (the planner's device rule weighs it by members x batch). Unlike
    the parameter count it sees a shared encoder run once per asset and patch."""
    total, features = _trunk(policy, _extractor_macs(policy, layout))
    last = net_arch[-1] if net_arch else features
    heads = _linear_macs([features, *net_arch])
    return total + 2 * heads + last * (layout.n_assets + 1)
