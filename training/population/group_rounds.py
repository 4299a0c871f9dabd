"""fedavg inside a population group: the members already live in one process, so at each round's
end their weights are averaged in memory (and, when the fold has several groups, across the
groups' tasks by one all_reduce weighted by members: training.fedavg.collective), loaded back
into every member, and committed together. A preemption waits for the round's commit."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from training.fedavg.meeting import Arrival, Meeting
from training.member.member_training import run_to_end
from training.member.rounds import load_state, policy_state, round_ends
from training.population.group_members import Member
from training.run.job import Hooks


class GroupRounds:
    """The rounds of a group's members (same rollout and sync steps: the same round ends)."""

    def __init__(self, meeting: Meeting, members: Sequence[Member], sync_steps: int) -> None:
        first = members[0].job
        self.meeting = meeting
        self.ends = round_ends(first.timesteps, sync_steps, first.n_envs * first.n_steps)
        self.round_started = time.perf_counter()

    def holds(self, member: Member) -> bool:
        """The member reached its next round's end: it waits for the round before training on."""
        done = member.state.rounds_done
        return done < len(self.ends) and member.model.num_timesteps >= self.ends[done]

    def meet_if_due(
        self,
        members: Sequence[Member],
        walk: Callable[[Sequence[int]], None],
        copy_from_members: Callable[[], None],
        hooks: Hooks,
    ) -> None:
        """Once every member still in has reached the round's end: average, load, commit."""
        alive = [i for i, m in enumerate(members) if m.error is None and m.left is None]
        if not alive or not all(self.holds(members[i]) for i in alive):
            return
        index = members[alive[0]].state.rounds_done + 1
        walk(alive)  # the members' validation scores, walked together
        arrivals = []
        for i in alive:
            member = members[i]
            score = member.callback.evaluate(commit=False)["score"]
            arrivals.append(
                Arrival(
                    member.job.member, policy_state(member.model), score, member.model.num_timesteps
                )
            )
        stop = hooks.preemption is not None and hooks.preemption.requested
        arrived = time.perf_counter()
        agreed = run_to_end(self.meeting.meet(index, arrivals, stop))
        waited = time.perf_counter() - arrived
        for i in alive:
            load_state(members[i].model, agreed.fused)
        copy_from_members()
        for i in alive:
            state = members[i].state
            state.rounds_done = index
            state.round_wait_s.append(round(waited, 3))
            state.round_wall_s.append(round(time.perf_counter() - self.round_started, 3))
            members[i].callback.checkpoint()
        self.round_started = time.perf_counter()
        if agreed.stop and hooks.preemption is not None:
            hooks.preemption.requeue()
