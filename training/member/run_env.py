"""`make_run_env(run=RUN_DIR)`: the env a finished run's models were trained on, for a notebook.

It lives in training/, not beside `core.envs.make.make_env`, because what makes it exact is the
run folder (config.yaml with config_inferred.yaml over it, the feature store jobs.json names,
the folds and risk profiles of its jobs), and that layout is training.run's: core never imports
training. It builds the env the way the member trainer does (`member_configs`, `env_settings`),
through core's `make_env`, so its observations are the ones the run's checkpoints read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from core.envs.make import make_env as make_core_env
from core.envs.trading_env import TradingEnv
from core.errors import UserError
from core.features.resolved import with_inferred
from training.member.models import member_configs
from training.run.folder import job_store, load_run, run_config, run_store

Part = Literal["train", "validation", "test"]
PARTS = ("train", "validation", "test")


def make_run_env(
    run: str | Path,
    fold: int | None = None,
    part: Part = "test",
    member: int = 0,
    seed: int | None = 0,
    **overrides: Any,
) -> TradingEnv:
    """A TradingEnv over the run's feature store with the run's resolved env and reward
    settings. `fold`: None = every bar of the store (with regime columns: the last fold's); a
    fold index = that fold's `part` bars, with the settings of `member` (its risk profile, if
    the run has them). Env and reward keys may still be overridden by plain name, as with
    core's make_env."""
    run_dir = Path(run).expanduser()
    if fold is None:
        # With regime columns (features.regime=hmm) every bar is read as the last fold's HMM
        # reads them, as --predict does; else the run's store.
        jobs = load_run(run_dir)
        store = job_store(max(jobs, key=lambda j: j.fold.index)) if jobs else run_store(run_dir)
        config = with_inferred(run_config(run_dir), store.meta)
        return make_core_env(config, store, None, seed, **overrides)
    if part not in PARTS:
        raise UserError(f"part={part!r} is not a fold part\n  fix: pass one of {', '.join(PARTS)}")
    jobs = load_run(run_dir)
    chosen = [job for job in jobs if job.fold.index == fold and job.member == member]
    if not chosen:
        folds = sorted({job.fold.index for job in jobs})
        members = sorted({job.member for job in jobs})
        raise UserError(
            f"run {run_dir} has no fold {fold} member {member}\n"
            f"  fix: pass a fold of {folds} and a member of {members}"
        )
    job = chosen[0]
    store = job_store(job)
    config, _ = member_configs(job, store)
    return make_core_env(config, store, getattr(job.fold, part), seed, **overrides)
