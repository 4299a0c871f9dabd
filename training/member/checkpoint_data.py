"""What a checkpoint zip holds, read as data only: SB3's own reader unpickles every `:serialized:`
entry of the zip's `data` JSON, so a crafted file would run its author's code; here the JSON is
parsed with `json` and every member's CRC is checked, so a damaged file is told from a sound one
before SB3 sees it (its tensors SB3 reads with `torch.load(weights_only=True)`: no code either)."""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path
from typing import Any

from core.errors import UserError

SERIALIZED = ":serialized:"  # SB3's marker of a cloudpickled entry
REQUIRED = ("data", "policy.pth")
# What a project checkpoint leaves out of `data`: the project's rollout-buffer class (so plain
# stable-baselines3 loads the file) and the env state SB3 rebuilds at the next learn() anyway
# (a loaded model's envs are reset), so that no pickle need be in the file for them.
NOT_SAVED = (
    "rollout_buffer_class",
    "_last_obs",
    "_last_episode_starts",
    "_last_original_obs",
    "ep_info_buffer",
    "ep_success_buffer",
)


class UnreadableCheckpoint(UserError):
    """A checkpoint that is damaged or not a checkpoint: a job falls back to an earlier one."""


class UntrustedCheckpoint(UserError):
    """A checkpoint holding pickled objects the project has no trusted value for: never loaded,
    never skipped over (whoever wrote it may have written its neighbours too)."""


def checkpoint_data(path: Path) -> dict[str, Any]:
    """The zip's `data` entries as JSON values (a serialized entry stays an opaque dict)."""
    try:
        with zipfile.ZipFile(path) as archive:
            missing = [name for name in REQUIRED if name not in archive.namelist()]
            if missing:
                raise unreadable(path, f"no {' or '.join(missing)} in the zip (cut short?)")
            damaged = archive.testzip()
            if damaged is not None:
                raise unreadable(path, f"{damaged} in the zip fails its CRC check")
            data = json.loads(archive.read("data"))
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError) as exc:
        raise unreadable(path, str(exc) or type(exc).__name__) from None
    if not isinstance(data, dict) or not isinstance(data.get("num_timesteps"), int):
        raise unreadable(path, "its data is not an SB3 model's (no num_timesteps)")
    return data


def serialized_entries(data: dict[str, Any]) -> list[str]:
    return [name for name, value in data.items() if isinstance(value, dict) and SERIALIZED in value]


def unreadable(path: Path, reason: str) -> UnreadableCheckpoint:
    return UnreadableCheckpoint(
        f"checkpoint {path} cannot be read: {reason}\n"
        "  fix: the file is damaged (a full disk, a copy cut short?); a --resume of its run goes "
        "on from the job's previous checkpoint when that one reads"
    )


def untrusted(path: Path, entries: list[str]) -> UntrustedCheckpoint:
    names = ", ".join(repr(name) for name in entries)
    return UntrustedCheckpoint(
        f"checkpoint {path} holds pickled objects Ploutos does not load: {names} (loading them "
        "would run code from the file; nothing was loaded)\n"
        "  fix: use checkpoints written by this project's training; a file from elsewhere opens "
        "with plain stable-baselines3 PPO.load only if you trust its author (that runs its code)"
    )
