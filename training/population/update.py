"""SB3's PPO update (`PPO.train`) for G members at once, exactly as each would run it alone.

Per member: its own minibatch permutation per epoch (from its own generator), advantage
normalisation per minibatch, clip_range and clip_range_vf, vf_coef, ent_coef, the norm of its
own gradient clipped to its max_grad_norm, target_kl (a member past it stops its epochs, the
others go on), its learning-rate schedule, its Adam step count. One vmapped forward and one
backward serve every member: the group's loss is the sum of the members' losses, and a member's
parameters only touch its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.utils import explained_variance

from core.policies.stacked import StackedPolicies, gaussian_entropy, gaussian_log_prob
from training.population.adam import StackedAdam

ADVANTAGE_EPS = 1e-8  # SB3's
CLIP_NORM_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s


@dataclass
class _Columns:
    """One member's rollout buffer as flat [steps * envs, ...] tensors (views, no copies)."""

    observations: dict[str, torch.Tensor]
    actions: torch.Tensor
    old_values: torch.Tensor
    old_log_prob: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor

    @classmethod
    def of(cls, buffer: Any, device: torch.device) -> _Columns:
        """On a GPU the whole buffer moves once per update; minibatches are then gathered there."""
        total = buffer.buffer_size * buffer.n_envs

        def flat(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array.reshape(total, *array.shape[2:])).to(device)

        return cls(
            {key: flat(value) for key, value in buffer.observations.items()},
            flat(buffer.actions.astype(np.float32, copy=False)),
            flat(buffer.values),
            flat(buffer.log_probs),
            flat(buffer.advantages),
            flat(buffer.returns),
        )


@dataclass
class _Stats:
    """What SB3 logs after an update, per member."""

    pg: list[float] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    entropy: list[float] = field(default_factory=list)
    clip: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    loss: float = float("nan")


@dataclass(frozen=True)
class _Settings:
    """The members' PPO settings this update, as [G] tensors (schedules evaluated now)."""

    lr: torch.Tensor
    clip_range: torch.Tensor
    clip_range_vf: torch.Tensor  # nan: no value clipping (clip_range_vf None)
    ent_coef: torch.Tensor
    vf_coef: torch.Tensor
    max_grad_norm: torch.Tensor
    target_kl: torch.Tensor  # inf: none
    normalize_advantage: bool

    @classmethod
    def of(cls, models: Sequence[Any], device: torch.device) -> _Settings:
        def column(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32, device=device)

        lrs, clips, clips_vf = [], [], []
        for model in models:
            model.policy.set_training_mode(True)
            model._update_learning_rate(model.policy.optimizer)
            lrs.append(model.policy.optimizer.param_groups[0]["lr"])
            progress = model._current_progress_remaining
            clips.append(model.clip_range(progress))
            vf = model.clip_range_vf
            clips_vf.append(float("nan") if vf is None else vf(progress))
        normalize = {bool(model.normalize_advantage) for model in models}
        if len(normalize) > 1:
            raise ValueError("a group's members must agree on normalize_advantage")
        return cls(
            torch.tensor(lrs, dtype=torch.float64, device=device),
            column(clips),
            column(clips_vf),
            column([float(model.ent_coef) for model in models]),
            column([float(model.vf_coef) for model in models]),
            column([float(model.max_grad_norm) for model in models]),
            column([float("inf") if m.target_kl is None else float(m.target_kl) for m in models]),
            normalize.pop(),
        )


def group_train(
    models: Sequence[Any],
    stacked: StackedPolicies,
    adam: StackedAdam,
    members: Sequence[int],
    generators: Sequence[np.random.RandomState],
) -> None:
    """One PPO update of the members `members` (indices into the group) on their own rollout
    buffers; the other members' parameters and optimizer state stay exactly as they are."""
    epochs = {models[m].n_epochs for m in members}
    batch_sizes = {models[m].batch_size for m in members}
    if len(epochs) != 1 or len(batch_sizes) != 1:
        raise ValueError("a group's members must share n_epochs and batch_size")
    n_epochs, batch_size = epochs.pop(), batch_sizes.pop()
    settings = _Settings.of(models, stacked.device)
    columns = {m: _Columns.of(models[m].rollout_buffer, stacked.device) for m in members}
    total = len(next(iter(columns.values())).returns)
    stats = {m: _Stats() for m in members}
    training = list(members)
    for _ in range(n_epochs):
        orders = {
            m: torch.from_numpy(generators[m].permutation(total)).to(stacked.device)
            for m in training
        }
        for m in training:
            models[m]._n_updates += 1  # SB3 counts an epoch a member starts, even one cut short
        for start in range(0, total, batch_size):
            if not training:
                break
            picked = {m: orders[m][start : start + batch_size] for m in training}
            stopping = _minibatch(stacked, adam, settings, columns, picked, stats)
            training = [m for m in training if m not in stopping]
            for m in stopping:
                orders.pop(m)
        if not training:
            break
    stacked.copy_to_members()
    adam.save_to_members()
    for m in members:
        _log(models[m], stats[m], settings.clip_range[m].item(), settings.clip_range_vf[m].item())


def _minibatch(
    stacked: StackedPolicies,
    adam: StackedAdam,
    settings: _Settings,
    columns: dict[int, _Columns],
    picked: dict[int, torch.Tensor],
    stats: dict[int, _Stats],
) -> list[int]:
    """The loss and (for members not past target_kl) the step of one minibatch per member;
    returns the members that stop their epochs here."""
    members = list(picked)
    index = torch.tensor(members, device=stacked.device)

    def gathered(get: Any) -> torch.Tensor:
        return torch.stack([get(columns[m]).index_select(0, picked[m]) for m in members])

    keys = columns[members[0]].observations.keys()
    obs = {key: gathered(lambda c, key=key: c.observations[key]) for key in keys}
    actions = gathered(lambda c: c.actions)
    old_values, old_log_prob = gathered(lambda c: c.old_values), gathered(lambda c: c.old_log_prob)
    advantages, returns = gathered(lambda c: c.advantages), gathered(lambda c: c.returns)
    mean, values, log_std = stacked.heads(obs, stacked.index(members))
    log_prob = gaussian_log_prob(actions, mean, log_std)
    entropy = gaussian_entropy(mean, log_std)
    if settings.normalize_advantage and advantages.shape[1] > 1:
        advantages = (advantages - advantages.mean(dim=1, keepdim=True)) / (
            advantages.std(dim=1, keepdim=True) + ADVANTAGE_EPS
        )
    clip = settings.clip_range[index].unsqueeze(1)
    ratio = torch.exp(log_prob - old_log_prob)
    policy_loss = -torch.min(
        advantages * ratio, advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
    )
    policy_loss = policy_loss.mean(dim=1)
    clip_vf = settings.clip_range_vf[index].unsqueeze(1)
    values_pred = values
    if not bool(torch.isnan(clip_vf).all()):
        clipped = old_values + torch.clamp(values - old_values, -clip_vf, clip_vf)
        values_pred = torch.where(torch.isnan(clip_vf), values, clipped)
    value_loss = ((returns - values_pred) ** 2).mean(dim=1)
    entropy_loss = -entropy.mean(dim=1)
    loss = (
        policy_loss + settings.ent_coef[index] * entropy_loss + settings.vf_coef[index] * value_loss
    )
    with torch.no_grad():
        log_ratio = log_prob - old_log_prob
        approx_kl = torch.mean((torch.exp(log_ratio) - 1) - log_ratio, dim=1)
        clip_fraction = torch.mean((torch.abs(ratio - 1) > clip).float(), dim=1)
        stop = approx_kl > 1.5 * settings.target_kl[index]
        # One copy of every member's scalars (a GPU would sync once per .item()).
        table = torch.stack(
            [policy_loss, value_loss, entropy_loss, clip_fraction, approx_kl, loss]
        ).tolist()
    for row, m in enumerate(members):
        record = stats[m]
        pg, value, entropy, clipped, kl, total = (column[row] for column in table)
        record.pg.append(pg)
        record.value.append(value)
        record.entropy.append(entropy)
        record.clip.append(clipped)
        record.kl.append(kl)
        record.loss = total
    stepping = torch.zeros(stacked.size, dtype=torch.bool, device=stacked.device)
    stepping[index[~stop]] = True
    if bool(stepping.any()):
        _step(stacked, adam, settings, (loss * (~stop).to(loss.dtype)).sum(), stepping)
    stopped = stop.tolist()
    return [m for row, m in enumerate(members) if stopped[row]]


def _step(
    stacked: StackedPolicies,
    adam: StackedAdam,
    settings: _Settings,
    loss: torch.Tensor,
    stepping: torch.Tensor,
) -> None:
    """Backward of the summed loss, each member's gradient clipped to its own norm, Adam."""
    params = list(stacked.params.values())
    for param in params:
        param.grad = None
    loss.backward()
    with torch.no_grad():
        squares = sum(
            param.grad.pow(2).reshape(len(param), -1).sum(dim=1)
            for param in params
            if param.grad is not None
        )
        norm = torch.as_tensor(squares).sqrt()
        coef = torch.clamp(settings.max_grad_norm / (norm + CLIP_NORM_EPS), max=1.0)
        for param in params:
            if param.grad is not None:
                param.grad.mul_(coef.view((-1,) + (1,) * (param.dim() - 1)))
    adam.step(settings.lr, stepping)


def _log(model: Any, stats: _Stats, clip_range: float, clip_range_vf: float) -> None:
    """The scalars SB3's train() records, from this member's own numbers."""
    buffer = model.rollout_buffer
    record = model.logger.record
    record("train/entropy_loss", float(np.mean(stats.entropy)))
    record("train/policy_gradient_loss", float(np.mean(stats.pg)))
    record("train/value_loss", float(np.mean(stats.value)))
    record("train/approx_kl", float(np.mean(stats.kl)))
    record("train/clip_fraction", float(np.mean(stats.clip)))
    record("train/loss", stats.loss)
    record(
        "train/explained_variance",
        float(explained_variance(buffer.values.flatten(), buffer.returns.flatten())),
    )
    if hasattr(model.policy, "log_std"):
        record("train/std", torch.exp(model.policy.log_std).mean().item())
    record("train/n_updates", model._n_updates, exclude="tensorboard")
    record("train/clip_range", clip_range)
    if not np.isnan(clip_range_vf):
        record("train/clip_range_vf", clip_range_vf)
