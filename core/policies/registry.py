"""Every feature extractor a config can name, in one place: where its SB3 class lives, which
policy.* settings it takes, how the planner counts its parameters (without torch), and whether
it is recurrent. Standard library only, so the config's validation reads it.

To add an extractor: one entry here, its class, and its parameter count in core.policies.size.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Extractor:
    name: str
    extractor: str | None  # "module:Class" of the SB3 features extractor; None: SB3's flat input
    keys: tuple[str, ...]  # policy.* keys given to it as keyword arguments
    size: str  # its parameter count in core.policies.size
    policy: str | None = None  # "module:Class" of a policy class of its own (recurrent)
    recurrent: bool = False  # trained by sb3-contrib's RecurrentPPO


EXTRACTORS: dict[str, Extractor] = {
    spec.name: spec
    for spec in (
        Extractor("flat", None, (), "flat_size"),
        Extractor(
            "shared_asset",
            "core.policies.shared_asset:SharedAssetExtractor",
            ("channels", "patch", "embedding"),
            "shared_asset_size",
        ),
        Extractor(
            "multi_timeframe_cnn",
            "core.policies.multi_timeframe_cnn:MultiTimeframeCNN",
            ("channels", "kernel", "embedding"),
            "multi_timeframe_cnn_size",
        ),
        Extractor(
            "lstm",  # the shared-asset encoder feeds an LSTM
            "core.policies.shared_asset:SharedAssetExtractor",
            ("channels", "patch", "embedding"),
            "shared_asset_size",
            policy="core.policies.recurrent:EpisodeStartLstmPolicy",
            recurrent=True,
        ),
    )
}
