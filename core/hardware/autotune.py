"""What `--autotune` measured on this kind of machine, cached so every later plan can use it.

A probe times real PPO training (the batch env on the feature store) for a few candidate
(torch threads, n_envs x n_steps, batch size) settings; the planner takes the fastest candidate
that fits a member's CPUs instead of its rules. Results are keyed by the machine (CPU model,
usable CPUs), the observation shape and the network (extractor, sizes, n_epochs), so a
different machine or policy never reuses them. Standard library only: the planner reads it
before numpy or torch may load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.atomic import write_json
from core.config import Config

CACHE_FOLDER = "autotune"
FORMAT = 1


@dataclass(frozen=True)
class Candidate:
    torch_threads: int
    n_envs: int
    n_steps: int
    batch_size: int


@dataclass(frozen=True)
class Measurement:
    candidate: Candidate
    steps_per_s: float


@dataclass(frozen=True)
class Autotune:
    key: str
    machine: str
    measurements: tuple[Measurement, ...]
    source: str = ""  # the cache file it was read from

    def best(self, max_threads: int, fixed: dict[str, int]) -> Measurement | None:
        """The fastest measured candidate using at most `max_threads` torch threads whose values
        agree with the settings the config fixes (`fixed`: name -> value)."""
        usable = [
            m
            for m in self.measurements
            if m.candidate.torch_threads <= max_threads
            and all(getattr(m.candidate, name) == value for name, value in fixed.items())
        ]
        return max(usable, key=lambda m: m.steps_per_s, default=None)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "key": self.key,
            "machine": self.machine,
            "measurements": [
                asdict(m.candidate) | {"steps_per_s": m.steps_per_s} for m in self.measurements
            ],
        }


def machine_name(usable_cpus: int) -> str:
    """The CPU model and the usable CPU count: nodes of one kind share a probe."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} x {usable_cpus} usable CPU(s)"


def autotune_key(config: Config, machine: str, obs_dim: int, n_assets: int) -> str:
    """Everything that changes the measured speed: the machine, the observation, the network."""
    identity = {
        "machine": machine,
        "obs_dim": obs_dim,
        "n_assets": n_assets,
        "window": config.env.window,
        "policy": config.policy.model_dump(),
        "net_arch": list(config.ppo.net_arch),
        "n_epochs": config.ppo.n_epochs,
        "vec_env": config.hardware.vec_env,
        "target_rollout_steps": config.hardware.target_rollout_steps,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return digest[:24]


def cache_file(config: Config, key: str) -> Path:
    return Path(config.data.cache_dir) / CACHE_FOLDER / f"{key}.json"


def save_autotune(path: Path, result: Autotune | DeviceProbe) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result.to_json())


def load_autotune(path: Path) -> Autotune | None:
    """The cached probe, or None when there is none (or it is from an older format)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("format") != FORMAT:
        return None
    rows = tuple(
        Measurement(
            Candidate(row["torch_threads"], row["n_envs"], row["n_steps"], row["batch_size"]),
            float(row["steps_per_s"]),
        )
        for row in data["measurements"]
    )
    return Autotune(data["key"], data["machine"], rows, str(path))


DEVICE_FORMAT = 1


@dataclass(frozen=True)
class DeviceProbe:
    """What `--autotune` measured on a GPU machine: one group timed on the CPU and on CUDA at a
    few sizes (training.population.device_timing). `crossing` is the smallest measured size from
    which CUDA trains more members per hour (None: the CPU won at the largest); the planner's
    device rule follows it instead of hardware.gpu_min_minibatch_macs."""

    key: str
    machine: str
    gpu: str
    crossing: int | None
    rows: tuple[dict[str, float], ...]  # size, cpu_s, cuda_s per measured group size
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": DEVICE_FORMAT,
            "key": self.key,
            "machine": self.machine,
            "gpu": self.gpu,
            "crossing": self.crossing,
            "rows": list(self.rows),
        }


def device_cache_file(config: Config, key: str, gpu: str) -> Path:
    """The GPU's name joins the key: another GPU in the same kind of host is another probe."""
    digest = hashlib.sha256(f"{key}:{gpu}".encode()).hexdigest()[:24]
    return Path(config.data.cache_dir) / CACHE_FOLDER / f"device-{digest}.json"


def load_device_probe(path: Path) -> DeviceProbe | None:
    """The cached device probe, or None when there is none (or it is from an older format)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("format") != DEVICE_FORMAT:
        return None
    rows = tuple(dict(row) for row in data["rows"])
    return DeviceProbe(data["key"], data["machine"], data["gpu"], data["crossing"], rows, str(path))
