"""Autotune: does the planner's choice reach the best measured training speed on this machine?

Grid-searches the space `--autotune` probes (torch threads x (n_envs, n_steps) x batch size, see
training/member/autotune.py) with real PPO training on the batch env over the default observation, then
prints the env-steps/s of three choices, all read from that grid, as a share of the grid's best:
  rules:    the planner without a probe (its baseline);
  autotune: the planner with the probe's cache (the probe is run here first, as --autotune does);
Target: both >= 0.9 of the best. One short measurement per cell is noisy on a small machine, so
the grid's --finalists best cells and both choices are measured again in --final-rounds
interleaved rounds of --final-rollouts timed rollouts; their medians give the shares. One
process, one BLAS thread.

Usage: python bench/bench_autotune.py [--extractor shared_asset] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.hardware.threads import thread_environment

os.environ.update(thread_environment(1))  # before numpy or torch load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--extractor", default=None, help="policy.extractor (default: config's)")
    parser.add_argument("--assets", type=int, default=4)
    parser.add_argument("--years", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=1, help="measurements per grid cell")
    parser.add_argument("--finalists", type=int, default=3, help="grid cells measured again")
    parser.add_argument("--final-rounds", type=int, default=3)
    parser.add_argument("--final-rollouts", type=int, default=4, help="timed rollouts each")
    parser.add_argument(
        "--env-counts", nargs="+", type=int, help="n_envs candidates (default: --autotune's)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    from bench.bench_policies import build_store
    from core.config import load_config
    from core.features.resolved import with_inferred
    from core.features.store import FeatureStore
    from core.hardware.autotune import Candidate
    from core.hardware.machine import detect
    from core.hardware.planner import plan
    from training.member.autotune import ENV_COUNTS, grid, measure, probe

    overrides = [f"policy.extractor={args.extractor}"] if args.extractor else []
    overrides += args.set
    env_counts = tuple(args.env_counts or ENV_COUNTS)
    hardware = detect()
    results: dict[str, Any] = {"cpus": hardware.usable_cpus}
    with tempfile.TemporaryDirectory(prefix="bench-autotune-") as workdir:
        settings = argparse.Namespace(assets=args.assets, years=args.years, signal=0.0)
        store = FeatureStore.attach(build_store(Path(workdir), settings))
        config = with_inferred(load_config(overrides=overrides), store.meta)
        shape = {"n_assets": len(store.assets), "feature_names": store.feature_names}
        rule = plan(hardware, config, **shape)
        cpus = max(1, hardware.usable_cpus // rule.members_concurrent)
        print(
            f"{hardware.usable_cpus} CPU(s), policy.extractor={config.policy.extractor}; "
            f"probing as --autotune does ...",
            flush=True,
        )
        probed = probe(config, store, rule, cpus, "bench", "this machine", env_counts=env_counts)
        tuned = plan(hardware, config, **shape, autotune=probed)
        cells = grid(cpus, config.hardware.target_rollout_steps, env_counts)
        print(f"grid: {len(cells)} candidates", flush=True)
        speed: dict[Candidate, float] = {}
        for cell in cells:
            speed[cell] = max(measure(cell, config, store) for _ in range(args.repeats))
            print(
                f"  {cell.torch_threads} thread(s), n_envs {cell.n_envs:>3} x n_steps "
                f"{cell.n_steps:>3}, batch {cell.batch_size:>5}: {speed[cell]:7,.0f} env-steps/s",
                flush=True,
            )

        def chosen(resources: Any) -> Candidate:
            return Candidate(
                resources.torch_threads, resources.n_envs, resources.n_steps, resources.batch_size
            )

        best = max(speed, key=speed.__getitem__)
        rows = {"rules": chosen(rule), "autotune": chosen(tuned)}
        print(f"best of the grid: {_describe(best)} at {speed[best]:,.0f} env-steps/s")
        # One short measurement per cell is noisy: the grid's top cells and both choices are
        # measured again, longer and interleaved, and their medians decide.
        top = sorted(speed, key=speed.__getitem__, reverse=True)[: args.finalists]
        finalists = list(dict.fromkeys([*top, *rows.values()]))
        rounds: dict[Candidate, list[float]] = {cell: [] for cell in finalists}
        for _ in range(args.final_rounds):
            for cell in finalists:
                rounds[cell].append(measure(cell, config, store, args.final_rollouts))
        median = {cell: statistics.median(values) for cell, values in rounds.items()}
        winner = max(median, key=median.__getitem__)
        print(
            f"final: {len(finalists)} finalists x {args.final_rounds} interleaved rounds of "
            f"{args.final_rollouts} rollouts; best {_describe(winner)} at "
            f"{median[winner]:,.0f} env-steps/s (median)"
        )
        results["best"] = {"candidate": vars(winner), "steps_per_s": median[winner]}
        for name, cell in rows.items():
            share = median[cell] / median[winner]
            results[name] = {
                "candidate": vars(cell),
                "steps_per_s": median[cell],
                "share_of_best": share,
                "grid_share_of_best": speed[cell] / speed[best] if cell in speed else None,
            }
            print(
                f"  {name:>8}: {_describe(cell)}: {median[cell]:,.0f} env-steps/s -> "
                f"{share:.2f} of the best (target >= 0.9)"
            )
        results["grid"] = [vars(c) | {"steps_per_s": s} for c, s in speed.items()]
        results["probe"] = [
            vars(m.candidate) | {"steps_per_s": m.steps_per_s} for m in probed.measurements
        ]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=vars))
    return 0


def _describe(cell: Any) -> str:
    return (
        f"{cell.torch_threads} thread(s), n_envs {cell.n_envs} x n_steps {cell.n_steps}, "
        f"batch {cell.batch_size}"
    )


if __name__ == "__main__":
    sys.exit(main())
