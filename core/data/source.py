"""Which dataset a config means: the user's folder, or the generated sample (made on first use).

Relative `data.path` is read from the working directory (where the user typed it); relative
cache and sample folders live under the repository, so every entry point shares one cache.
"""

from __future__ import annotations

from pathlib import Path

from core.config import REPO_ROOT, Config
from core.data.synthetic import ensure_sample


def repo_path(text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def dataset_path(config: Config) -> Path:
    """The dataset folder; the synthetic sample is generated on first use."""
    if config.data.path:
        return Path(config.data.path).expanduser().resolve()
    return ensure_sample(config.data, repo_path(config.data.sample_dir))
