"""Sweeps on this machine: trials per hour with 1 and 2 workers, with the population learner
against one SB3 learner per member, and the compute pruning saves at an equal trial budget, with
the best validation value each arm found.

Every arm is the command a user types (`train_walk_forward.py --tune`) on the planted-signal
sample, with the same space, seeds, folds and trial budget; the baseline of the worker ratio is
the 1-worker population arm, the baseline of the learner ratio is the separate learner's arm
(same sampler seed, so both ask the same trials), the baseline of the pruning saving is the
2-worker arm without pruning. Every arm but the separate one trains its trials as population
groups (tuning.trials_per_group auto).
Compute = PPO steps trained: each trial's reported validation steps x the evaluation interval
(every member validates every --eval-every steps; a pruned trial stops at its last report).
Usage: python bench/bench_tuning.py [--n-trials 8] [--timesteps 16384] [--folds 2] [--json out.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import csv
import json
import subprocess
import tempfile
import time
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "training" / "train_walk_forward.py"
ARMS = {  # name: (workers, pruner, ensemble.learner)
    "1 worker, separate learner": (1, "none", "separate"),
    "1 worker, population learner": (1, "none", "population"),
    "2 workers, no pruning": (2, "none", "population"),
    "2 workers, wilcoxon": (2, "wilcoxon", "population"),
    "2 workers, median": (2, "median", "population"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n-trials", type=int, default=8)
    parser.add_argument("--timesteps", type=int, default=16_384, help="PPO steps per member")
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=8192, help="a pruning step each")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    print(
        f"{args.n_trials} trials of {args.folds} fold(s) x 2 seeds x {args.timesteps:,} steps, "
        f"preset {args.preset}, validation every {args.eval_every:,} steps",
        flush=True,
    )
    results: dict[str, Any] = {"settings": vars(args), "arms": {}}
    with tempfile.TemporaryDirectory(dir=REPO) as scratch:
        for arm in args.arms:
            workers, pruner, learner = ARMS[arm]
            output = Path(scratch) / arm.replace(" ", "_").replace(",", "")
            command = [
                sys.executable, str(CLI), "--preset", args.preset, "--tune", "--no-progress",
                "--n-trials", str(args.n_trials), "--workers", str(workers),
                "--timesteps", str(args.timesteps), "--folds", str(args.folds),
                "--output", str(output), "--set", f"tuning.pruner={pruner}",
                "--set", f"training.eval_every_steps={args.eval_every}",
                "--set", "training.tensorboard=false", "--set", f"ensemble.learner={learner}",
                *(item for pair in args.set for item in ("--set", pair)),
            ]  # fmt: skip
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
            wall = time.perf_counter() - started
            # A sweep whose every trial collapsed exits 1 (no winner) yet ran its trials: the
            # throughput it measures is there; any other failure stops the benchmark.
            if done.returncode != 0 and "no winner: all" not in done.stderr:
                print(done.stdout[-4000:] + done.stderr[-4000:], file=sys.stderr)
                return 1
            results["arms"][arm] = _measure(next(output.iterdir()), wall, args.eval_every)
            results["arms"][arm]["worker_retries"] = done.stderr.count("retry tuning worker")
            values = results["arms"][arm]
            print(
                f"  {arm:<24} {wall:7.1f} s  {values['trials_per_hour']:6.1f} trials/h  "
                f"{values['ppo_steps']:>10,} PPO steps  pruned {values['pruned']}  "
                f"best {values['best_value']:.2f}  failed {values['failed_trials']}  "
                f"worker retries {values['worker_retries']}",
                flush=True,
            )
    _ratios(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _measure(run_dir: Path, wall: float, eval_every: int) -> dict[str, Any]:
    summary = json.loads((run_dir / "tuning" / "tuning.json").read_text())
    with open(run_dir / "tuning" / "trials.csv") as handle:
        trials = list(csv.DictReader(handle))
    steps = sum(int(t["steps reported"]) * eval_every for t in trials)
    return {
        "wall_s": wall,
        "trials": summary["trials"],
        "pruned": summary["pruned"],
        "trials_per_hour": summary["trials"] / wall * 3600,
        "ppo_steps": steps,
        "best_value": summary["best"]["value"] if summary["best"] else float("nan"),
        "best_dsr": summary["best"]["dsr"] if summary["best"] else float("nan"),
        "failed_trials": len(summary["failed"]),
    }


def _ratios(results: dict[str, Any]) -> None:
    arms = results["arms"]
    one, two = arms.get("1 worker, population learner"), arms.get("2 workers, no pruning")
    if one and two:
        ratio = two["trials_per_hour"] / one["trials_per_hour"]
        results["two_workers_vs_one"] = ratio
        print(f"\n2 workers / 1 worker, trials per hour: {ratio:.2f}x")
    separate, population = (
        arms.get("1 worker, separate learner"),
        arms.get("1 worker, population learner"),
    )
    if separate and population:
        ratio = population["trials_per_hour"] / separate["trials_per_hour"]
        results["population_vs_separate"] = ratio
        print(
            f"population / separate learner, trials per hour: {ratio:.2f}x; best validation "
            f"Sharpe {population['best_value']:.2f} vs {separate['best_value']:.2f}"
        )
    for pruner in ("wilcoxon", "median"):
        pruned = arms.get(f"2 workers, {pruner}")
        if pruned and two:
            saved = 1 - pruned["ppo_steps"] / two["ppo_steps"]
            results[f"{pruner}_compute_saved"] = saved
            print(
                f"{pruner}: {100 * saved:.0f} % of the PPO steps saved at {pruned['trials']} trials "
                f"({pruned['pruned']} pruned); best validation Sharpe {pruned['best_value']:.2f} "
                f"vs {two['best_value']:.2f} without pruning"
            )


if __name__ == "__main__":
    sys.exit(main())
