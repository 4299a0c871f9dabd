"""Small walk-forward runs through the library (features, folds, jobs, report) for e2e tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.bench_training import TARGET_SETTINGS
from core.config import Config, load_config
from core.features.build import open_store
from core.features.store import FeatureStore
from core.folds import split
from core.hardware.machine import detect
from core.hardware.planner import plan
from tests.helpers.datasets import write_csv
from tests.helpers.stores import restamp
from training.member.sequential import run_jobs
from training.post.ensemble import aggregate_run
from training.post.report import build_report
from training.run.folder import create_run

# One return feature per asset and a two-bar window (the training benchmark's time-to-target
# set-up): a policy that reads it learns in seconds.
LEARNABLE = [
    *TARGET_SETTINGS,
    "walk_forward.train_years=0.25",
    "walk_forward.validation_months=1",
    "walk_forward.test_months=1",
    "walk_forward.step_months=1",
    "walk_forward.embargo_bars=4",
    "walk_forward.max_folds=3",
    "ppo.n_epochs=4",
    "hardware.n_envs=32",
    "hardware.target_rollout_steps=2048",
    "training.eval_every_steps=4096",
    "training.patience=null",
    # Two numbers per asset need no encoder; the launcher and resume tests' timings (steps seen
    # before a signal, a kill, a frozen heartbeat) were set with this network.
    "policy.extractor=flat",
]


def learnable_config(*overrides: str) -> Config:
    return load_config(overrides=[*LEARNABLE, *overrides])


def ar1_frames(n_bars: int, n_assets: int, rho: float, seed: int, permute: bool = False) -> dict:
    """Hourly bars whose close-to-close log returns follow an AR(1) with coefficient `rho`;
    `permute` shuffles those returns in time, keeping their distribution but not their order."""
    rng = np.random.default_rng(seed)
    frames = {}
    start = pd.Timestamp("2020-01-01", tz="UTC")
    for a in range(n_assets):
        shocks = rng.normal(0.0, 0.01, n_bars)
        returns = np.empty(n_bars)
        returns[0] = shocks[0]
        for t in range(1, n_bars):
            returns[t] = rho * returns[t - 1] + shocks[t]
        if permute:
            returns = rng.permutation(returns)
        close = 100.0 * np.exp(np.cumsum(returns))
        open_ = np.concatenate([[100.0], close[:-1]])
        wick = np.abs(rng.normal(0.0, 0.002, n_bars))
        frames[f"A{a}"] = pd.DataFrame(
            {
                "timestamp": (start + pd.to_timedelta(np.arange(n_bars), unit="h")).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
                "open": open_,
                "high": np.maximum(open_, close) * (1 + wick),
                "low": np.minimum(open_, close) * (1 - wick),
                "close": close,
                "volume": rng.uniform(100, 200, n_bars),
            }
        )
    return frames


def store_of(folder: Path, frames: dict, config: Config) -> FeatureStore:
    dataset = write_csv(folder / "dataset", frames)
    return open_store(config, dataset, folder / "cache")[0]


def walk_forward(folder: Path, store: FeatureStore, config: Config) -> dict[str, Any]:
    """Split, train every job in this process, build the report; return its summary."""
    folds = split(np.asarray(store.timestamps), store.bar_ns, config)
    resources = plan(
        detect(), config, n_assets=len(store.assets), feature_names=store.feature_names
    )
    run_dir, jobs = create_run(
        folder / "runs", "test", config, resources, {}, store, folds, ["test"]
    )
    run_jobs(jobs, show_progress=False)
    aggregate_run(run_dir)
    return build_report(run_dir) | {"run_dir": run_dir}


def bars_needed(config: Config) -> int:
    walk = config.walk_forward
    months = walk.validation_months + walk.test_months * (walk.max_folds or 1)
    hours = walk.train_years * 365.25 * 24 + months * 365.25 * 24 / 12
    return int(hours) + 200  # feature warm-up and window


def oracle_store(store: FeatureStore, folder: Path) -> FeatureStore:
    """A copy of `store` whose only feature at bar t is the return of bar t+1 (z-scored, clipped):
    information no real agent has, so a working training loop must exploit it."""
    import shutil

    shutil.copytree(store.path, folder)
    close = np.load(folder / "prices.npy")[:, :, 3]
    nxt = np.zeros_like(close)
    nxt[:, :-1] = np.log(close[:, 1:] / close[:, :-1])
    z = np.clip(nxt / nxt[:, :-1].std(axis=1, keepdims=True), -5, 5)
    np.save(folder / "features.npy", z[:, :, None].astype(np.float32))
    return restamp(folder)
