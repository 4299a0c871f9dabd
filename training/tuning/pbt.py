"""Population Based Training as a sweep's schedule (tuning.schedule pbt), inside a population
group: every tuning.pbt.interval_steps the bottom quantile of the group's trials (by their
members' latest validation Sharpe, the score the sweep already uses; never the test window) copy
the weights and Adam state of a top-quantile trial's members in memory, and take its values
perturbed (x0.8 or x1.2, or drawn afresh with probability 0.25: Ray Tune's defaults).

Trials are the unit (a trial's seeds copy the same winner, seed for seed, and share its new
values), so every trial still trains the same seeds. A member whose weights went non-finite is
replaced by a copy of the best trial's member of its seed, never failing the group. Every copy is
a row of the trial's lineage (tuning/pbt_lineage.csv), and each exploit is one more evaluation
that the Deflated Sharpe Ratio counts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from core.config import TuningConfig, TuningParam
from core.errors import UserError
from training.population.member_values import live, set_live_value


def pbt_schedule(tuning: TuningConfig) -> Callable[[Sequence[Any]], PbtGroup]:
    """A factory of one group's schedule (training.tuning.objective calls it per group)."""

    def for_group(runs: Sequence[Any]) -> PbtGroup:
        return PbtGroup(tuning, list(runs))  # a group of one trial (a remainder) never copies

    return for_group


class PbtGroup:
    """One group's exploit/explore at each interval, and its rescue of diverged members."""

    def __init__(self, tuning: TuningConfig, runs: list[Any]) -> None:
        self.tuning, self.pbt, self.runs = tuning, tuning.pbt, runs
        seed = tuning.sampler_seed * 100_003 + min(run.trial.number for run in runs)
        self.rng = np.random.default_rng(seed)
        self.next: dict[int, int] = {}  # fold: the step count of its next exploit
        for run in runs:
            run.values_now = dict(run.values)

    def interval(self, members: Sequence[Any]) -> int:
        setting = self.pbt.interval_steps
        if setting != "auto":
            return int(setting)
        return min(member.callback.eval_every for member in members)

    def _trials(self, members: Sequence[Any]) -> list[tuple[Any, list[int]]]:
        """(trial, its member indices in job order) of this fold's group."""
        by_folder: dict[str, list[int]] = {}
        for index, member in enumerate(members):
            by_folder.setdefault(member.job.run_dir, []).append(index)
        return [
            (run, by_folder[run.jobs[0].run_dir])
            for run in self.runs
            if run.jobs[0].run_dir in by_folder
        ]

    def __call__(self, members: Sequence[Any], stacked: Any, adam: Any) -> None:
        training = [i for i, member in enumerate(members) if member.training]
        if not training:
            return
        fold = members[0].job.fold.index
        every = self.interval(members)
        boundary = self.next.setdefault(fold, every)
        done = min(members[i].model.num_timesteps for i in training)
        if done < boundary:
            return
        while self.next[fold] <= done:
            self.next[fold] += every
        alive = [
            (run, indices)
            for run, indices in self._trials(members)
            if all(members[i].training and members[i].state.evaluations for i in indices)
        ]
        if len(alive) < 2:
            return
        scores = {
            run.trial.number: float(
                np.mean([members[i].state.evaluations[-1]["sharpe"] for i in indices])
            )
            for run, indices in alive
        }
        ranked = sorted(alive, key=lambda pair: scores[pair[0].trial.number])
        count = max(1, math.floor(self.pbt.quantile * len(ranked)))
        top = ranked[-count:]
        for loser, losing in ranked[:count]:
            winner, winning = top[int(self.rng.integers(len(top)))]
            before = dict(loser.values_now)
            after = self._explore(winner.values_now)
            for src, dst in zip(winning, losing, strict=True):
                copy_member(stacked, adam, src, dst)
                for key, value in after.items():
                    if live(key):
                        set_live_value(members[dst].model, key, value)
            loser.values_now = after
            loser.exploits += 1
            loser.lineage.append(_row("exploit", fold, done, loser, winner, before, after, scores))
        stacked.copy_to_members()
        adam.save_to_members()

    def diverged(self, members: Sequence[Any], stacked: Any, adam: Any, index: int) -> bool:
        """Replace the non-finite member `index` by the best finite trial's member of its seed."""
        trials = self._trials(members)
        owner = next((run, ids) for run, ids in trials if index in ids)
        position = owner[1].index(index)
        finite = _finite_members(stacked)
        donors = [
            (run, ids)
            for run, ids in trials
            if run is not owner[0] and finite[ids[position]] and members[ids[position]].training
        ]
        if not donors:
            return False

        def score(pair: tuple[Any, list[int]]) -> float:
            evaluations = members[pair[1][position]].state.evaluations
            return evaluations[-1]["sharpe"] if evaluations else -math.inf

        donor, ids = max(donors, key=score)
        copy_member(stacked, adam, ids[position], index)
        for key, value in donor.values_now.items():
            if live(key):
                set_live_value(members[index].model, key, value)
        stacked.copy_to_members()
        adam.save_to_members()
        step = members[index].model.num_timesteps
        row = _row("diverged", members[index].job.fold.index, step, owner[0], donor,
                   dict(owner[0].values_now), dict(donor.values_now), {})  # fmt: skip
        row["member"] = members[index].job.member
        owner[0].lineage.append(row)
        return True

    def _explore(self, values: dict[str, Any]) -> dict[str, Any]:
        """The winner's values perturbed (live keys only: the others are the group's shape)."""
        space = self.tuning.space
        new = dict(values)
        for key, value in values.items():
            if key not in space or not live(key):
                continue
            param = space[key]
            if param.type == "categorical" or self.rng.random() < self.pbt.resample_probability:
                new[key] = _draw(param, self.rng)
                continue
            factor = float(self.pbt.perturb[int(self.rng.integers(2))])
            moved = min(max(float(value) * factor, float(param.low)), float(param.high))
            new[key] = round(moved) if param.type == "int" else moved
        return new


def copy_member(stacked: Any, adam: Any, source: int, target: int) -> None:
    """Member `target` takes `source`'s weights and Adam state (moments and step count)."""
    with torch.no_grad():
        for name, value in stacked.params.items():
            value[target].copy_(value[source])
            adam.exp_avg[name][target].copy_(adam.exp_avg[name][source])
            adam.exp_avg_sq[name][target].copy_(adam.exp_avg_sq[name][source])
        adam.steps[target] = adam.steps[source]


def _finite_members(stacked: Any) -> list[bool]:
    with torch.no_grad():
        ok = torch.ones(stacked.size, dtype=torch.bool, device=stacked.device)
        for value in stacked.params.values():
            ok &= torch.isfinite(value.reshape(stacked.size, -1)).all(dim=1)
    return ok.tolist()


def _draw(param: TuningParam, rng: np.random.Generator) -> Any:
    """A fresh value from the key's distribution in tuning.space."""
    if param.type == "categorical":
        choices = param.choices or []
        return choices[int(rng.integers(len(choices)))]
    low, high = float(param.low), float(param.high)  # type: ignore[arg-type]
    if param.log:
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    return round(value) if param.type == "int" else value


def _row(
    event: str,
    fold: int,
    step: int,
    loser: Any,
    winner: Any,
    before: dict[str, Any],
    after: dict[str, Any],
    scores: dict[int, float],
) -> dict[str, Any]:
    return {
        "event": event,
        "trial": loser.trial.number,
        "member": "all",
        "fold": fold,
        "interval": step,
        "copied_from": winner.trial.number,
        "score": scores.get(loser.trial.number),
        "copied_score": scores.get(winner.trial.number),
        "values_before": json.dumps(before, sort_keys=True),
        "values_after": json.dumps(after, sort_keys=True),
    }


def check_pbt(tuning: TuningConfig, trials_per_group: int, learner: str) -> None:
    """PBT copies between the trials of a group: a sweep whose groups hold one cannot run it."""
    if tuning.schedule != "pbt" or trials_per_group >= 2:
        return
    why = (
        "the separate learner trains one trial at a time"
        if learner != "population"
        else f"the plan's groups hold {trials_per_group} trial(s) of {tuning.seeds_per_trial} seed(s)"
    )
    raise UserError(
        f"tuning.schedule=pbt needs groups of at least 2 trials ({2 * tuning.seeds_per_trial} "
        f"members at {tuning.seeds_per_trial} seed(s) a trial) to copy between: {why}\n"
        "  fix: --set ensemble.learner=population --set tuning.trials_per_group=4 (or more), or "
        "tuning.schedule=independent"
    )
