"""PPO against SAC and TQC (training.algorithm) on the same folds, members and data, out of sample:
the quick preset's planted-edge sample and a daily business-day stock dataset.

Every arm is the command a user types (`train_walk_forward.py --set training.algorithm=X`, local
launcher). PPO is the baseline. Two budgets: the same env steps per member (`--timesteps`), and
the same wall time, both ways: each off-policy learner is run again with the env steps it can
take in PPO's wall time at its own measured speed (off-policy learners update after every step,
so on a CPU they take far fewer steps in the same time), and PPO is run again with the steps it
takes in each off-policy learner's wall. Walls are whole commands (start-up, the ensemble walk,
the report) after the data set's features are built once. It prints per data set and arm the stitched
out-of-sample Sharpe, the Deflated Sharpe Ratio, the best baseline's Sharpe, whether the report
flagged a constant position, env steps and wall time, and the ratios to PPO. Each learner is
also run with features.regime=hmm (the HMM's filtered state probabilities as features) at the
same env steps.
Usage: python bench/bench_algorithms.py [--members 2] [--timesteps 4000] [--folds 2] [--skip-regime] [--json out.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import subprocess
import tempfile
import time
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "training" / "train_walk_forward.py"
ALGORITHMS = ("ppo", "sac", "tqc")
DATASETS = ("sample", "stocks")
STOCK_ASSETS = 3
STOCK_START = "2012-01-02"
STOCK_DAYS = 2600  # business days: ten years, room for the quick preset's folds
STOCK_SIGNAL = 0.3  # the planted edge's strength (core.data.synthetic)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--timesteps", type=int, default=4_000, help="env steps per member")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--algorithms", nargs="+", default=["sac", "tqc"], choices=ALGORITHMS[1:])
    parser.add_argument("--skip-equal-wall", action="store_true")
    parser.add_argument("--skip-regime", action="store_true", help="no features.regime=hmm arms")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    results: dict[str, Any] = vars(args) | {"datasets": {}}
    with tempfile.TemporaryDirectory(dir=REPO) as scratch_name:
        scratch = Path(scratch_name)
        for dataset in args.datasets:
            data = _stock_dataset(scratch / "stocks") if dataset == "stocks" else None
            arms: dict[str, Any] = {}
            results["datasets"][dataset] = arms
            print(f"{dataset}: {args.members} members x {args.folds} fold(s)", flush=True)
            _warm_features(args, scratch, dataset, data)
            arms["ppo"] = _arm(args, scratch, dataset, data, "ppo", args.timesteps)
            for algorithm in args.algorithms:
                arms[algorithm] = _arm(args, scratch, dataset, data, algorithm, args.timesteps)
            if not args.skip_equal_wall:
                ppo_per_step = arms["ppo"]["wall_s"] / args.timesteps
                for algorithm in args.algorithms:
                    per_step = arms[algorithm]["wall_s"] / args.timesteps
                    steps = max(int(arms["ppo"]["wall_s"] / per_step), _MIN_STEPS)
                    arms[f"{algorithm} (PPO's wall)"] = _arm(
                        args, scratch, dataset, data, algorithm, steps
                    )
                    # and the other way: PPO given the off-policy learner's wall
                    steps = int(arms[algorithm]["wall_s"] / ppo_per_step)
                    arms[f"ppo ({algorithm}'s wall)"] = _arm(
                        args, scratch, dataset, data, "ppo", steps, tag=f"{algorithm}-wall"
                    )
            if not args.skip_regime:
                for algorithm in ("ppo", *args.algorithms):
                    arms[f"{algorithm} + hmm"] = _arm(
                        args, scratch, dataset, data, algorithm, args.timesteps, REGIME
                    )
    _print(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float) + "\n")
    return 0


REGIME = ("features.regime=hmm",)
_MIN_STEPS = 2_048  # below this an off-policy learner has barely left its random warm-up


def _stock_dataset(folder: Path) -> Path:
    """Daily bars on business days (no weekends), several assets with a planted edge: the shape
    of a stock portfolio, CSV per asset, dates as the first column."""
    import pandas as pd

    from core.data.synthetic import generate
    from core.units import DAY_NS

    folder.mkdir(parents=True, exist_ok=True)
    days = pd.bdate_range(STOCK_START, periods=STOCK_DAYS, tz="UTC")
    for name, frame in generate(STOCK_ASSETS, STOCK_DAYS, DAY_NS, STOCK_SIGNAL, seed=11).items():
        frame = frame.drop(columns="timestamp")
        frame.insert(0, "date", days.strftime("%Y-%m-%d"))
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


def _warm_features(
    args: argparse.Namespace, scratch: Path, dataset: str, data: Path | None
) -> None:
    """Build the data set's feature store before the first arm, so no arm's wall time (and no
    equal-wall budget derived from it) includes it."""
    command = [
        sys.executable, str(CLI), "--preset", "quick", "--no-progress",
        "--export-features", str(scratch / f"{dataset}-features.parquet"),
        "--set", f"data.cache_dir={scratch / 'cache'}", *[item for pair in args.set for item in ("--set", pair)],
        *(["--data", str(data)] if data is not None else []),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        print(done.stdout[-4000:] + done.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"{dataset}: building the features failed (exit {done.returncode})")


def _arm(
    args: argparse.Namespace,
    scratch: Path,
    dataset: str,
    data: Path | None,
    algorithm: str,
    steps: int,
    extra: tuple[str, ...] = (),
    tag: str = "",
) -> dict[str, Any]:
    suffix = "".join(f"-{item.split('=')[-1]}" for item in extra) + (f"-{tag}" if tag else "")
    output = scratch / f"{dataset}-{algorithm}-{steps}{suffix}"
    sets = [f"training.algorithm={algorithm}", "training.tensorboard=false", *extra, *args.set]
    if algorithm != "ppo":  # learning starts must come inside a short budget
        sets.append(f"{algorithm}.learning_starts={min(1000, steps // 4)}")
    command = [
        sys.executable, str(CLI), "--preset", "quick", "--ensemble", str(args.members),
        "--timesteps", str(steps), "--folds", str(args.folds), "--no-progress",
        "--output", str(output), "--name", algorithm,
        "--set", f"data.cache_dir={scratch / 'cache'}",
        *(["--data", str(data)] if data is not None else []),
        *[item for pair in sets for item in ("--set", pair)],
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stdout[-4000:] + done.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"{dataset} {algorithm} failed (exit {done.returncode})")
    summary = json.loads((next(output.iterdir()) / "metrics.json").read_text())
    agent = summary["strategies"]["agent"]
    arm = {
        "steps": steps,
        "wall_s": wall,
        "sharpe": agent["sharpe"],
        "dsr": agent["dsr"],
        "significant": summary["significant"],
        "best_baseline": summary["best_baseline"]["name"],
        "best_baseline_sharpe": summary["best_baseline"]["sharpe"],
        "constant": bool(summary["constant_positions"]["flagged"]),
    }
    label = " ".join((algorithm, *extra, *([tag] if tag else [])))
    print(f"  {label} {steps:,} steps: {wall:.0f} s, Sharpe {agent['sharpe']:.2f}", flush=True)
    return arm


def _print(results: dict[str, Any]) -> None:
    header = f"{'data':<8} {'arm':<20} {'steps':>7} {'wall s':>7} {'x PPO':>6} {'Sharpe':>7} "
    print("\n" + header + f"{'DSR':>6} {'baseline (Sharpe)':<26} constant")
    for dataset, arms in results["datasets"].items():
        ppo = arms["ppo"]
        for name, arm in arms.items():
            baseline = f"{arm['best_baseline']} ({arm['best_baseline_sharpe']:.2f})"
            print(
                f"{dataset:<8} {name:<20} {arm['steps']:>7,} {arm['wall_s']:>7.0f} "
                f"{arm['wall_s'] / ppo['wall_s']:>6.2f} {arm['sharpe']:>7.2f} {arm['dsr']:>6.2f} "
                f"{baseline:<26} {'yes' if arm['constant'] else 'no'}"
            )


if __name__ == "__main__":
    raise SystemExit(main())
