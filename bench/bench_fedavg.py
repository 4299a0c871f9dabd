"""Federated averaging against independent members on the planted-signal sample, at the same total
PPO steps: the fused model vs the independent ensemble (mean action) vs the best single member
(chosen on validation), out of sample; steps and wall time to a validation target; and the share
of the fedavg members' wall time spent waiting at barriers.

Both arms are the command a user types (`train_walk_forward.py`, local launcher), on the same data,
folds, seeds and members x steps; the independent arm is the baseline. Both validate every
ensemble.sync_steps, so "steps to the target" is measured on the same grid: for fedavg the first
round whose average reaches the target on validation, for the independent arm the first
evaluation at which any member reaches it (the most generous reading for independent training).
Usage: python bench/bench_fedavg.py [--members 4] [--timesteps 60000] [--folds 3] [--json out.json]
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
ARMS = {
    "independent": ["ensemble.mode=independent"],
    "fedavg": ["ensemble.mode=fedavg"],
    "fedavg_reset": ["ensemble.mode=fedavg", "ensemble.sync_optimizer=reset"],
    "fedavg_validation": ["ensemble.mode=fedavg", "ensemble.sync_weighting=validation"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--timesteps", type=int, default=60_000, help="PPO steps per member")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--sync-steps", type=int, default=8192, help="and the validation grid")
    parser.add_argument("--target", type=float, default=2.0, help="validation Sharpe to reach")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--arms",
        nargs="+",
        default=["independent", "fedavg"],
        choices=sorted(ARMS),
        help="independent is the baseline; fedavg_reset resets Adam after every averaging, "
        "fedavg_validation weights members by their validation score",
    )
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    common = [
        "--preset",
        args.preset,
        "--ensemble",
        str(args.members),
        "--timesteps",
        str(args.timesteps),
        "--folds",
        str(args.folds),
        "--no-progress",
        "--set",
        f"training.eval_every_steps={args.sync_steps}",
        "--set",
        f"ensemble.sync_steps={args.sync_steps}",
        "--set",
        "training.tensorboard=false",
        *[item for pair in args.set for item in ("--set", pair)],
    ]
    print(
        f"{args.members} members x {args.timesteps:,} steps x {args.folds} fold(s), preset "
        f"{args.preset}; validation and averaging every {args.sync_steps:,} steps",
        flush=True,
    )
    results: dict[str, Any] = vars(args) | {"arms": {}}
    with tempfile.TemporaryDirectory(dir=REPO) as scratch:
        for arm in args.arms:
            output = Path(scratch) / arm
            started = time.perf_counter()
            mode = [item for pair in ARMS[arm] for item in ("--set", pair)]
            mode += ["--output", str(output), "--name", arm]
            done = subprocess.run(
                [sys.executable, str(CLI), *common, *mode],
                capture_output=True,
                text=True,
                cwd=REPO,
            )
            wall = time.perf_counter() - started
            if done.returncode != 0:
                print(done.stdout[-4000:] + done.stderr[-4000:], file=sys.stderr)
                return 1
            run_dir = next(output.iterdir())
            results["arms"][arm] = _measure(run_dir, arm, wall, args.target)
            print(f"  {arm}: {wall:.1f} s", flush=True)
    _print(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float) + "\n")
    return 0


def _measure(run_dir: Path, arm: str, wall: float, target: float) -> dict[str, Any]:
    import numpy as np

    from core.evaluation import metrics
    from training.run.folder import load_run
    from training.run.tracks import load_tracks

    summary = json.loads((run_dir / "metrics.json").read_text())
    jobs = load_run(run_dir)
    folds = sorted({job.fold.index for job in jobs})
    results = {
        job: json.loads(job.files.result.read_text()) for job in jobs if job.files.result.exists()
    }
    steps_to_target = []
    best_returns = []
    for fold in folds:
        members = [(job, result) for job, result in results.items() if job.fold.index == fold]
        best_job, _ = max(members, key=lambda item: max(e["score"] for e in item[1]["evaluations"]))
        best_returns.append(load_tracks(best_job.files.tracks)["agent.returns"])
        if arm.startswith("fedavg"):
            record = json.loads((run_dir / "folds" / f"fold_{fold:02d}" / "fused.json").read_text())
            reached = [
                r["timesteps"] for r in record["rounds"] if r["validation"]["sharpe"] >= target
            ]
        else:
            reached = [
                e["timesteps"]
                for _, result in members
                for e in result["evaluations"]
                if e["sharpe"] >= target
            ]
        steps_to_target.append(min(reached) if reached else None)
    periods = summary["annualisation"]["periods_per_year"]
    best = metrics.summarise(np.concatenate(best_returns), periods)
    measured = {
        "wall_s": wall,
        "agent_sharpe": summary["strategies"]["agent"]["sharpe"],
        "buy_and_hold_sharpe": summary["strategies"]["buy_and_hold"]["sharpe"],
        "best_member_sharpe": best["sharpe"],
        "folds_beating_buy_and_hold": summary["folds_beating_buy_and_hold"],
        "folds": summary["folds"],
        "steps_to_target": steps_to_target,
        "n_trials": summary["n_trials"],
        "dsr": summary["strategies"]["agent"]["dsr"],
    }
    if arm.startswith("fedavg"):
        fedavg = summary["fedavg"]
        measured["members_ensemble_sharpe"] = fedavg["compared"]["members' ensemble"]["sharpe"]
        waits = [fold["barrier_wait_fraction"] for fold in fedavg["folds"]]
        measured["barrier_wait_fraction"] = sum(waits) / len(waits)
        measured["best_rounds"] = [fold["best_round"] for fold in fedavg["folds"]]
    return measured


def _print(results: dict[str, Any]) -> None:
    arms = results["arms"]
    some = next(iter(arms.values()))
    print(
        f"\nOut of sample (Sharpe, stitched folds; buy & hold {some['buy_and_hold_sharpe']:.2f}; "
        "folds beating it):"
    )
    for arm, values in arms.items():
        agent = "independent ensemble (mean action)" if arm == "independent" else "fused model"
        print(
            f"  {arm:<18} {agent:<36} {values['agent_sharpe']:7.2f}   "
            f"{values['folds_beating_buy_and_hold']}/{values['folds']}"
        )
        if arm != "independent":
            print(f"  {'':<18} {'members' + chr(39) + ' own ensemble':<36} "
                  f"{values['members_ensemble_sharpe']:7.2f}")  # fmt: skip
        print(f"  {'':<18} {'best single member (by validation)':<36} "
              f"{values['best_member_sharpe']:7.2f}")  # fmt: skip
    baseline = arms.get("independent")
    print(f"\nSteps per member to a validation Sharpe >= {results['target']:g}, per fold:")
    for arm, values in arms.items():
        print(f"  {arm:<18} {values['steps_to_target']}")
    print("\nWall time (and the share of it fedavg members spent waiting at barriers):")
    for arm, values in arms.items():
        line = f"  {arm:<18} {values['wall_s']:7.1f} s"
        if baseline and arm != "independent":
            ratio = values["wall_s"] / baseline["wall_s"]
            sharpe = (
                values["agent_sharpe"] / baseline["agent_sharpe"]
                if baseline["agent_sharpe"]
                else float("nan")
            )
            results[f"{arm}_vs_independent_wall"] = ratio
            results[f"{arm}_vs_independent_sharpe"] = sharpe
            line += f"  ({ratio:.2f}x independent; Sharpe {sharpe:.2f}x)"
        if "barrier_wait_fraction" in values:
            line += f"  waited at barriers {100 * values['barrier_wait_fraction']:.1f} %"
        print(line)


if __name__ == "__main__":
    sys.exit(main())
