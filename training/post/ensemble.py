"""The ensemble as one strategy: on each test bar, the mean, median or vote of its members'
deterministic actions, traded through the one market model like any member or baseline.

Runs in the main process after the jobs, on the members that finished (a failed member is left
out, never waited for). Each fold's tracks go to folds/fold_XX/ensemble_tracks.npz with the
members they used; a fold whose members did not change is not walked again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import read_json, replacing, write_json
from core.envs.settings import env_settings
from core.evaluation.judge import evaluate_window
from core.evaluation.rollout import Policy
from training.member.checkpoints import load_tested
from training.member.models import agent_policy, stackable
from training.run.files import RunFiles
from training.run.folder import job_store, load_run, run_config
from training.run.job import jobs_by_fold
from training.run.tracks import save_tracks


def aggregate_run(run_dir: Path, say: Callable[[str], None] | None = None) -> dict[int, list[int]]:
    """Write every fold's ensemble tracks; return {fold: members used}. `say` hears a line per
    fold walked (a long test window takes a while)."""
    files = RunFiles(run_dir)
    config = run_config(run_dir)
    by_fold = jobs_by_fold([job for job in load_run(run_dir) if job.files.result.exists()])
    used = {}
    for index, members in sorted(by_fold.items()):
        names = [job.member for job in members]
        used[index] = names
        wanted = {"members": names, "aggregate": config.ensemble.aggregate}
        record = files.ensemble_members(index)
        if files.ensemble_tracks(index).exists() and read_json(record) == wanted:
            continue
        if len(members) == 1:  # the ensemble of one member is that member: reuse its walk
            with replacing(files.ensemble_tracks(index)) as handle:
                handle.write(members[0].files.tracks.read_bytes())
        else:
            if say:
                say(
                    f"  fold {index}: the {config.ensemble.aggregate} of {len(members)} members "
                    f"walks {len(members[0].fold.test):,} test bars"
                )
            policy = ensemble_policy(
                [load_tested(job, config.training.select) for job in members],
                config.ensemble.aggregate,
            )
            first = members[0]
            tracks = evaluate_window(
                job_store(first),
                env_settings(config),
                first.fold.test_walk,
                policy,
                config,
                first.seed,
            )
            save_tracks(files.ensemble_tracks(index), tracks)
        write_json(record, wanted)
    return used


def vote(actions: np.ndarray, axis: int = 0) -> np.ndarray:
    """Per asset, the members' majority direction at their mean size: members who disagree do
    not cancel each other into the no-trade band as a mean does (a tie is flat)."""
    direction = np.sign(np.sign(actions).sum(axis=axis))
    return direction * np.abs(actions).mean(axis=axis)


AGGREGATES: dict[str, Callable[..., np.ndarray]] = {
    "mean": np.mean,
    "median": np.median,
    "vote": vote,
}


# Up to this many feed-forward members an ensemble walk runs member by member: 0.25-0.35 ms a
# member a bar against about 1.2 ms a bar for one vmapped forward (2-CPU machine, flat policy).
MEMBER_BY_MEMBER = 4


def ensemble_policy(models: list[Any], aggregate: str) -> Policy:
    """Each member's deterministic action, clipped to the action space as `predict` gives it,
    combined per asset. The members see the same observation: it is converted once and all the
    networks run on it in one vmapped forward (beyond MEMBER_BY_MEMBER members)."""
    import torch

    combine = AGGREGATES[aggregate]
    if len(models) <= MEMBER_BY_MEMBER or not all(stackable(model) for model in models):
        # A recurrent member carries its own LSTM state; SAC / TQC actors are not the
        # actor-critic the vmapped forward stacks; a few members run faster one by one
        # (core.policies.deterministic) than through vmap's per-call set-up: member by member.
        members = [agent_policy(model) for model in models]

        def decide_each(obs: dict[str, np.ndarray], weights: np.ndarray, t: int) -> np.ndarray:
            each = np.stack([member(obs, weights, t) for member in members])
            return np.clip(combine(each, axis=0), -1.0, 1.0)

        return decide_each
    from core.policies.stacked import StackedPolicies

    first = models[0].policy
    low, high = first.action_space.low, first.action_space.high
    stacked = StackedPolicies([model.policy for model in models])
    count = len(models)

    def decide(obs: dict[str, np.ndarray], weights: np.ndarray, t: int) -> np.ndarray:
        # Every member on the same observation: one batched forward (core.policies.stacked).
        with torch.no_grad():
            tensor, _ = first.obs_to_tensor(obs)
            rows = {
                key: value.unsqueeze(0).expand(count, *value.shape) for key, value in tensor.items()
            }
            actions = stacked.mean_actions(rows)
        each = np.clip(actions.cpu().numpy(), low, high)
        return np.clip(combine(each, axis=0), -1.0, 1.0)

    return decide
