"""Which dataset a config means: the user's folder, or the generated sample; and its store.

Relative `data.path` is read from the working directory (where the user typed it); relative
cache and sample folders live under the repository, so every entry point shares one cache.
"""

from __future__ import annotations

from pathlib import Path

from core.config import REPO_ROOT, Config
from core.feature_store import Progress, open_store
from core.store import FeatureStore
from core.synthetic import ensure_sample


def repo_path(text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def dataset_path(config: Config) -> Path:
    """The dataset folder; the synthetic sample is generated on first use."""
    if config.data.path:
        return Path(config.data.path).expanduser().resolve()
    return ensure_sample(config.data, repo_path(config.data.sample_dir))


def feature_store(
    config: Config, workers: int = 1, progress: Progress | None = None
) -> tuple[FeatureStore, bool]:
    """Attach the feature store for this config (built first when missing); True if built now."""
    return open_store(
        config, dataset_path(config), repo_path(config.data.cache_dir), workers, progress
    )
