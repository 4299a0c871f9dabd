"""Policies: training speed per extractor, the learner bound, and time to a validation target.

Throughput (default observation: 4 assets x window 32 x the default features), every arm with
the plan's n_envs / n_steps / batch size / torch threads and one BLAS thread, in its own process:
  bound: PPO on a zero-cost env with the batch env's spaces (bench/zero_env.py): the learner only;
  real:  PPO on the batch env over the feature store (what training runs);
  real/bound per extractor (target >= 0.9), real SPS vs flat (target: shared_asset >= 4x), and
  the rollout buffer's share: flat and shared_asset again with SB3's own DictRolloutBuffer;
  every arm runs once per round (--repeats rounds) and keeps its fastest run.
Time to target: training wall time (validation rollouts excluded) until the validation Sharpe on
planted-signal data first reaches each of --targets, per extractor vs flat (the baseline), medians
over --seeds; every arm trains on to the same --budget-steps and is judged out of sample (a test
window after the validation window) with its best validation weights.

Usage: python bench/bench_policies.py [--extractors flat shared_asset ...] [--json out.json]
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

EXTRACTORS = ["flat", "shared_asset", "multi_timeframe_cnn", "lstm"]
BUFFER_ARMS = ["flat", "shared_asset"]  # also measured with SB3's DictRolloutBuffer
TARGET_ARMS = EXTRACTORS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--extractors", nargs="+", default=EXTRACTORS, choices=EXTRACTORS)
    parser.add_argument("--assets", type=int, default=4)
    parser.add_argument("--years", type=float, default=2.0, help="hourly history to generate")
    parser.add_argument("--timesteps", type=int, default=32_768, help="timed steps per arm")
    parser.add_argument("--warmup", type=int, default=8_192, help="untimed steps first")
    parser.add_argument(
        "--repeats", type=int, default=2, help="throughput rounds (each arm's fastest is kept)"
    )
    parser.add_argument("--targets", nargs="+", type=float, default=[2.0, 4.0, 6.0],
                        help="validation Sharpe thresholds (time to each)")  # fmt: skip
    parser.add_argument("--signal", type=float, default=0.3, help="planted autocorrelation")
    parser.add_argument("--eval-every", type=int, default=8192)
    parser.add_argument("--max-seconds", type=float, default=300.0, help="time-to-target cap")
    parser.add_argument(
        "--budget-steps", type=int, default=131_072, help="both arms train this long, then test"
    )
    parser.add_argument(
        "--target-extractors",
        nargs="+",
        default=TARGET_ARMS,
        choices=EXTRACTORS,
        help="time-to-target arms (the first is the baseline)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="time-to-target runs per extractor")
    parser.add_argument("--skip-target", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every arm (e.g. hardware.target_rollout_steps=1024)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--arm", help=argparse.SUPPRESS)  # internal: run one arm
    parser.add_argument("--extractor", help=argparse.SUPPRESS)
    parser.add_argument("--env", help=argparse.SUPPRESS)
    parser.add_argument("--buffer", default="few_copies", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.arm:
        print(json.dumps(run_arm(args)))
        return 0
    return compare(args)


def compare(args: argparse.Namespace) -> int:
    cores = len(os.sched_getaffinity(0))
    results: dict[str, Any] = {"cores": cores}
    with tempfile.TemporaryDirectory(prefix="bench-policies-") as workdir:
        store = build_store(Path(workdir), args)
        print(f"{cores} CPU(s); {args.assets} assets x {args.years:g} y hourly, default features")
        if not args.skip_throughput:
            results["throughput"] = throughput(store, args)
        if not args.skip_target:
            results["time_to_target"] = time_to_target(store, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def throughput(store: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every arm once per round, rounds one after another, the fastest run of each arm kept: the
    machine's speed drifts over minutes, and a ratio of arms measured minutes apart carries it."""
    arms = [(extractor, env, "few_copies") for extractor in args.extractors
            for env in ("zero", "batch")]  # fmt: skip
    arms += [(e, "batch", "sb3") for e in args.extractors if e in BUFFER_ARMS]
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {arm: [] for arm in arms}
    for round_number in range(args.repeats):
        print(f"round {round_number + 1} of {args.repeats}", flush=True)
        for arm in arms:
            runs[arm].append(spawn(args, store, "throughput", *arm))

    def fastest(extractor: str, env: str, buffer: str = "few_copies") -> dict[str, Any]:
        return max(runs[(extractor, env, buffer)], key=lambda run: run["steps_per_s"])

    rows: dict[str, Any] = {}
    for extractor in args.extractors:
        bound, real = fastest(extractor, "zero"), fastest(extractor, "batch")
        rows[extractor] = {
            "bound": bound,
            "real": real,
            "real_over_bound": real["steps_per_s"] / bound["steps_per_s"],
        }
        if extractor in BUFFER_ARMS:
            rows[extractor]["real_sb3_buffer"] = fastest(extractor, "batch", "sb3")
        print(
            f"  {extractor:>19}: real {real['steps_per_s']:7,.0f} env-steps/s, learner bound "
            f"{bound['steps_per_s']:7,.0f} -> real/bound {rows[extractor]['real_over_bound']:.2f}"
            f" ({real['parameters']:,} parameters; {real['setup']})",
            flush=True,
        )
    print("throughput (real loop) vs flat; real / learner bound (target >= 0.9):")
    flat = rows.get("flat", {}).get("real", {}).get("steps_per_s")
    for extractor, row in rows.items():
        versus = f"{row['real']['steps_per_s'] / flat:.2f}x flat" if flat else "(no flat arm)"
        row["versus_flat"] = row["real"]["steps_per_s"] / flat if flat else None
        print(f"  {extractor:>19}: {versus}, real/bound {row['real_over_bound']:.2f}")
        if "real_sb3_buffer" in row:
            sb3 = row["real_sb3_buffer"]["steps_per_s"]
            row["buffer_speedup"] = row["real"]["steps_per_s"] / sb3
            print(
                f"  {'':>19}  rollout buffer: {row['buffer_speedup']:.2f}x SB3's "
                f"DictRolloutBuffer ({sb3:,.0f} env-steps/s)"
            )
    if "shared_asset" in rows and flat:
        print(f"shared_asset / flat: {rows['shared_asset']['versus_flat']:.2f}x (target >= 4x)")
    return rows


def time_to_target(store: str, args: argparse.Namespace) -> dict[str, Any]:
    """Per arm and seed: when each validation-Sharpe threshold was first reached; medians over
    seeds, a run that never reached a threshold counting as never (infinite)."""
    import math
    import statistics

    arms = args.target_extractors
    rows: dict[str, Any] = {}
    for extractor in arms:
        runs = []
        for seed in range(args.seeds):
            run = spawn(args, store, "target", extractor, env="batch", seed=seed)
            runs.append(run)
            firsts = ", ".join(
                f"{target}: {hit[0]:.1f} s" if hit else f"{target}: -"
                for target, hit in run["reached"].items()
            )
            print(
                f"  {extractor:>19} seed {seed}: validation Sharpe first >= {firsts}; best "
                f"{run['best_validation_sharpe']:.2f} in {run['steps']:,} steps "
                f"({run['train_seconds']:.0f} s); test Sharpe {run['test_sharpe']:.2f} "
                f"(buy & hold {run['test_buy_and_hold_sharpe']:.2f})",
                flush=True,
            )
        medians = {
            target: statistics.median(
                run["reached"][target][0] if run["reached"][target] else math.inf for run in runs
            )
            for target in runs[0]["reached"]
        }
        rows[extractor] = {
            "runs": runs,
            "median_seconds_to": medians,
            "median_test_sharpe": statistics.median(run["test_sharpe"] for run in runs),
            "median_best_validation_sharpe": statistics.median(
                run["best_validation_sharpe"] for run in runs
            ),
        }
    print(f"medians of {args.seeds} seed(s), training seconds to a validation Sharpe:")
    for extractor in arms:
        row = rows[extractor]
        times = ", ".join(
            f">= {t}: {v:.1f} s" if math.isfinite(v) else f">= {t}: not reached"
            for t, v in row["median_seconds_to"].items()
        )
        print(
            f"  {extractor:>19}: {times}; best validation "
            f"{row['median_best_validation_sharpe']:.2f}, test Sharpe {row['median_test_sharpe']:.2f}"
        )
    baseline = rows[arms[0]]["median_seconds_to"]
    for extractor in arms[1:]:
        ratios, at_least = {}, {}
        for target, seconds in rows[extractor]["median_seconds_to"].items():
            base = baseline[target]
            ratios[target] = base / seconds if math.isfinite(seconds) else 0.0
            if math.isfinite(base) and math.isfinite(seconds):
                shown = (
                    f"{ratios[target]:.1f}x shorter than {arms[0]}"
                    if ratios[target] >= 1
                    else f"{1 / ratios[target]:.1f}x longer than {arms[0]}"
                )
            elif math.isfinite(seconds):
                # A run that never got there would have needed more than its training time:
                # the median of (time reached, else time trained) bounds the baseline's median.
                floor = statistics.median(
                    run["reached"][target][0] if run["reached"][target] else run["train_seconds"]
                    for run in rows[arms[0]]["runs"]
                )
                at_least[target] = floor / seconds
                shown = (
                    f"reached (median), {arms[0]} not within its budget: > {at_least[target]:.1f}x "
                    f"shorter ({arms[0]} needs more than {floor:.0f} s)"
                )
            else:
                shown = "not reached (median) within the budget"
            print(f"time to validation Sharpe {target}: {extractor} {shown}")
        rows[extractor]["speedup"] = {
            t: (r if math.isfinite(r) else None) for t, r in ratios.items()
        }
        rows[extractor]["speedup_at_least"] = at_least
    return rows | {"targets": args.targets}


def build_store(root: Path, args: argparse.Namespace) -> str:
    from core.config import load_config
    from core.data.synthetic import bars_for_years, generate, write_dataset
    from core.features.build import open_store

    hour = 3_600 * 10**9
    frames = generate(
        args.assets, bars_for_years(args.years, hour), hour, 0.0, 11, autocorrelation=args.signal
    )
    write_dataset(frames, root / "data", "csv")
    store, _ = open_store(load_config(), root / "data", root / "cache")
    return str(store.path)


def spawn(
    args: argparse.Namespace,
    store: str,
    arm: str,
    extractor: str,
    env: str,
    buffer: str = "few_copies",
    seed: int = 0,
) -> dict[str, Any]:
    environment = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    environment |= thread_environment(1)  # the plan's BLAS threads (1 on CPU)
    command = [
        sys.executable, __file__, "--arm", arm, "--extractor", extractor, "--env", env,
        "--buffer", buffer, "--store", store, "--timesteps", str(args.timesteps),
        "--warmup", str(args.warmup), "--targets", *map(str, args.targets),
        "--eval-every", str(args.eval_every), "--max-seconds", str(args.max_seconds),
        "--budget-steps", str(args.budget_steps), "--seed", str(seed),
        *(f"--set={override}" for override in args.set),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if done.returncode != 0:
        raise SystemExit(f"arm {arm}/{extractor}/{env} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def build_model(args: argparse.Namespace, config: Any, store: Any, train: tuple[int, int]) -> Any:
    """The planned model on the real batch env or on the zero-cost env with the same spaces."""
    import torch

    from bench.zero_env import ZeroCostVecEnv
    from core.envs.make import make_trading_vec_env
    from core.hardware.machine import detect
    from core.hardware.planner import plan
    from core.policies.build import algorithm_class
    from training.member.models import ppo_arguments, store_layout

    resources = plan(
        detect(), config, n_assets=len(store.assets), feature_names=store.feature_names
    )
    torch.set_num_threads(resources.torch_threads)
    vec = make_trading_vec_env(resources.n_envs, "batch", config, store, fold=train, seed=args.seed)
    if args.env == "zero":
        spaces = (vec.observation_space, vec.action_space)
        vec.close()
        vec = ZeroCostVecEnv(
            resources.n_envs, *spaces, config.env.episode_bars, train[1] - train[0]
        )
    arguments = ppo_arguments(
        config, store_layout(store, config), resources.n_steps, resources.batch_size
    )
    if args.buffer == "sb3":
        arguments.pop("rollout_buffer_class", None)
    model = algorithm_class(config)(env=vec, seed=args.seed, device="cpu", **arguments)
    setup = (
        f"n_envs {resources.n_envs}, n_steps {resources.n_steps}, batch {resources.batch_size}, "
        f"{resources.torch_threads} torch thread(s)"
    )
    return model, setup


def run_arm(args: argparse.Namespace) -> dict[str, Any]:
    from core.config import load_config
    from core.features.resolved import with_inferred
    from core.features.store import FeatureStore

    store = FeatureStore.attach(args.store)
    overrides = [*args.set, f"policy.extractor={args.extractor}"]
    config = with_inferred(load_config(overrides=overrides), store.meta)
    n_time = len(store.timestamps)
    train = (config.env.window - 1, int(n_time * 0.7))
    model, setup = build_model(args, config, store, train)
    parameters = sum(p.numel() for p in model.policy.parameters())
    if args.arm == "throughput":
        model.learn(args.warmup)
        started = time.perf_counter()
        model.learn(args.timesteps, reset_num_timesteps=False)
        seconds = time.perf_counter() - started
        return {"steps_per_s": args.timesteps / seconds, "seconds": seconds, "setup": setup,
                "parameters": parameters}  # fmt: skip
    windows = {
        "validation": (int(n_time * 0.7) + 1, int(n_time * 0.85)),
        "test": (int(n_time * 0.85) + 1, n_time),
    }
    return target_arm(args, config, store, model, windows) | {"parameters": parameters}


def target_arm(
    args: argparse.Namespace, config: Any, store: Any, model: Any, windows: dict[str, Any]
) -> dict[str, Any]:
    import copy

    import numpy as np
    from stable_baselines3.common.callbacks import BaseCallback

    from core.bar_range import BarRange
    from core.envs.market import ExecutionRules
    from core.envs.settings import env_settings
    from core.evaluation.baselines import buy_and_hold
    from core.evaluation.judge import annualisation_of
    from core.evaluation.metrics import sharpe
    from core.evaluation.rollout import rollout
    from training.member.models import agent_policy

    annual = annualisation_of(store, config)
    settings = env_settings(config)

    def window_sharpe(name: str, policy: Any) -> float:
        track = rollout(store, settings, BarRange(*windows[name]), {"p": policy})["p"]
        return float(sharpe(track.returns, annual.periods_per_year))

    class Target(BaseCallback):
        """Pauses the clock for validation every --eval-every steps; keeps the best weights."""

        def __init__(self) -> None:
            super().__init__()
            self.trained, self.since = 0.0, time.perf_counter()
            self.next_eval = args.eval_every
            self.reached: dict[str, list[float] | None] = {f"{t:g}": None for t in args.targets}
            self.best, self.best_state = -np.inf, None

        def _on_step(self) -> bool:
            within = self.trained + self._running() < args.max_seconds
            return within and self.num_timesteps < args.budget_steps

        def _running(self) -> float:
            return time.perf_counter() - self.since

        def _on_rollout_start(self) -> None:
            if self.num_timesteps < self.next_eval:
                return
            self.trained += self._running()
            self.next_eval += args.eval_every
            value = window_sharpe("validation", agent_policy(self.model))
            if value > self.best:
                self.best = value
                self.best_state = copy.deepcopy(self.model.policy.state_dict())
            for target in args.targets:
                if value >= target and self.reached[f"{target:g}"] is None:
                    self.reached[f"{target:g}"] = [self.trained, self.num_timesteps]
            self.since = time.perf_counter()

    target = Target()
    model.learn(10**9, callback=target)
    target.trained += target._running()
    if target.best_state is not None:
        model.policy.load_state_dict(target.best_state)
    rules = ExecutionRules.from_config(settings.env, store.bar_ns, len(store.assets))
    return {
        "reached": target.reached,  # threshold -> [training seconds, steps] when first reached
        "best_validation_sharpe": float(target.best),
        "steps": model.num_timesteps,
        "train_seconds": target.trained,
        "test_sharpe": window_sharpe("test", agent_policy(model)),
        "test_buy_and_hold_sharpe": window_sharpe("test", buy_and_hold(len(store.assets), rules)),
    }


if __name__ == "__main__":
    sys.exit(main())
