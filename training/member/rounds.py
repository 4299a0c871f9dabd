"""One member's side of federated averaging: train a segment, meet the fold's other members
(training.fedavg.meeting), load the average, commit the round, go on.

Every round starts from a known point: the weights, Adam moments and step count committed after the
previous round, the random generators reseeded for this round and the envs reset. So a member
killed anywhere in a round resumes from the last committed round and replays it exactly, and the
run ends with the same weights as one that was never interrupted.

Adam's moments are kept per member across averagings by default (`ensemble.sync_optimizer: keep`):
they describe each member's own gradient scale, which averaging weights that started from one
network changes little, while a reset restarts Adam's bias correction, so the first steps after
every round are the largest. `reset` is there to measure that (bench_fedavg.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from typing import Any

import numpy as np

from core.atomic import write_json
from training.fedavg.average import State
from training.fedavg.meeting import Arrival, Meeting, recorded
from training.member.callbacks import WalkForwardCallback
from training.member.checkpoints import TrainingState
from training.run.job import Hooks, Job

ROUND_SEED_STRIDE = 7919  # round r of a member is seeded seed + r * stride (a prime: no overlap
# with the next member's seed + 1 for any realistic round count)


def round_ends(timesteps: int, sync_steps: int, rollout: int) -> list[int]:
    """The step count at the end of each round: whole rollouts (PPO stops only between them),
    `sync_steps` rounded up to them, the last round ending where the member's training does."""
    every = math.ceil(sync_steps / rollout) * rollout
    total = math.ceil(timesteps / rollout) * rollout
    return [min(end, total) for end in range(every, total + every, every)]


def train_rounds(
    model: Any,
    job: Job,
    callback: WalkForwardCallback,
    meeting: Meeting,
    ends: list[int],
    state: TrainingState,
    hooks: Hooks,
    validate_fused: Callable[[Any], dict[str, float]],
    reset_optimizer: bool = False,
    learning: Any = None,
) -> Generator[None, None, None]:
    """Run the rounds not yet committed; yields while the meeting waits for members of this same
    process (debug mode's turns). `learning`: what learn() runs (`callback` with the user's
    training.callbacks), `callback` itself by default. A preemption asked during a round is
    agreed at its meeting: every member commits that round, then all requeue together."""
    phase = hooks.phase or (lambda name: None)
    for index, end in enumerate(ends, start=1):
        if index <= state.rounds_done:
            continue
        started = time.perf_counter()
        reseed(model, job.seed + index * ROUND_SEED_STRIDE)
        phase("training")  # through the meeting too: a stop waits for the round's commit
        model.learn(
            end - model.num_timesteps,
            callback=callback if learning is None else learning,
            reset_num_timesteps=False,
        )
        evaluation = callback.evaluate(commit=False)
        waited = 0.0
        agreed = recorded(meeting.files, index)  # the others committed it while this one was down
        if agreed is None:
            arrival = Arrival(
                job.member, policy_state(model), evaluation["score"], model.num_timesteps
            )
            stop = hooks.preemption is not None and hooks.preemption.requested
            arrived = time.perf_counter()
            agreed = yield from meeting.meet(index, [arrival], stop)
            waited = time.perf_counter() - arrived
        load_state(model, agreed.fused)
        if reset_optimizer:
            fresh_optimizer(model)
        validation = meeting.files.validation(index)
        if agreed.closed.closed_by == job.member and not validation.exists():
            write_json(validation, validate_fused(model) | {"timesteps": agreed.closed.timesteps})
        state.rounds_done = index
        state.round_wait_s.append(round(waited, 3))
        state.round_wall_s.append(round(time.perf_counter() - started, 3))
        callback.checkpoint()
        if agreed.stop and hooks.preemption is not None:
            hooks.preemption.requeue()


def reseed(model: Any, seed: int) -> None:
    """Generators and envs as at the start of a round, whatever ran before it in this process."""
    model.set_random_seed(seed)
    model._last_obs = model.env.reset()
    model._last_episode_starts = np.ones((model.env.num_envs,), dtype=bool)


def policy_state(model: Any) -> State:
    """The policy's weights (actor, critic, log_std) as numpy arrays."""
    return {key: value.detach().cpu().numpy() for key, value in model.policy.state_dict().items()}


def fresh_optimizer(model: Any) -> None:
    """ensemble.sync_optimizer reset: Adam starts over from the average, as SB3 builds it."""
    policy = model.policy
    policy.optimizer = policy.optimizer_class(
        policy.parameters(), lr=model.lr_schedule(1), **policy.optimizer_kwargs
    )


def load_state(model: Any, state: State) -> None:
    """Copy weights into the policy in place: the optimizer keeps its parameters and moments."""
    import torch

    model.policy.load_state_dict({key: torch.as_tensor(value) for key, value in state.items()})
