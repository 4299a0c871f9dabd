"""Adam on stacked parameters: exactly one torch Adam per member, stepped together.

Written by hand because torch's Adam keeps one step count per parameter tensor, and a stacked
tensor holds G members that each need their own step count (Adam's bias correction) and may sit
out a step (past target_kl, stopped, failed): such a member keeps its parameters and both moments
untouched, which a zero gradient under Adam's momentum would not. The update is torch's
single-tensor Adam formula (lerp, addcmul, bias corrections, addcdiv), elementwise, so stacking
changes nothing. Each member's state goes to and from its SB3 optimizer, so its checkpoint
resumes (and SB3 trains it further) exactly as a separate member's would.
"""

from __future__ import annotations

from typing import Any

import torch


class StackedAdam:
    """Adam state for stacked parameters {name: [G, ...]}; `lr` and the betas per member."""

    def __init__(self, params: dict[str, torch.Tensor], optimizers: list[Any]) -> None:
        self.params = params
        self.optimizers = optimizers
        groups = [optimizer.param_groups[0] for optimizer in optimizers]
        device = next(iter(params.values())).device

        def column(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float64, device=device)

        self.beta1 = column([g["betas"][0] for g in groups])
        self.beta2 = column([g["betas"][1] for g in groups])
        self.eps = column([g["eps"] for g in groups])
        for group in groups:
            if group.get("weight_decay", 0) or group.get("amsgrad") or group.get("maximize"):
                raise ValueError("the group learner's Adam has no weight decay, amsgrad, maximize")
        self.steps = torch.zeros(len(optimizers), dtype=torch.float64, device=device)
        self.exp_avg = {name: torch.zeros_like(value) for name, value in params.items()}
        self.exp_avg_sq = {name: torch.zeros_like(value) for name, value in params.items()}
        self.load_from_members()

    def load_from_members(self) -> None:
        """Moments and step counts from each member's torch optimizer (empty before its first
        step: zeros, as torch starts)."""
        with torch.no_grad():
            for m, optimizer in enumerate(self.optimizers):
                params = optimizer.param_groups[0]["params"]
                for name, param in zip(self.params, params, strict=True):
                    state = optimizer.state.get(param)
                    if not state:
                        self.exp_avg[name][m].zero_()
                        self.exp_avg_sq[name][m].zero_()
                        self.steps[m] = 0
                        continue
                    self.exp_avg[name][m].copy_(state["exp_avg"])
                    self.exp_avg_sq[name][m].copy_(state["exp_avg_sq"])
                    self.steps[m] = float(state["step"])

    def save_to_members(self) -> None:
        """Each member's torch optimizer takes its moments and step count (for its checkpoint)."""
        with torch.no_grad():
            for m, optimizer in enumerate(self.optimizers):
                if self.steps[m] == 0:
                    continue
                params = optimizer.param_groups[0]["params"]
                for name, param in zip(self.params, params, strict=True):
                    state = optimizer.state[param]
                    if not state:
                        state["step"] = torch.tensor(0.0)  # torch keeps it on the CPU
                        state["exp_avg"] = torch.zeros_like(param)
                        state["exp_avg_sq"] = torch.zeros_like(param)
                    state["step"].fill_(float(self.steps[m]))
                    state["exp_avg"].copy_(self.exp_avg[name][m])
                    state["exp_avg_sq"].copy_(self.exp_avg_sq[name][m])

    @torch.no_grad()
    def step(self, lr: torch.Tensor, active: torch.Tensor) -> None:
        """One Adam step of the members where `active` [G] bool is set, with their learning
        rates `lr` [G]; the others keep parameters, moments and step counts."""
        self.steps += active.to(torch.float64)
        steps = self.steps.clamp(min=1)
        correction1 = 1 - self.beta1**steps
        correction2_sqrt = (1 - self.beta2**steps).sqrt()
        step_size = lr.to(torch.float64) / correction1
        for name, param in self.params.items():
            grad = param.grad
            if grad is None:
                continue
            shape = (-1,) + (1,) * (param.dim() - 1)
            keep = active.view(shape)
            # 1 - beta in double, then cast, as torch passes it (1 - float32(0.999) is off by 1e-5)
            weight1 = (1 - self.beta1).to(param.dtype).view(shape)
            weight2 = (1 - self.beta2).to(param.dtype).view(shape)
            beta2 = self.beta2.to(param.dtype).view(shape)
            exp_avg = torch.lerp(self.exp_avg[name], grad, weight1)
            exp_avg_sq = self.exp_avg_sq[name] * beta2 + weight2 * grad * grad
            denom = exp_avg_sq.sqrt() / correction2_sqrt.to(param.dtype).view(shape)
            denom = denom + self.eps.to(param.dtype).view(shape)
            moved = param - step_size.to(param.dtype).view(shape) * exp_avg / denom
            self.exp_avg[name] = torch.where(keep, exp_avg, self.exp_avg[name])
            self.exp_avg_sq[name] = torch.where(keep, exp_avg_sq, self.exp_avg_sq[name])
            param.copy_(torch.where(keep, moved, param))
