"""Members per hour of one population group on the CPU and on CUDA, the same group in one run.

A group of G members (G in --sizes, default 1 8 32 128) of one policy trains one PPO iteration
(each member's rollout on the batch env over the feature store, then one batched update) on each
device; the CPU arm is the baseline. Per G it prints seconds per iteration, members per hour (of
--timesteps PPO steps each) for both, their ratio, and the crossing point: the smallest measured
G from which CUDA wins. One process each: torch threads = the usable CPUs (at most 16) on the
CPU, 2 on CUDA (the plan's learner threads on a GPU). Without CUDA the GPU column reads
"not available". Cases: `quick` (the quick preset's flat one-row policy) and `default` (the
default config's policy and window).
Usage: python bench/bench_device.py [--sizes 1 8 32 128] [--cases quick default]
       [--n-envs 64 --n-steps 128 --batch 1024] [--json out.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import tempfile
from typing import Any

CASES = {"quick": ["quick"], "default": []}  # case -> presets
PRESETS = Path(__file__).resolve().parents[1] / "config" / "presets"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 8, 32, 128])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--n-envs", type=int, default=64)
    parser.add_argument("--n-steps", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--iterations", type=int, default=1, help="timed iterations per cell")
    parser.add_argument("--timesteps", type=int, default=60_000, help="PPO steps per member")
    parser.add_argument("--assets", type=int, default=4)
    parser.add_argument("--years", type=float, default=2.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    import torch

    from bench.bench_policies import build_store
    from core.config import load_config
    from core.features.store import FeatureStore
    from core.hardware.machine import detect
    from training.population.device_timing import time_groups

    hardware = detect()
    cuda = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name(0) if cuda else "not available"
    cpu_threads = min(16, hardware.usable_cpus)
    print(f"{hardware.usable_cpus} usable CPU(s); GPU: {gpu}; torch {torch.__version__}")
    shape = (args.n_envs, args.n_steps, args.batch)
    results: dict[str, Any] = {"gpu": gpu, "cpus": hardware.usable_cpus, "cases": {}}
    with tempfile.TemporaryDirectory(prefix="bench-device-") as workdir:
        store = FeatureStore.attach(build_store(Path(workdir), _store_settings(args)))
        for case in args.cases:
            config = load_config([PRESETS / f"{name}.yaml" for name in CASES[case]])
            print(
                f"{case}: policy.extractor={config.policy.extractor}, env.window="
                f"{config.env.window}, n_envs {args.n_envs} x n_steps {args.n_steps}, "
                f"batch {args.batch}, {config.ppo.n_epochs} epochs",
                flush=True,
            )

            def report(timing: Any) -> None:
                print(
                    f"  {timing.device:<4} G={timing.size:<4} {timing.seconds_per_iteration:8.2f} s "
                    f"per iteration, {timing.members_per_hour(args.timesteps):9.1f} members/h",
                    flush=True,
                )

            arms = {"cpu": time_groups(config, store, "cpu", args.sizes, shape, cpu_threads,
                                       args.iterations, report)}  # fmt: skip
            if cuda:
                arms["cuda"] = time_groups(
                    config, store, "cuda", args.sizes, shape, 2, args.iterations, report
                )
            results["cases"][case] = _table(arms, args.timesteps)
    _print(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _store_settings(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(assets=args.assets, years=args.years, signal=0.0)


def _table(arms: dict[str, list[Any]], timesteps: int) -> dict[str, Any]:
    from training.population.device_timing import crossing

    rows = []
    for k, cpu in enumerate(arms["cpu"]):
        row = {
            "size": cpu.size,
            "cpu_s": cpu.seconds_per_iteration,
            "cpu_members_per_hour": cpu.members_per_hour(timesteps),
        }
        if "cuda" in arms:
            gpu = arms["cuda"][k]
            row |= {
                "cuda_s": gpu.seconds_per_iteration,
                "cuda_members_per_hour": gpu.members_per_hour(timesteps),
                "ratio": cpu.seconds_per_iteration / gpu.seconds_per_iteration,
            }
        rows.append(row)
    cross = crossing(arms["cpu"], arms["cuda"]) if "cuda" in arms else None
    return {"rows": rows, "crossing": cross, "measured_cuda": "cuda" in arms}


def _print(results: dict[str, Any]) -> None:
    print(f"\nmembers per hour, one process; GPU: {results['gpu']}")
    for case, table in results["cases"].items():
        print(f"{case}:")
        print(f"  {'G':>5} {'CPU (baseline)':>16} {'CUDA':>16} {'CUDA / CPU':>11}")
        for row in table["rows"]:
            gpu = (
                f"{row['cuda_members_per_hour']:16.1f} {row['ratio']:10.2f}x"
                if "cuda_s" in row
                else f"{'not available':>16} {'':>11}"
            )
            print(f"  {row['size']:>5} {row['cpu_members_per_hour']:16.1f} {gpu}")
        if not table["measured_cuda"]:
            print("  crossing point: not measured (no CUDA device)")
        elif table["crossing"] is None:
            print("  crossing point: none, the CPU wins at every measured size")
        else:
            print(f"  crossing point: CUDA wins from G = {table['crossing']}")


if __name__ == "__main__":
    raise SystemExit(main())
