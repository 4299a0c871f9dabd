"""Which dataset a config means: the user's folder, or the generated sample (made on first use).

Relative `data.path` is read from the working directory (where the user typed it); relative
cache and sample folders live under the repository, so every entry point shares one cache.
"""

from __future__ import annotations

from pathlib import Path

from core.config import REPO_ROOT, Config, DataConfig
from core.data.synthetic import ensure_sample

SAMPLE_BAR = "1h"  # the generated sample's bar when data.bar is auto


def repo_path(text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def dataset_path(config: Config) -> Path:
    """The dataset folder; the synthetic sample is generated on first use."""
    if config.data.path:
        return Path(config.data.path).expanduser().resolve()
    return ensure_sample(sample_config(config.data), repo_path(config.data.sample_dir))


def sample_config(data: DataConfig) -> DataConfig:
    """The data settings the synthetic sample is generated with: hourly bars unless data.bar
    names another spacing."""
    return data.model_copy(update={"bar": SAMPLE_BAR}) if data.bar == "auto" else data
