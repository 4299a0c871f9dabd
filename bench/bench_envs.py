"""Env steps per second: naive pandas env vs TradingEnv vs BatchTradingEnv vs SubprocVecEnv.

Why: PPO spends most of a rollout stepping envs; an env that does `.loc` lookups and builds lists
every step starves the learner. The baseline is bench/naive_env.py, written the way most
open-source trading envs are, on the same store, window and execution contract.

Measured in this run, on this machine, with one BLAS thread, random actions drawn beforehand:
  naive (1 env), TradingEnv (1 env), BatchTradingEnv at K = 1, 16, 256, 1024, and SB3's
  SubprocVecEnv of TradingEnv with 2 workers (one env each), plus memory-copy bandwidth.
The copy bound is bandwidth ÷ observation bytes per env-step: no env that writes a fresh
observation can step faster. Each arm runs `--seconds` after a warm-up; env-steps count K per
batch step. Episode ends and auto-resets happen inside the timed loops, as in training.

    python bench/bench_envs.py [--assets 10] [--years 3] [--sizes 1 16 256 1024]
                               [--seconds 1] [--rounds 5] [--json out.json] [--skip-subproc]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as `python bench/bench_envs.py`
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

TARGET_K = 256
TARGET_BATCH_SPEEDUP = 100.0
TARGET_BATCH_OF_BOUND = 0.5
TARGET_SINGLE_SPEEDUP = 10.0
COPY_BYTES = 256 * 1024**2


def copy_bandwidth(repeats: int = 7) -> float:
    """Bytes per second numpy copies between two large arrays (read + write of every byte)."""
    source = np.ones(COPY_BYTES // 4, np.float32)
    target = np.empty_like(source)
    np.copyto(target, source)  # fault the pages in before timing
    best = min(_timed(lambda: np.copyto(target, source)) for _ in range(repeats))
    return COPY_BYTES / best


def _timed(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def best_of(rounds: int, measure: Callable[[], float]) -> float:
    """The fastest of several short rounds: a small shared machine only ever adds time."""
    return max(measure() for _ in range(rounds))


def run_single(env: Any, seconds: float, seed: int = 0) -> float:
    """Env-steps per second of a gymnasium env, resetting when an episode ends."""
    actions = np.random.default_rng(seed).uniform(-1, 1, (512, env.action_space.shape[0]))
    actions = actions.astype(np.float32)
    env.reset(seed=seed)
    steps, start = 0, time.perf_counter()
    while True:
        for action in actions[:64]:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        steps += 64
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return steps / elapsed


def run_vec(vec: Any, seconds: float, seed: int = 0) -> float:
    """Env-steps per second of a VecEnv (K env-steps per call; resets are automatic)."""
    shape = (16, vec.num_envs, vec.action_space.shape[0])
    actions = np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)
    vec.reset()
    for batch in actions[:4]:  # warm-up
        vec.step(batch)
    calls, start = 0, time.perf_counter()
    while True:
        for batch in actions:
            vec.step(batch)
        calls += len(actions)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls * vec.num_envs / elapsed


def warm(env: Any) -> None:
    env.reset(seed=1)
    for _ in range(32):
        env.step(env.action_space.sample())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--assets", type=int, default=10)
    parser.add_argument("--years", type=float, default=3.0, help="synthetic history to generate")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 256, 1024])
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per arm; the best is kept")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--skip-subproc", action="store_true")
    args = parser.parse_args(argv)
    threadpool_limits(1)

    from bench.naive_env import NaivePandasEnv
    from core.config import load_config
    from core.envs.make import make_env, make_trading_vec_env
    from core.features.build import feature_store
    from core.features.resolved import with_inferred

    with tempfile.TemporaryDirectory(prefix="bench-envs-") as workdir:
        config = load_config(
            overrides=[
                f"data.synthetic_assets={args.assets}",
                f"data.synthetic_years={args.years}",
                f"data.sample_dir={workdir}/sample",
                f"data.cache_dir={workdir}/cache",
            ]
        )
        print("building the feature store ...", end="", flush=True)
        store, _ = feature_store(config)
        config = with_inferred(config, store.meta)  # look-backs in bars, as the store resolved
        env = make_env(config, store)
        obs_bytes = sum(space.shape[0] * 4 for space in env.observation_space.spaces.values())
        print(
            f" {len(store.assets)} assets × {len(store.timestamps):,} bars × "
            f"{len(store.feature_names)} features; window {config.env.window}; "
            f"observation {obs_bytes / 1024:.1f} KiB per env-step",
            flush=True,
        )
        bandwidth = copy_bandwidth()
        bound = bandwidth / obs_bytes
        print(f"memory copy: {bandwidth / 1e9:.2f} GB/s → bound {bound:,.0f} env-steps/s")

        rows: list[dict[str, Any]] = []

        def record(name: str, k: int, rate: float) -> None:
            rows.append({"arm": name, "k": k, "env_steps_per_s": rate})
            print(f"  {name:<24} {rate:>12,.0f} env-steps/s", flush=True)

        naive = NaivePandasEnv(
            str(store.path),
            window=config.env.window,
            episode_bars=config.env.episode_bars,
            cost_bps=3.0,
        )
        warm(naive)
        record("naive pandas env", 1, best_of(args.rounds, lambda: run_single(naive, args.seconds)))
        warm(env)
        record("TradingEnv", 1, best_of(args.rounds, lambda: run_single(env, args.seconds)))
        for k in args.sizes:
            vec = make_trading_vec_env(k, "batch", config, store)
            rate = best_of(args.rounds, lambda vec=vec: run_vec(vec, args.seconds))
            record(f"BatchTradingEnv K={k}", k, rate)
        if not args.skip_subproc:
            vec = make_trading_vec_env(2, "subproc", config, store)
            rate = best_of(args.rounds, lambda: run_vec(vec, args.seconds))
            record("SubprocVecEnv 2 workers", 2, rate)
            vec.close()

    baseline = rows[0]["env_steps_per_s"]
    for row in rows:
        row["vs_naive"] = row["env_steps_per_s"] / baseline
        row["of_copy_bound"] = row["env_steps_per_s"] / bound
    print_table(rows)
    verdicts = targets(rows)
    for line in verdicts["lines"]:
        print(line)
    if args.json:
        result = {
            "machine": {"python": platform.python_version(), "cpus": _cpus()},
            "shape": {
                "assets": len(store.assets),
                "bars": len(store.timestamps),
                "features": len(store.feature_names),
                "window": config.env.window,
                "observation_bytes": obs_bytes,
            },
            "copy_bandwidth_bytes_per_s": bandwidth,
            "copy_bound_env_steps_per_s": bound,
            "rows": rows,
            "targets_met": verdicts["met"],
        }
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'arm':<26}{'env-steps/s':>14}{'× naive':>10}{'of copy bound':>15}")
    for row in rows:
        print(
            f"{row['arm']:<26}{row['env_steps_per_s']:>14,.0f}{row['vs_naive']:>9.1f}×"
            f"{row['of_copy_bound']:>14.1%}"
        )


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_arm = {row["arm"]: row for row in rows}
    lines, met = [], {}
    single = by_arm["TradingEnv"]
    met["single"] = single["vs_naive"] >= TARGET_SINGLE_SPEEDUP
    lines.append(
        f"target TradingEnv ≥ {TARGET_SINGLE_SPEEDUP:g}× naive: {single['vs_naive']:.1f}× "
        f"{'met' if met['single'] else 'NOT met'}"
    )
    batch = by_arm.get(f"BatchTradingEnv K={TARGET_K}")
    if batch is not None:
        met["batch_speedup"] = batch["vs_naive"] >= TARGET_BATCH_SPEEDUP
        met["batch_bound"] = batch["of_copy_bound"] >= TARGET_BATCH_OF_BOUND
        lines.append(
            f"target BatchTradingEnv K={TARGET_K} ≥ {TARGET_BATCH_SPEEDUP:g}× naive: "
            f"{batch['vs_naive']:.0f}× {'met' if met['batch_speedup'] else 'NOT met'}; "
            f"≥ {TARGET_BATCH_OF_BOUND:.0%} of the copy bound: {batch['of_copy_bound']:.0%} "
            f"{'met' if met['batch_bound'] else 'NOT met'}"
        )
    return {"lines": lines, "met": met}


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    raise SystemExit(main())
