"""Learning-rate schedule of the paper ("Implementation"): the backbone UNet's rate rises from
1e-6 to 5e-5 over 100 warm-up steps (linear, as Goyal et al.), then stays; every other
trainable module is kept at 5e-4. Pure functions (no torch), so they are easy to test."""
from __future__ import annotations


def unet_lr(step: int, start: float = 1e-6, peak: float = 5e-5, warmup_steps: int = 100) -> float:
    """Learning rate of the UNet at optimizer step `step` (0-based)."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return peak
    return start + (peak - start) * step / warmup_steps


def other_lr(step: int, lr: float = 5e-4) -> float:
    return lr


def lr_multipliers(start: float, peak: float, warmup_steps: int):
    """LambdaLR factors (one per parameter group: UNet, others) for base rates (peak, other)."""
    return [lambda s: unet_lr(s, start, peak, warmup_steps) / peak, lambda s: 1.0]
