"""What happens around PPO's updates while one member trains on one fold.

Validation rollouts pick the best checkpoint and stop early; resumable checkpoints are written
atomically; TensorBoard gets rollout, action, trade and validation scalars; collapse alarms
(no action spread, no entropy, no trades) become warnings in the log and the report; an optional
entropy floor raises `ent_coef` while the policy's entropy is below a target.

Evaluations and checkpoints happen at the start of a rollout, i.e. after PPO's update on the
previous one, so a checkpoint's weights include every step its timestep count says they do.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from core.config import TrainingConfig
from training.member.checkpoints import TrainingState, commit_state, save_checkpoint
from training.run.files import JobFiles
from training.run.job import Preemption

ENTROPY_BOOST = 1.5  # ent_coef grows by this factor per evaluation while entropy is too low
ENT_COEF_START = 1e-3  # ...starting here when ent_coef is 0
GAUSSIAN_ENTROPY_CONSTANT = 0.5 + 0.5 * math.log(2 * math.pi)
OFF_POLICY_ACTION_ROWS = 256  # replay rows (of n_envs steps) the action-spread alarm reads


Validator = Callable[[PPO], dict[str, float]]  # model -> validation metrics incl. "score", "trades"


class WalkForwardCallback(BaseCallback):
    def __init__(
        self,
        *,
        validate: Validator,
        files: JobFiles,
        state: TrainingState,
        settings: TrainingConfig,
        eval_every: int,
        checkpoint_every: int,
        reward_clip: float,
        advance: Callable[[int], None] | None = None,
        warn: Callable[[str], None] | None = None,
        preemption: Preemption | None = None,
        validated: Callable[[dict[str, float]], None] | None = None,
        check: Callable[[PPO], None] | None = None,
    ) -> None:
        super().__init__()
        self.validate, self.files, self.state, self.settings = validate, files, state, settings
        self.eval_every, self.checkpoint_every = eval_every, checkpoint_every
        self.reward_clip = reward_clip
        self.advance = advance or (lambda steps: None)
        self.warn = warn or (lambda message: None)
        self.preemption = preemption
        self.validated = validated  # a sweep reports each validation (and may prune here)
        # raises when the weights went non-finite: before they roll out, are walked or saved
        self.check = check or (lambda model: None)
        self.stop = False
        self.action_std = float("nan")
        self.counted = 0

    # SB3 hooks -------------------------------------------------------------------------
    def _on_training_start(self) -> None:
        self.counted = self.model.num_timesteps

    def _on_step(self) -> bool:
        return not self.stop

    def _on_rollout_end(self) -> None:
        actions, rewards = collected(self.model)
        actions = np.clip(actions, -1.0, 1.0)
        self.action_std = float(actions.std(axis=0).mean())
        record = self.logger.record
        record("rollout/reward_mean", float(rewards.mean()))
        record("rollout/reward_std", float(rewards.std()))
        record("rollout/reward_min", float(rewards.min()))
        record("rollout/reward_max", float(rewards.max()))
        record("rollout/reward_clip_fraction", float(np.mean(np.abs(rewards) >= self.reward_clip)))
        record("rollout/action_mean", float(actions.mean()))
        record("rollout/action_std", self.action_std)
        infos = self.locals.get("infos") or []
        counts = [info["trade_counts"] for info in infos if "trade_counts" in info]
        for name in counts[0] if counts else ():
            record(f"trades/{name}", float(np.mean([c[name] for c in counts])))
        done = self.model.num_timesteps
        self.advance(done - self.counted)
        self.counted = done

    def _on_rollout_start(self) -> None:
        self.check(self.model)
        done = self.model.num_timesteps
        if self.preemption is not None and self.preemption.requested:
            # After the update and before new steps: the checkpoint of this moment resumes
            # to the same step count as an uninterrupted run.
            if self.preemption.requeues:
                self.state.preempted_at.append(done)
            self.checkpoint()
            self.preemption.requeue()
        if done <= self.state.timesteps:
            return  # the first rollout of a (resumed) run: nothing new since the checkpoint
        if self.evaluation_due():
            self.evaluate()
        if done - self.state.timesteps >= self.checkpoint_every:
            self.checkpoint()

    def evaluation_due(self) -> bool:
        """Whether this rollout start validates (a group walks its due members together first)."""
        done = self.model.num_timesteps
        if done <= self.state.timesteps:
            return False
        last_eval = self.state.evaluations[-1]["timesteps"] if self.state.evaluations else 0
        return done - last_eval >= self.eval_every

    def final_evaluation_due(self) -> bool:
        """Whether `finish` validates the final weights (not yet validated at this step count)."""
        done = self.model.num_timesteps
        return not self.stop and (
            not self.state.evaluations or self.state.evaluations[-1]["timesteps"] < done
        )

    # Work --------------------------------------------------------------------------------
    def finish(self) -> None:
        """After learn(): evaluate the final weights (if not yet) and commit a final checkpoint."""
        self.check(self.model)
        if self.final_evaluation_due():
            self.evaluate()
        self.state.finished = True
        self.checkpoint()

    def evaluate(self, commit: bool = True) -> dict[str, float]:
        """Validate the current weights (keeping the best); `commit`: also a resumable checkpoint."""
        model, state, settings = self.model, self.state, self.settings
        self.check(model)
        result = self.validate(model)
        entropy = policy_entropy(model)
        result |= {
            "timesteps": model.num_timesteps,
            "entropy": entropy,
            "ent_coef": entropy_weight(model),
        }
        result["action_std"] = self.action_std
        state.evaluations.append(result)
        for key, value in result.items():
            if key != "timesteps":
                self.logger.record(f"validation/{key}", value)
        self.logger.dump(model.num_timesteps)
        if self.validated is not None:
            self.validated(result)
        if state.best_score is None or result["score"] > state.best_score:
            state.best_score = result["score"]
            state.best_checkpoint = save_checkpoint(self.files, model, "best")
            state.since_best = 0
        else:
            state.since_best += 1
        self._alarms(result)
        if settings.entropy_target is not None and entropy < settings.entropy_target:
            raised = min(settings.ent_coef_max, max(model.ent_coef * ENTROPY_BOOST, ENT_COEF_START))
            if raised > model.ent_coef:
                self.warn(
                    f"entropy floor: entropy {entropy:.3f} < training.entropy_target "
                    f"{settings.entropy_target:g}; ent_coef {model.ent_coef:g} -> {raised:g}"
                )
                model.ent_coef = raised
        if settings.patience is not None and state.since_best >= settings.patience:
            self.stop = state.stopped_early = True
            self.warn(
                f"early stop at {model.num_timesteps:,} steps: {settings.patience} evaluations "
                f"without a better validation {settings.validation_metric}"
            )
        if commit:
            self.checkpoint()
        return result

    def checkpoint(self) -> None:
        self.state.timesteps = self.model.num_timesteps
        self.state.commit_last(save_checkpoint(self.files, self.model, "last"))
        commit_state(self.files, self.state)

    def _alarms(self, result: dict[str, float]) -> None:
        settings, at = self.settings, f"at {self.model.num_timesteps:,} steps"
        alarms = []
        if self.action_std < settings.min_action_std:
            alarms.append(
                f"collapse: action spread {self.action_std:.4f} < training.min_action_std "
                f"{settings.min_action_std:g} {at}"
            )
        if settings.min_entropy is not None and result["entropy"] < settings.min_entropy:
            alarms.append(
                f"collapse: policy entropy {result['entropy']:.3f} < training.min_entropy "
                f"{settings.min_entropy:g} {at}"
            )
        if result["trades"] == 0:
            alarms.append(f"collapse: no trades in the whole validation window {at}")
        for alarm in alarms:
            self.state.warnings.append(alarm)
            self.warn(alarm)


def collected(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """(actions, rewards) of the steps just collected: PPO's rollout; for SAC/TQC the rows the
    collection wrote to the replay buffer, with actions over its last OFF_POLICY_ACTION_ROWS rows
    (a collection is often one step per env: too few to measure the policy's spread)."""
    rollout = getattr(model, "rollout_buffer", None)
    if rollout is not None:
        return rollout.actions, rollout.rewards
    replay = model.replay_buffer
    filled = replay.buffer_size if replay.full else replay.pos

    def last(values: np.ndarray, rows: int) -> np.ndarray:
        order = (replay.pos - 1 - np.arange(min(rows, filled))) % replay.buffer_size
        return values[order]

    return last(replay.actions, OFF_POLICY_ACTION_ROWS), last(
        replay.rewards, model.train_freq.frequency
    )


def entropy_weight(model: Any) -> float:
    """The entropy coefficient in use: PPO's number, or SAC/TQC's (learned: exp of its log)."""
    learned = getattr(model, "log_ent_coef", None)
    if learned is not None:
        return float(learned.detach().exp().item())
    fixed = getattr(model, "ent_coef_tensor", None)
    return float(fixed.item()) if fixed is not None else float(model.ent_coef)


def policy_entropy(model: PPO) -> float:
    """Entropy per action dimension of the Gaussian policy (it depends only on log_std)."""
    log_std = getattr(model.policy, "log_std", None)
    if log_std is None:
        return float("nan")
    return float(GAUSSIAN_ENTROPY_CONSTANT + log_std.detach().cpu().mean())
