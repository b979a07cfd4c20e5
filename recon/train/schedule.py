"""Learning-rate schedule: linear warm-up, then cosine annealing to a floor.

A pure function of the global optimiser step, so a resumed run continues on
exactly the same curve (the only scheduler state is the step count).
"""

from __future__ import annotations

import math

from recon.errors import InputError


def warmup_cosine_lr(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float) -> float:
    """Learning rate of optimiser step ``step`` (0-based).

    - warm-up, ``step < warmup_steps``: ``base_lr * (step + 1) / warmup_steps``
      (linear, reaching ``base_lr`` at the last warm-up step; never 0, so step 0 trains);
    - then ``min_lr + (base_lr - min_lr) * (1 + cos(pi * p)) / 2`` with
      ``p = (step - warmup_steps) / (total_steps - warmup_steps)``: ``base_lr`` at the
      first step after warm-up, falling to ``min_lr`` at ``step == total_steps``;
    - steps past ``total_steps`` stay at ``min_lr``.

    This is the paper's schedule (GradualWarmupScheduler then CosineAnnealingLR to
    ``eta_min``), stepped per optimiser step instead of per epoch.
    """
    if step < 0 or total_steps < 1 or warmup_steps < 0:
        raise InputError(f"bad schedule arguments: step={step}, total={total_steps}, warmup={warmup_steps}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = total_steps - warmup_steps
    if span <= 0:
        return base_lr
    p = min(1.0, (step - warmup_steps) / span)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))


class WarmupCosine:
    """Sets the optimiser's learning rate from :func:`warmup_cosine_lr` before each step.

    ``state_dict()`` is ``{"step": n}``: the number of steps taken.
    """

    def __init__(self, optimizer, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float):
        self.optimizer = optimizer
        self.total_steps, self.warmup_steps = int(total_steps), int(warmup_steps)
        self.base_lr, self.min_lr = float(base_lr), float(min_lr)
        self.step_count = 0

    def lr(self) -> float:
        """The learning rate of the next step."""
        return warmup_cosine_lr(self.step_count, self.total_steps, self.warmup_steps, self.base_lr, self.min_lr)

    def apply(self) -> float:
        """Write the next step's learning rate into every parameter group (times the group's
        ``lr_scale``, 1 when it has none); return it."""
        lr = self.lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def advance(self) -> None:
        self.step_count += 1

    def state_dict(self) -> dict:
        return {"step": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
