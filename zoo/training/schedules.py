"""Learning-rate schedules as pure functions of training progress (fastai's habit).

`one_cycle(progress)` is a plain function of a fraction in [0, 1]; `OneCycle` wraps it as
a Keras schedule of the optimizer's step, so it works with any optimizer and backend
and resumes correctly from a checkpointed step count.
"""

import math

import keras
from keras import ops


def one_cycle(progress, max_lr, pct_start=0.25, div=25.0, div_final=1e4, xp=math):
    """Cosine warm-up from `max_lr/div` to `max_lr`, then cosine down to `max_lr/div_final`."""
    start, end = max_lr / div, max_lr / div_final

    def cos_anneal(a, b, t):
        return b + (a - b) * (1 + xp.cos(math.pi * t)) / 2

    if pct_start <= 0:  # no warm-up: start at the peak and anneal (fastai's flat-cos end)
        return cos_anneal(max_lr, end, progress if xp is math else ops.clip(progress, 0.0, 1.0))
    if xp is math:
        if progress < pct_start:
            return cos_anneal(start, max_lr, progress / pct_start)
        return cos_anneal(max_lr, end, (progress - pct_start) / (1 - pct_start))
    warm = cos_anneal(start, max_lr, ops.minimum(progress / pct_start, 1.0))
    cool = cos_anneal(max_lr, end, ops.clip((progress - pct_start) / (1 - pct_start), 0.0, 1.0))
    return ops.where(progress < pct_start, warm, cool)


@keras.saving.register_keras_serializable(package="zoo")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle schedule over `total_steps` optimizer steps.

    Args:
        max_lr: float. Peak learning rate.
        total_steps: int. Steps of the whole cycle.
        pct_start: float. Fraction of the cycle spent warming up. Defaults to `0.25`.
        div: float. Starting rate is `max_lr / div`. Defaults to `25`.
        div_final: float. Final rate is `max_lr / div_final`. Defaults to `1e4`.
    """

    def __init__(self, max_lr, total_steps, pct_start=0.25, div=25.0, div_final=1e4):
        self.max_lr = float(max_lr)
        self.total_steps = int(max(total_steps, 1))
        self.pct_start = float(pct_start)
        self.div = float(div)
        self.div_final = float(div_final)

    def __call__(self, step):
        progress = ops.minimum(ops.cast(step, "float32") / self.total_steps, 1.0)
        return one_cycle(progress, self.max_lr, self.pct_start, self.div, self.div_final, xp=ops)

    def get_config(self):
        return {
            "max_lr": self.max_lr, "total_steps": self.total_steps, "pct_start": self.pct_start,
            "div": self.div, "div_final": self.div_final,
        }
