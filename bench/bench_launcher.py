"""Members per hour of an ensemble: the launcher at the planned concurrency against the same
members one after another in one process (the path before the launcher) and against every
member started at once (submitit LocalExecutor's own behaviour, no gate).

All three arms train the same jobs (same config, store, fold, seeds) in their own run folders.
CPU utilisation = busy CPU-seconds of the arm's processes / wall seconds / usable CPUs.
The projection for a bigger machine takes the measured per-job wall time of the planned arm
and that machine's plan (members at once, from --project-hardware).
Usage: python bench/bench_launcher.py [--members 8] [--timesteps 20000] [--json out.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import os
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from core.hardware import threads

threads.export_thread_limits(1)  # before numpy: the plan's one BLAS thread per process

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / "config" / "hardware" / "server-256core-rtx3090.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--timesteps", type=int, default=20_000, help="PPO steps per member")
    parser.add_argument("--preset", default="quick", help="config/presets/NAME.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--arms", nargs="+", default=["sequential", "planned", "all_at_once"])
    parser.add_argument("--project-hardware", default=str(SERVER), metavar="PROFILE.yaml")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)

    from core.config import load_config
    from core.features.build import feature_store
    from core.features.resolved import with_inferred
    from core.folds import split
    from core.hardware.machine import detect, load_machine_file
    from core.hardware.planner import plan

    overrides = [
        f"ensemble.size={args.members}",
        f"ppo.total_timesteps={args.timesteps}",
        "walk_forward.max_folds=1",
        "training.tensorboard=false",
        *args.set,
    ]
    config = load_config([REPO / "config" / "presets" / f"{args.preset}.yaml"], overrides)
    machine = detect()
    store, _ = feature_store(config, workers=machine.usable_cpus)
    folds = split(store.timestamps, store.bar_ns, with_inferred(config, store.meta))[:1]
    shape = {"n_assets": len(store.assets), "feature_names": store.feature_names}
    resources = plan(machine, config, **shape)
    usable = machine.usable_cpus
    print(
        f"{args.members} members x {args.timesteps:,} steps on {usable} usable CPU(s); plan: "
        f"{resources.members_concurrent} at once, {resources.threads_per_member} CPU(s) and "
        f"{resources.torch_threads} torch thread(s) each",
        flush=True,
    )
    # One after another, each member gets the whole machine: a plan for one member at once.
    alone = plan(machine, config.model_copy(update={"hardware": config.hardware.model_copy(
        update={"members_concurrent": 1})}), **shape)  # fmt: skip
    results: dict[str, Any] = {"members": args.members, "timesteps": args.timesteps}
    with tempfile.TemporaryDirectory(dir=REPO) as scratch:
        for arm in args.arms:
            arm_plan = alone if arm == "sequential" else resources
            run = _arm(arm, Path(scratch) / arm, config, arm_plan, store, folds)
            wall, cpu = _measure(run)
            results[arm] = {
                "wall_s": wall,
                "members_per_hour": args.members / wall * 3600,
                "cpu_utilisation": cpu / wall / usable,
                "at_once": _at_once(arm, resources, args.members),
            }
            print(
                f"{arm:>12}: {wall:7.1f} s wall, {results[arm]['members_per_hour']:7.1f} "
                f"members/h, CPU utilisation {100 * results[arm]['cpu_utilisation']:5.1f} % "
                f"({results[arm]['at_once']} at once)",
                flush=True,
            )
    if "sequential" in results:
        base = results["sequential"]["members_per_hour"]
        for arm in args.arms:
            results[arm]["vs_sequential"] = results[arm]["members_per_hour"] / base
        if "planned" in results and "all_at_once" in results:
            results["planned_vs_all_at_once"] = (
                results["planned"]["members_per_hour"] / results["all_at_once"]["members_per_hour"]
            )
        print(
            "ratios vs sequential: "
            + ", ".join(f"{arm} {results[arm]['vs_sequential']:.2f}x" for arm in args.arms)
            + (
                f"; planned vs all at once {results['planned_vs_all_at_once']:.2f}x"
                if "planned_vs_all_at_once" in results
                else ""
            )
        )
    if "planned" in results:
        big = load_machine_file(args.project_hardware)
        big_plan = plan(big, config, 20, **shape)
        job_wall = results["planned"]["wall_s"] / (args.members / resources.members_concurrent)
        projected = big_plan.members_concurrent / job_wall * 3600
        results["projection"] = {
            "machine": big.name,
            "members_concurrent": big_plan.members_concurrent,
            "members_per_hour": projected,
            "assumes": "the planned arm's per-job wall time here, at that plan's concurrency",
        }
        print(
            f"projection for {big.name} (20 members): {big_plan.members_concurrent} at once -> "
            f"~{projected:,.0f} members/h at this machine's per-job time "
            f"({job_wall:.1f} s), vs {3600 / job_wall:,.0f} one after another"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def _arm(
    arm: str, folder: Path, config: Any, resources: Any, store: Any, folds: list
) -> Callable[[], None]:
    from training.launcher.settings import launch_settings
    from training.launcher.task import Placement
    from training.member.member_run import launch_members
    from training.member.sequential import run_jobs
    from training.run.folder import create_run

    run_dir, jobs = create_run(folder, arm, config, resources, {}, store, folds, ["bench"])
    if arm == "sequential":
        return lambda: run_jobs(jobs, show_progress=False)
    settings = launch_settings(config, resources, run_dir, None)
    if arm == "all_at_once":  # LocalExecutor's own behaviour: every job starts now, unpinned
        settings = replace(settings, slots=(Placement(heartbeat_s=10.0),) * len(jobs))
    elif arm != "planned":
        raise SystemExit(f"unknown arm {arm!r}: sequential, planned or all_at_once")

    def run() -> None:
        outcome = launch_members(jobs, settings, lambda statuses, event: None)
        if outcome.failures:
            raise SystemExit(f"{arm}: jobs failed: {outcome.failures}")

    return run


def _measure(run: Callable[[], None]) -> tuple[float, float]:
    """Wall seconds and CPU seconds of this process and every child it waited for."""
    before = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    start = time.perf_counter()
    run()
    _reap_children()  # a child's CPU time is counted once it is waited for
    wall = time.perf_counter() - start
    after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(
        (a.ru_utime + a.ru_stime) - (b.ru_utime + b.ru_stime)
        for a, b in zip(after, before, strict=True)
    )
    return wall, cpu


def _reap_children() -> None:
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _at_once(arm: str, resources: Any, members: int) -> int:
    return {"sequential": 1, "planned": resources.members_concurrent}.get(arm, members)


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
