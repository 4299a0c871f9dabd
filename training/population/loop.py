"""The group's training loop: SB3's `learn` for every member, one rollout and one update at a time.

Per iteration, as `OnPolicyAlgorithm.learn` does for one model: the rollout's start (each member's
callback validates, checkpoints, may stop it early), the rollout, its end (scalars), the progress
and log dump, the update. A preemption request is honoured at a rollout boundary: every member
commits the checkpoint of that moment, then the group requeues once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from core.errors import UserError
from core.evaluation.metrics import Annualisation
from core.evaluation.walks import walk_members
from core.features.store import FeatureStore
from core.policies.stacked import StackedPolicies
from training.member.divergence import diverged_message
from training.member.member_build import every_steps
from training.member.validation import track_validation
from training.population.adam import StackedAdam
from training.population.group_members import Member, build_members
from training.population.group_rounds import GroupRounds
from training.population.rollouts import collect_group_rollouts
from training.population.update import group_train
from training.run.job import Hooks, Job, LeaveTraining

if TYPE_CHECKING:
    from training.fedavg.meeting import Meeting


class _Validations:
    """Validation metrics walked for the group, handed to each member's callback when it asks."""

    def __init__(self, store: FeatureStore, annual: Annualisation) -> None:
        self.store, self.annual = store, annual
        self.ready: dict[int, dict[str, float]] = {}
        self.members: list[Member] = []
        self.stacked: StackedPolicies | None = None

    def walk(self, due: Sequence[int]) -> None:
        """Validate members `due` (by risk profile: one walk per env setting)."""
        assert self.stacked is not None
        profiles: dict[str | None, list[int]] = {}
        for index in due:
            profiles.setdefault(self.members[index].job.risk_profile, []).append(index)
        for indices in profiles.values():
            first = self.members[indices[0]]
            tracks = walk_members(
                self.store, first.settings, first.job.fold.validation, self.stacked, indices
            )
            for index, track in zip(indices, tracks, strict=True):
                config = self.members[index].config
                self.ready[index] = track_validation(track, self.annual, config)

    def __call__(self, index: int) -> dict[str, float]:
        if index not in self.ready:
            self.walk([index])
        return self.ready.pop(index)


Between = Callable[[Sequence[Member], StackedPolicies, StackedAdam], None]
"""Work on the group between two iterations, after the due validations (a PBT schedule). One
with a `diverged(members, stacked, adam, index) -> bool` method may also rescue a member whose
update went non-finite (True: replaced, it trains on)."""


def train_members(
    jobs: Sequence[Job],
    store: FeatureStore,
    annual: Annualisation,
    hooks: Hooks,
    member_hooks: Sequence[Hooks] | None = None,
    between: Between | None = None,
    meeting: Meeting | None = None,
) -> list[Member]:
    """Train every member to its end (or early stop, failure, or leaving); each is finished
    (final validation, final checkpoint) as the separate trainer finishes it. `hooks` are the
    group's (phase, preemption, progress); `member_hooks[i]`, job i's own (default: `hooks`).
    `meeting`: fedavg's, where the group's members average every round (group_rounds)."""
    validations = _Validations(store, annual)
    own = list(member_hooks) if member_hooks is not None else [hooks] * len(jobs)
    members = build_members(jobs, store, own, validations)
    stacked = StackedPolicies([member.model.policy for member in members])
    adam = StackedAdam(stacked.params, [member.model.policy.optimizer for member in members])
    validations.members, validations.stacked = members, stacked
    for member in members:
        _setup_learn(member)
    if hooks.phase:
        hooks.phase("training")
    rounds = None
    if meeting is not None:
        sync = every_steps(members[0].config.ensemble.sync_steps, members[0].job.timesteps)
        rounds = GroupRounds(meeting, members, sync)
    iteration = 0
    while True:
        if rounds is not None:
            rounds.meet_if_due(members, validations.walk, stacked.copy_from_members, hooks)
        active = [
            i
            for i, member in enumerate(members)
            if _still_in(member) and (rounds is None or not rounds.holds(member))
        ]
        if not active:
            break
        if rounds is None:  # fedavg's stop waits for the round's commit (group_rounds)
            _preempt_if_asked(members, hooks)
        _guarded(
            members,
            [i for i in active if members[i].callback.evaluation_due()],
            validations.walk,
            together=True,
        )
        _guarded(members, active, lambda i: members[i].callback.on_rollout_start())
        if between is not None:
            between(members, stacked, adam)
        for i in active:  # stopped early at this boundary: SB3 counts the step it then takes
            if members[i].callback.stop:
                members[i].model.num_timesteps += members[i].model.env.num_envs
        active = [i for i in active if members[i].training]
        if not active:
            break
        models = [member.model for member in members]
        infos = collect_group_rollouts(models, stacked, active, [m.torch_rng for m in members])
        iteration += 1

        def rollout_end(i: int, infos: dict = infos, iteration: int = iteration) -> None:
            _rollout_end(members[i], infos[i], iteration)

        _guarded(members, active, rollout_end)
        group_train(models, stacked, adam, active, [m.numpy_rng for m in members])
        _fail_non_finite(members, stacked, adam, active, getattr(between, "diverged", None))
    _finish(members, validations)
    return members


def _still_in(member: Member) -> bool:
    """Training, and not told by its hooks that it is over (its trial pruned by a sibling)."""
    if member.training and member.hooks.left is not None:
        member.left = member.hooks.left()
    return member.training


def _setup_learn(member: Member) -> None:
    """SB3's `_setup_learn` (envs reset, callback initialised) for a member that trains on."""
    model, state = member.model, member.state
    member.total = model.num_timesteps
    remaining = member.job.timesteps - model.num_timesteps
    if state.finished or state.stopped_early or remaining <= 0:
        return
    member.total, callback = model._setup_learn(
        remaining, member.callback, reset_num_timesteps=not state.last_checkpoint
    )
    callback.on_training_start(locals(), globals())


def _rollout_end(member: Member, infos: list[dict[str, Any]], iteration: int) -> None:
    model, callback = member.model, member.callback
    callback.update_locals({"infos": infos})
    callback.on_rollout_end()
    model._update_current_progress_remaining(model.num_timesteps, member.total)
    model.dump_logs(iteration)


def _preempt_if_asked(members: Sequence[Member], hooks: Hooks) -> None:
    """USR2 (or a local job's stop): every member still training commits this moment (after an update, before new
    steps: it resumes to the same step counts), then the group hands over to the requeue."""
    if hooks.preemption is None or not hooks.preemption.requested:
        return
    for member in members:
        if member.error is None and member.left is None and not member.state.finished:
            if hooks.preemption.requeues:
                member.state.preempted_at.append(member.model.num_timesteps)
            member.callback.checkpoint()
    hooks.preemption.requeue()


def _guarded(
    members: Sequence[Member], indices: Sequence[int], work: Any, together: bool = False
) -> None:
    """Run `work` for these members; a member whose work raises is failed, the others go on
    (`together`: one call for all; if it raises, each is tried alone to find the culprit)."""
    if together and indices:
        try:
            work(list(indices))
            return
        except UserError:
            raise
        except Exception:
            for index in indices:
                _guarded(members, [index], lambda i: work([i]))
            return
    for index in indices:
        if members[index].error is not None or members[index].left is not None:
            continue
        try:
            work(index)
        except UserError:
            raise
        except LeaveTraining as leaving:  # its trial is over: it leaves, not as a failure
            members[index].left = str(leaving) or "left"
        except Exception as error:  # this member's failure: reported, the group goes on
            members[index].error = f"{type(error).__name__}: {error}"
            if members[index].callback.warn:
                members[index].callback.warn(f"failed: {members[index].error}")


def _fail_non_finite(
    members: Sequence[Member],
    stacked: StackedPolicies,
    adam: StackedAdam,
    active: list[int],
    rescue: Callable[..., bool] | None = None,
) -> None:
    """A member whose update left non-finite weights has diverged: it fails, alone, with the
    weights, the step and the fix named (training.member.divergence), unless `rescue` (PBT)
    replaces it."""
    with torch.no_grad():
        finite = {
            name: torch.isfinite(value.reshape(stacked.size, -1)).all(dim=1)
            for name, value in stacked.params.items()
        }
    for index in active:
        weights = [name for name, ok in finite.items() if not ok[index]]
        if weights and rescue is not None and rescue(members, stacked, adam, index):
            continue
        if weights:
            member = members[index]
            step = member.model.num_timesteps
            member.error = diverged_message(member.job.name, step, weights, member.config)
            member.callback.warn(member.error)


def _finish(members: Sequence[Member], validations: _Validations) -> None:
    """The separate trainer's end of training: the final validation (walked together) and the
    final checkpoint of each member that did not fail."""
    alive = [i for i, m in enumerate(members) if m.error is None and m.left is None]
    unfinished = [i for i in alive if not members[i].state.finished]
    for i in unfinished:
        members[i].callback.init_callback(members[i].model)
    due = [i for i in unfinished if members[i].callback.final_evaluation_due()]
    _guarded(members, due, validations.walk, together=True)
    _guarded(members, unfinished, lambda i: members[i].callback.finish())
    for member in members:
        member.model.env.close()
