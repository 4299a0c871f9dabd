"""G members' SB3 policies as one set of stacked tensors, run with one vmapped forward.

Every member keeps its own SB3 model (checkpoints, `PPO.load`, predict, logger); during a group's
training the stacked tensors are the truth and are copied back into each member's modules after
every update (a few hundred small copies: microseconds next to an update), so a member's model is
always current when it is validated, saved or asked for a value.

The Gaussian head is written out here rather than built from torch.distributions: a `Normal`
validates its arguments with data-dependent Python branches, which vmap cannot trace. The
formulas are torch's own `Normal.log_prob` / `entropy`, summed over action dimensions as SB3's
`DiagGaussianDistribution` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.preprocessing import preprocess_obs
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from core.errors import UserError

LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))
ENTROPY_CONSTANT = 0.5 + 0.5 * math.log(2 * math.pi)
Observation = dict[str, torch.Tensor]


class ActorCriticHeads(nn.Module):
    """The policy's mean action and value for a batch of observations (no distribution)."""

    def __init__(self, policy: Any) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: Observation, critic: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        policy = self.policy
        prepared = preprocess_obs(obs, policy.observation_space, policy.normalize_images)
        if not critic:  # a deterministic walk needs the actor only
            extractor = (
                policy.features_extractor
                if policy.share_features_extractor
                else policy.pi_features_extractor
            )
            latent_pi = policy.mlp_extractor.forward_actor(extractor(prepared))
            return policy.action_net(latent_pi), latent_pi.new_zeros(())
        if policy.share_features_extractor:
            latent_pi, latent_vf = policy.mlp_extractor(policy.features_extractor(prepared))
        else:
            latent_pi = policy.mlp_extractor.forward_actor(policy.pi_features_extractor(prepared))
            latent_vf = policy.mlp_extractor.forward_critic(policy.vf_features_extractor(prepared))
        return policy.action_net(latent_pi), policy.value_net(latent_vf).flatten()


def check_groupable(policy: Any) -> None:
    """The group learner batches SB3's diagonal-Gaussian actor-critic whose buffers are constants
    (multi_timeframe_cnn's gather indices: one copy serves every member); say so for anything
    else."""
    if not isinstance(policy.action_dist, DiagGaussianDistribution) or policy.use_sde:
        raise UserError(
            f"ensemble.learner population batches a diagonal Gaussian policy; "
            f"{type(policy).__name__} uses {type(policy.action_dist).__name__}: "
            "set ensemble.learner=separate"
        )
    norms = [
        type(m).__name__ for m in policy.modules() if isinstance(m, nn.modules.batchnorm._NormBase)
    ]
    if norms:
        raise UserError(
            f"{type(policy).__name__} has {norms[0]} layers, whose running statistics the group "
            "learner does not stack: set ensemble.learner=separate"
        )


class StackedPolicies:
    """Parameters of G policies of one architecture, stacked on a leading member axis."""

    def __init__(self, policies: Sequence[Any]) -> None:
        for policy in policies:
            check_groupable(policy)
        self.policies = list(policies)
        self.names = [name for name, _ in policies[0].named_parameters()]
        params, _ = stack_module_state(list(policies))  # copies: the members' own stay apart
        self.params: dict[str, torch.Tensor] = {
            name: params[name].detach().requires_grad_(True) for name in self.names
        }
        self._heads = ActorCriticHeads(policies[0])
        self._mapped = vmap(self._member_heads, in_dims=(0, 0))
        self._mapped_actor = vmap(self._member_actor, in_dims=(0, 0))

    @property
    def size(self) -> int:
        return len(self.policies)

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    def index(self, members: Sequence[int]) -> torch.Tensor | None:
        """The index tensor that selects `members` (None: all of them, in order)."""
        if list(members) == list(range(self.size)):
            return None
        return torch.tensor(list(members), device=self.device)

    def _member_heads(
        self, params: dict[str, torch.Tensor], obs: Observation
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        named = {f"policy.{name}": value for name, value in params.items()}
        # One name per parameter and no tying: SB3's unshared extractors reach the actor's
        # extractor by two names (an alias of `features_extractor`), and swapping one module's
        # tensor under both names restores the batched tensor instead of the member's own.
        mean, values = functional_call(self._heads, named, (obs,), tie_weights=False)
        return mean, values, params["log_std"]

    def _member_actor(self, params: dict[str, torch.Tensor], obs: Observation) -> torch.Tensor:
        named = {f"policy.{name}": value for name, value in params.items()}
        mean, _ = functional_call(self._heads, named, (obs, False), tie_weights=False)
        return mean

    def mean_actions(self, obs: Observation, members: torch.Tensor | None = None) -> torch.Tensor:
        """Mean actions [g, n, a] only (what `predict(deterministic=True)` takes), for walks."""
        return self._mapped_actor(self._selected(members), obs)

    def _selected(self, members: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if members is None:
            return self.params
        return {name: value.index_select(0, members) for name, value in self.params.items()}

    def heads(
        self, obs: Observation, members: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean actions [g, n, a], values [g, n], log_std [g, a]) of members `members` (all
        when None) for their own observations obs[key][g, n, ...]."""
        return self._mapped(self._selected(members), obs)

    def copy_to_members(self) -> None:
        """Each member's modules take their slice of the stacked tensors (in place)."""
        with torch.no_grad():
            for m, policy in enumerate(self.policies):
                for name, param in policy.named_parameters():
                    param.copy_(self.params[name][m])

    def copy_from_members(self) -> None:
        """The stacked tensors take each member's parameters (after a load or an averaging)."""
        with torch.no_grad():
            for m, policy in enumerate(self.policies):
                for name, param in policy.named_parameters():
                    self.params[name][m].copy_(param)


def gaussian_log_prob(
    actions: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
) -> torch.Tensor:
    """log N(actions; mean, exp(log_std)) summed over the action dimension, as torch computes it.
    mean, actions [g, n, a]; log_std [g, a]."""
    scale = torch.ones_like(mean) * log_std.exp().unsqueeze(1)
    var = scale**2
    log_prob = -((actions - mean) ** 2) / (2 * var) - scale.log() - LOG_SQRT_2PI
    return log_prob.sum(dim=-1)


def gaussian_entropy(mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of the diagonal Gaussian per observation [g, n] (it depends on log_std only)."""
    scale = torch.ones_like(mean) * log_std.exp().unsqueeze(1)
    return (ENTROPY_CONSTANT + torch.log(scale)).sum(dim=-1)
