"""GPU discovery through torch, in a short-lived subprocess.

A subprocess because initialising CUDA in the launcher would break forked env workers and would
import numpy/torch before the thread limits are known. `torch.cuda.mem_get_info` gives free
memory per visible device (MIG slices included) and honours CUDA_VISIBLE_DEVICES; NVML, when
installed, only adds the driver version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.units import GIB

PROBE_TIMEOUT_S = 120


@dataclass(frozen=True)
class Gpu:
    """A visible GPU; `memory_gb` / `free_memory_gb` are None where nobody stated them (a SLURM
    allocation whose profile names no gpu_memory_gb): the plan then says it could not check them."""

    name: str
    memory_gb: float | None
    free_memory_gb: float | None
    index: int = 0
    detail: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def nvidia_driver_present() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


def detect_gpus(environ: dict[str, str] | None = None) -> tuple[list[Gpu], str]:
    """Visible GPUs and a sentence saying how they were found (or why there are none)."""
    env = dict(os.environ if environ is None else environ)
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return [], f"none: CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    if not nvidia_driver_present():
        return [], "none: no NVIDIA driver (/proc/driver/nvidia/version absent)"
    env.update(
        {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "core.hardware.gpus"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            env=env,
            cwd=Path(__file__).resolve().parents[1],
        )
    except subprocess.TimeoutExpired:
        return [], f"none: the torch CUDA probe did not answer within {PROBE_TIMEOUT_S} s"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return [], f"none: the torch CUDA probe failed ({last})"
    report = json.loads(done.stdout)
    gpus = [Gpu(**item) for item in report["gpus"]]
    where = f", CUDA_VISIBLE_DEVICES={visible}" if visible is not None else ""
    return gpus, f"torch.cuda.mem_get_info{where}{report['note']}"


def _probe() -> dict:
    """Runs in the subprocess: list visible devices with total and free memory."""
    try:
        import torch
    except ImportError:
        return {"gpus": [], "note": " (torch is not installed)"}
    if not torch.cuda.is_available():
        return {"gpus": [], "note": " (torch.cuda.is_available() is False)"}
    driver = _nvml_driver_version()
    gpus = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        props = torch.cuda.get_device_properties(index)
        detail = {"compute_capability": f"{props.major}.{props.minor}"}
        if driver:
            detail["driver"] = driver
        gpus.append(
            Gpu(props.name, round(total / GIB, 2), round(free / GIB, 2), index, detail).to_json()
        )
    return {"gpus": gpus, "note": ""}


def _nvml_driver_version() -> str | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return None
    return version.decode() if isinstance(version, bytes) else str(version)


if __name__ == "__main__":
    print(json.dumps(_probe()))
