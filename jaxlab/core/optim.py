"""Optimizer pieces that several methods share."""

from __future__ import annotations

import optax

__all__ = ["warmup_cosine"]


def warmup_cosine(peak_lr: float, warmup_steps: int, total_steps: int, *, init_lr: float = 0.0,
                  end_lr: float = 0.0) -> optax.Schedule:
    """Linear warmup from `init_lr` to `peak_lr` over `warmup_steps`, then cosine decay to
    `end_lr` at `total_steps`.

    `lr(t) = init + (peak - init) t / W` for `t < W`, then
    `lr(t) = end + (peak - end) (1 + cos(pi (t - W) / (T - W))) / 2`.

    Short runs are handled: the warmup is clipped to `total_steps - 1` and the decay
    spans at least one step, so `smoke` configs with a few steps get a valid schedule.
    """
    total = max(int(total_steps), 2)
    warmup = min(max(int(warmup_steps), 0), total - 1)
    return optax.warmup_cosine_decay_schedule(init_lr, peak_lr, warmup, total, end_value=end_lr)
