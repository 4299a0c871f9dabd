"""End-to-end PPO training: the planned configuration against a naive one, same data and network.

Throughput: env steps per second including PPO updates, for the same total steps.
  planned: the batch env with the planner's n_envs / n_steps / batch size / torch threads and
           one BLAS thread per process (what `start_training.sh` runs);
  naive:   SB3 defaults (n_steps 2048, batch 64), a SubprocVecEnv of the pandas env
           (bench/naive_env.py) with n_envs = cores, and no thread limits.
Time-to-target: training wall time (validation rollouts excluded: both arms share the same
evaluator) until the Sharpe on a validation window of planted-signal data first reaches
--target-sharpe; both arms are evaluated every --eval-every steps.

Each arm runs in its own process, so thread settings cannot leak between them.
Usage: python bench/bench_training.py [--timesteps 32768] [--json out.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import os
import subprocess
import tempfile
import time
from typing import Any

from core.hardware.threads import THREAD_VARIABLES, thread_environment

# Part 1 trains on the default features (a realistic observation); part 2 on one return feature
# of strongly autocorrelated markets, so a target is reachable within a benchmark's minutes.
THROUGHPUT_SETTINGS: list[str] = []
TARGET_SETTINGS = [
    "features.timeframes=[1h]",
    "features.return_horizons=[1]",
    "features.indicators=[]",
    "features.normalisation_window=48",
    "env.window=2",
    "env.episode_bars=256",
    "env.fee_bps=0.5",
    "env.half_spread_bps=0.0",
    "env.slippage_bps=0.0",
    "ppo.learning_rate=0.001",
]
NAIVE_N_STEPS, NAIVE_BATCH = 2048, 64  # SB3's PPO defaults


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--assets", type=int, default=4)
    parser.add_argument("--years", type=float, default=1.5, help="hourly history to generate")
    parser.add_argument("--timesteps", type=int, default=32_768, help="steps per throughput arm")
    parser.add_argument("--target-sharpe", type=float, default=3.0)
    parser.add_argument("--signal", type=float, default=0.3, help="planted autocorrelation")
    parser.add_argument("--eval-every", type=int, default=8192)
    parser.add_argument("--max-seconds", type=float, default=240.0, help="time-to-target cap")
    parser.add_argument("--skip-target", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--arm", help=argparse.SUPPRESS)  # internal: run one arm
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.arm:
        print(json.dumps(run_arm(args)))
        return 0
    return compare(args)


def compare(args: argparse.Namespace) -> int:
    cores = len(os.sched_getaffinity(0))
    results: dict[str, Any] = {"cores": cores, "timesteps": args.timesteps}
    with tempfile.TemporaryDirectory(prefix="bench-training-") as workdir:
        stores = {
            "throughput": build_store(Path(workdir), "throughput", THROUGHPUT_SETTINGS, args),
            "target": build_store(Path(workdir), "target", TARGET_SETTINGS, args),
        }
        print(
            f"{cores} CPU(s); {args.assets} assets x {args.years:g} y hourly, signal {args.signal}"
        )
        rows = {}
        for arm in ("naive", "planned"):
            rows[arm] = spawn(arm, "throughput", stores["throughput"], args)
            print(
                f"  throughput {arm:>7}: {rows[arm]['steps_per_s']:,.0f} env-steps/s "
                f"({rows[arm]['setup']})",
                flush=True,
            )
        ratio = rows["planned"]["steps_per_s"] / rows["naive"]["steps_per_s"]
        results["throughput"] = rows | {"ratio": ratio}
        print(f"throughput: planned {ratio:.1f}x naive (target >= 5x)")
        if not args.skip_target:
            target = {}
            for arm in ("naive", "planned"):
                target[arm] = spawn(arm, "target", stores["target"], args)
                reached = target[arm]["seconds_to_target"]
                print(
                    f"  time to validation Sharpe {args.target_sharpe:g} {arm:>7}: "
                    + (f"{reached:.1f} s" if reached is not None else "not reached")
                    + f" (best {target[arm]['best_sharpe']:.2f} after "
                    f"{target[arm]['steps']:,} steps, {target[arm]['train_seconds']:.1f} s)",
                    flush=True,
                )
            results["time_to_target"] = target | {"target_sharpe": args.target_sharpe}
            naive_t, planned_t = (target[a]["seconds_to_target"] for a in ("naive", "planned"))
            if planned_t is not None and naive_t is not None:
                print(f"time to target: planned {naive_t / planned_t:.1f}x faster than naive")
            elif planned_t is not None:
                print(
                    f"time to target: only planned reached it (naive capped at {args.max_seconds:g} s)"
                )
            else:
                print("time to target: planned did not reach the target")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def build_store(root: Path, name: str, settings: list[str], args: argparse.Namespace) -> str:
    from core.config import load_config
    from core.data.synthetic import bars_for_years, generate, write_dataset
    from core.features.build import open_store

    config = load_config(overrides=settings)
    hour = 3_600 * 10**9
    frames = generate(
        args.assets, bars_for_years(args.years, hour), hour, 0.0, 11, autocorrelation=args.signal
    )
    write_dataset(frames, root / name, "csv")
    store, _ = open_store(config, root / name, root / "cache")
    return str(store.path)


def spawn(arm: str, task: str, store: str, args: argparse.Namespace) -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    if arm == "planned":
        env |= thread_environment(1)  # the plan's BLAS threads (always 1 on CPU)
    command = [
        sys.executable, __file__, "--arm", arm, "--task", task, "--store", store,
        "--timesteps", str(args.timesteps), "--target-sharpe", str(args.target_sharpe),
        "--eval-every", str(args.eval_every), "--max-seconds", str(args.max_seconds),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"arm {arm}/{task} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_arm(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    from core.bar_range import BarRange
    from core.config import load_config
    from core.envs.settings import env_settings
    from core.evaluation.judge import annualisation_of
    from core.evaluation.metrics import sharpe
    from core.evaluation.rollout import rollout
    from core.features.resolved import with_inferred
    from core.features.store import FeatureStore

    settings = TARGET_SETTINGS if args.task == "target" else THROUGHPUT_SETTINGS
    store = FeatureStore.attach(args.store)
    config = with_inferred(load_config(overrides=settings), store.meta)  # look-backs in bars
    n_time = len(store.timestamps)
    train = (config.env.window - 1, int(n_time * 0.75))
    validation = (int(n_time * 0.75) + 48, n_time)
    model, setup = (_planned if args.arm == "planned" else _naive)(config, store, train)
    flat = args.arm == "naive"

    def policy(obs: dict[str, Any], weights: Any, t: int) -> Any:
        seen = np.concatenate([obs["market"], obs["portfolio"]], axis=1) if flat else obs
        return model.predict(seen, deterministic=True)[0]

    annual = annualisation_of(store, config)

    def validation_sharpe() -> float:
        track = rollout(store, env_settings(config), BarRange(*validation), {"m": policy})["m"]
        return sharpe(track.returns, annual.periods_per_year)

    if args.task == "throughput":
        started = time.perf_counter()
        model.learn(args.timesteps)
        seconds = time.perf_counter() - started
        return {"steps_per_s": model.num_timesteps / seconds, "steps": model.num_timesteps,
                "seconds": seconds, "setup": setup, "torch_threads": torch.get_num_threads()}  # fmt: skip

    class Target(BaseCallback):
        """Pauses the clock for validation every --eval-every steps; stops at the target."""

        def __init__(self) -> None:
            super().__init__()
            self.trained = 0.0
            self.since = time.perf_counter()
            self.next_eval = args.eval_every
            self.reached: float | None = None
            self.best = -np.inf

        def _on_step(self) -> bool:
            return self.reached is None and self.trained + self._running() < args.max_seconds

        def _running(self) -> float:
            return time.perf_counter() - self.since

        def _on_rollout_start(self) -> None:
            if self.num_timesteps < self.next_eval:
                return
            self.trained += self._running()
            self.next_eval += args.eval_every
            value = validation_sharpe()
            self.best = max(self.best, value)
            if value >= args.target_sharpe and self.reached is None:
                self.reached = self.trained
            self.since = time.perf_counter()

    target = Target()
    model.learn(10**9, callback=target)
    target.trained += target._running()
    return {
        "seconds_to_target": target.reached,
        "best_sharpe": float(target.best),
        "steps": model.num_timesteps,
        "train_seconds": target.trained,
        "setup": setup,
    }


def _planned(config: Any, store: Any, train: tuple[int, int]) -> tuple[Any, str]:
    import torch
    from stable_baselines3 import PPO

    from core.envs.make import make_trading_vec_env
    from core.hardware.machine import detect
    from core.hardware.planner import plan
    from training.member.models import ppo_arguments, store_layout

    resources = plan(
        detect(), config, n_assets=len(store.assets), feature_names=store.feature_names
    )
    torch.set_num_threads(resources.torch_threads)
    vec = make_trading_vec_env(resources.n_envs, "batch", config, store, fold=train, seed=0)

    layout = store_layout(store, config)
    arguments = ppo_arguments(config, layout, resources.n_steps, resources.batch_size)
    model = PPO(env=vec, seed=0, device="cpu", **arguments)
    setup = (
        f"batch env, n_envs {resources.n_envs}, n_steps {resources.n_steps}, batch "
        f"{resources.batch_size}, {resources.torch_threads} torch thread(s), 1 BLAS thread"
    )
    return model, setup


def _naive(config: Any, store: Any, train: tuple[int, int]) -> tuple[Any, str]:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import SubprocVecEnv

    from bench.naive_env import NaiveEnvFactory

    cores = len(os.sched_getaffinity(0))
    env = config.env
    cost = env.fee_bps + env.half_spread_bps + env.slippage_bps
    factory = NaiveEnvFactory(str(store.path), env.window, env.episode_bars, cost, train[1])
    vec = SubprocVecEnv([factory] * cores)
    model = PPO(
        "MlpPolicy", vec, seed=0, device="cpu",
        policy_kwargs={"net_arch": list(config.ppo.net_arch)},
        learning_rate=config.ppo.learning_rate,
    )  # fmt: skip
    setup = (
        f"SubprocVecEnv x {cores} pandas envs, n_steps {NAIVE_N_STEPS}, batch {NAIVE_BATCH}, "
        f"{torch.get_num_threads()} torch thread(s), no thread limits"
    )
    return model, setup


if __name__ == "__main__":
    sys.exit(main())
