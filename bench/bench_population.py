"""Members per hour of the population learner against separate members, with learning parity.

Both arms are the command a user types (`train_walk_forward.py`, local launcher, the plan's
concurrency) on the same data, folds, seeds, members and steps; `separate` (one SB3 process per
member, today's path) is the baseline. Cases: flat and shared_asset at the quick preset's one-row
observation and at the default window. Per arm: wall time, members (x folds) per hour, each
member's best validation Sharpe and test Sharpe (mean and median), the ensemble's test Sharpe,
its Deflated Sharpe Ratio and the folds on which it beats buy-and-hold. The feature store is
built once before any arm is timed (a `--dry-run` of the case), and the arms run --repeats
times in alternating order (separate first, then population first, ...): the wall time is the
median of the repeats, each repeat's is kept.
Usage: python bench/bench_population.py [--members 8] [--timesteps 60000] [--folds 3] [--repeats 2]
       [--cases flat-quick shared_asset-quick flat-default shared_asset-default] [--json out.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "training" / "train_walk_forward.py"
ARMS = ("separate", "population")  # the first is the baseline


def default_window() -> int:
    from core.config import load_config

    return int(load_config().env.window)


def case_settings(case: str) -> list[str]:
    """`<extractor>-<observation>`: quick is the preset's one-row window, default the default's."""
    extractor, _, observation = case.partition("-")
    settings = [f"policy.extractor={extractor}"]
    if observation == "default":
        settings.append(f"env.window={default_window()}")
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--timesteps", type=int, default=60_000, help="PPO steps per member")
    parser.add_argument("--default-timesteps", type=int, default=16_384,
                        help="PPO steps per member in the default-observation cases")  # fmt: skip
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument(
        "--repeats", type=int, default=2, help="runs of each arm, order alternating"
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["flat-quick", "shared_asset-quick", "flat-default", "shared_asset-default"],
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    results: dict[str, Any] = vars(args) | {"cases": {}}
    with tempfile.TemporaryDirectory(dir=REPO) as scratch:
        for case in args.cases:
            steps = args.default_timesteps if case.endswith("-default") else args.timesteps
            print(f"{case}: {args.members} members x {steps:,} steps x {args.folds} fold(s)")
            if not _warm(args, case, steps, Path(scratch) / case / "warm"):
                return 1
            arms: dict[str, Any] = {}
            walls: dict[str, list[float]] = {arm: [] for arm in ARMS}
            orders = []
            for repeat, order in enumerate(arm_orders(args.repeats)):
                orders.append(list(order))
                for arm in order:
                    output = Path(scratch) / case / arm / f"repeat_{repeat}"
                    measured = _run_arm(args, case, arm, steps, output)
                    if measured is None:
                        return 1
                    walls[arm].append(measured["wall_s"])
                    arms[arm] = measured
                    print(
                        f"  {arm:<10} {measured['wall_s']:7.1f} s (repeat {repeat + 1})", flush=True
                    )
            for arm in ARMS:
                median = statistics.median(walls[arm])
                jobs = args.members * args.folds
                arms[arm] |= {
                    "wall_s": median,
                    "walls_s": walls[arm],
                    "members_per_hour": jobs / median * 3600,
                }
            arms["orders"] = orders
            baseline = arms[ARMS[0]]
            arms["speedup"] = baseline["wall_s"] / arms["population"]["wall_s"]
            results["cases"][case] = arms
    _print(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float) + "\n")
    return 0


def arm_orders(repeats: int) -> list[tuple[str, ...]]:
    """The arms' order in each repeat: alternating, so neither always runs first (a cold page
    cache, a machine still busy with the arm before)."""
    return [ARMS if repeat % 2 == 0 else ARMS[::-1] for repeat in range(repeats)]


def _command(args: argparse.Namespace, case: str, arm: str, steps: int, output: Path) -> list[str]:
    settings = [*case_settings(case), f"ensemble.learner={arm}", "training.tensorboard=false"]
    return [
        sys.executable,
        str(CLI),
        *("--preset", "quick", "--ensemble", str(args.members), "--timesteps", str(steps)),
        *("--folds", str(args.folds), "--no-progress", "--output", str(output), "--name", arm),
        *[item for pair in [*settings, *args.set] for item in ("--set", pair)],
    ]


def _warm(args: argparse.Namespace, case: str, steps: int, output: Path) -> bool:
    """Build the case's feature store into the cache both arms read, before any is timed."""
    command = [*_command(args, case, ARMS[0], steps, output), "--dry-run"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        print(done.stdout[-4000:] + done.stderr[-4000:], file=sys.stderr)
    return done.returncode == 0


def _run_arm(
    args: argparse.Namespace, case: str, arm: str, steps: int, output: Path
) -> dict[str, Any] | None:
    command = _command(args, case, arm, steps, output)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stdout[-4000:] + done.stderr[-4000:], file=sys.stderr)
        return None
    return _measure(next(output.iterdir()), wall, args.members * args.folds)


def _measure(run_dir: Path, wall: float, jobs: int) -> dict[str, Any]:
    summary = json.loads((run_dir / "metrics.json").read_text())
    results = [
        json.loads(p.read_text()) for p in sorted(run_dir.glob("folds/*/member_*/result.json"))
    ]
    validation = [max(e["sharpe"] for e in r["evaluations"]) for r in results]
    test = [r["test"]["agent"]["sharpe"] for r in results]
    agent = summary["strategies"]["agent"]
    return {
        "wall_s": wall,
        "members_per_hour": jobs / wall * 3600,
        "jobs": len(results),
        "timesteps": [r["timesteps"] for r in results],
        "member_validation_sharpe": _centre(validation),
        "member_test_sharpe": _centre(test),
        "ensemble_test_sharpe": agent["sharpe"],
        "dsr": agent["dsr"],
        "folds_beating_buy_and_hold": summary["folds_beating_buy_and_hold"],
        "folds": summary["folds"],
    }


def _centre(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "median": statistics.median(values)}


def _print(results: dict[str, Any]) -> None:
    print(
        "\ncase                  arm         wall s  members/h  member val/test Sharpe (mean)  "
        "ensemble Sharpe  DSR    beats B&H"
    )
    for case, arms in results["cases"].items():
        for arm in ARMS:
            m = arms[arm]
            print(
                f"{case:<21} {arm:<10} {m['wall_s']:7.1f} {m['members_per_hour']:10.0f}  "
                f"{m['member_validation_sharpe']['mean']:6.2f} / {m['member_test_sharpe']['mean']:6.2f}"
                f"{'':<17} {m['ensemble_test_sharpe']:7.2f}  {m['dsr']:.3f}  "
                f"{m['folds_beating_buy_and_hold']}/{m['folds']}"
            )
        print(f"{'':<21} population / separate: {arms['speedup']:.2f}x members per hour")


if __name__ == "__main__":
    raise SystemExit(main())
