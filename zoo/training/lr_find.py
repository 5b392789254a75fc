"""The learning-rate range test (Smith, 2015; fastai's `lr_find`), run through `fit`.

`LRFinder` (a callback) raises the rate every step and records the loss; `lr_find`
runs it through `zoo.training.fit` like any other training, then suggests a rate. The
one learning-rate finder in zoo: `zoo lr-find` and `--lr auto` are this sweep over a new
head on cached features (`features=zoo.transfer.cached_features(model)`).
The suggestion is fastai's "valley": two thirds of the way down the longest stretch
where the loss keeps falling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from zoo.training import data as data_forms
from zoo.training.callbacks import LRFinder
from zoo.training.data import compute_features
from zoo.training.fit import Defaults, Tracking, fit


@dataclass
class LRFindResult:
    lrs: list
    losses: list
    suggestion: float
    suggestions: dict = field(default_factory=dict)

    def plot(self, path):
        from zoo.plots import plot_lr_find

        return plot_lr_find(self, path)


def valley(lrs, losses):
    """fastai's valley: the longest run of descending loss, then 2/3 of the way down it."""
    n = len(losses)
    if n < 3:
        return lrs[int(np.argmin(losses))]
    lengths = [1] * n
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lengths[i] < lengths[j] + 1:
                lengths[i] = lengths[j] + 1
    end = int(np.argmax(lengths))
    start = end - lengths[end] + 1
    index = start + int((end - start) * 2 / 3)
    return float(lrs[index])


def suggest(lrs, losses):
    """`(suggestion, {valley, minimum, steep})` from a sweep's rates and smoothed losses."""
    lrs_a, losses_a = np.array(lrs, dtype="float64"), np.array(losses, dtype="float64")
    finite = np.isfinite(losses_a)
    lrs_a, losses_a = lrs_a[finite], losses_a[finite]
    if not len(losses_a):
        raise ValueError("The learning-rate sweep produced no finite loss.")
    suggestions = {"valley": valley(list(lrs_a), list(losses_a)),
                   "minimum": float(lrs_a[int(np.argmin(losses_a))] / 10)}
    # The first steps' smoothed loss is still mostly the bias correction, and the last
    # ones are the divergence: the steepest descent is looked for between them.
    start, end = max(1, len(losses_a) // 10), max(len(losses_a) - 3, 0)
    if end - start > 2:
        slopes = np.gradient(losses_a[start:end], np.log(lrs_a[start:end]))
        suggestions["steep"] = float(lrs_a[start + int(np.argmin(slopes))])
    return suggestions["valley"], suggestions, lrs_a, losses_a


def lr_find(model, train, start_lr=1e-7, end_lr=10.0, num_steps=100, batch_size=32, diverge=4.0,
            defaults=None, features=None, plot=None, seed=0):
    """Sweep the learning rate over `model` as it is set (frozen or not) and suggest one.

    The sweep is `fit` with an `LRFinder` callback and one batch per epoch; the weights
    are restored afterwards.

    Args:
        model: keras.Model.
        train: `(x, y)` arrays, a dataset of batches, or an iterable of them.
        start_lr, end_lr: floats. The sweep's range. Defaults to `1e-7` and `10`.
        num_steps: int. Training steps in the sweep. Defaults to `100`.
        batch_size: int. Batch size for array data.
        diverge: float. Stop when the smoothed loss exceeds `diverge` x its minimum.
        defaults: `zoo.training.Defaults` (the loss to sweep). Defaults to a classifier's.
        features: None, or `(extractor, trainer)`: two models splitting `model` where
            everything before is frozen. The extractor runs once over `train` and the
            sweep trains only `trainer` on its outputs — the same sweep at a fraction of
            the compute (`zoo.transfer.cached_features(model)` gives the pair, or None
            when the base still trains).
        plot: path or None. Where to save the loss-vs-rate plot (PNG).
        seed: int. The order the batches are drawn in.

    Returns:
        `LRFindResult` with `lrs`, `losses` (smoothed), `suggestion` (the valley) and
        `suggestions`: `valley`; `minimum`, the rate of the lowest loss divided by 10
        (fastai's habit: the minimum itself is already too high); `steep`, the rate of
        steepest descent.
    """
    defaults = (defaults or Defaults.classifier()).replace(
        optimizer=keras.optimizers.Adam(learning_rate=start_lr), metrics=())
    if features is not None:
        extractor, model = features
        train = compute_features(extractor, train, batch_size)
    finder = LRFinder(start_lr, end_lr, num_steps, diverge)
    fit(model, data_forms.forever(train, batch_size, seed=seed), epochs=num_steps, steps_per_epoch=1,
        defaults=defaults, tracking=Tracking.off(), callbacks=[finder], verbose=0)
    suggestion, suggestions, lrs, losses = suggest(finder.lrs, finder.losses)
    result = LRFindResult(list(map(float, lrs)), list(map(float, losses)), suggestion, suggestions)
    if plot:
        result.plot(plot)
    return result
