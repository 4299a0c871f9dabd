"""Exact parameter counts of every policy a config can build, without torch: the planner sizes
memory and chooses the device before torch may load (tests compare each count with the real
model's)."""

from __future__ import annotations

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


def policy_parameters(policy: PolicyConfig, net_arch: list[int], layout: ObservationLayout) -> int:
    """Every trainable parameter of the actor-critic policy SB3 builds for these policy."""
    spec = EXTRACTORS[policy.extractor]
    extractor, features = extractor_size(policy, layout)
    shared = policy.share_extractor or spec.extractor is None
    total = extractor * (1 if shared else 2)
    if spec.recurrent:
        # RecurrentPPO's defaults: an actor LSTM and a separate critic LSTM
        total += 2 * _lstm(features, policy.lstm_hidden, policy.lstm_layers)
        features = policy.lstm_hidden
    for _ in ("actor", "critic"):  # SB3 builds net_arch twice: policy and value networks
        width = features
        for hidden in net_arch:
            total += _linear(width, hidden)
            width = hidden
    last = net_arch[-1] if net_arch else features
    total += _linear(last, layout.n_assets) + _linear(last, 1) + layout.n_assets  # + log_std
    return total
