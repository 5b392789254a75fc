"""An exponential moving average of a model's weights while it trains (Polyak
averaging; timm's `ModelEmaV2`, TensorFlow's `ExponentialMovingAverage`).

    from zoo.training.ema import WeightAverage
    average = WeightAverage(0.999)
    fit(model, train, val, callbacks=[average], ...)
    average.swap_in(model)         # the averaged weights, to evaluate or keep

After every training step the average moves towards the weights:
`average = d·average + (1 - d)·weights`, with `d = min(decay, (1 + t) / (10 + t))` at
step t, so that a short run's average is not dominated by its random start (timm's
warm-up). Every weight is averaged, BatchNorm's moving statistics too; a frozen weight
averages to itself. The average lives in host memory beside the model (one more copy of
its weights) and is not checkpointed: a resumed run starts it again from the weights it
resumes with. Backend-agnostic Keras.
"""

from __future__ import annotations

import keras
import numpy as np


class WeightAverage(keras.callbacks.Callback):
    """Keeps `average`, the exponential moving average of the model's weights (in
    `model.get_weights()` order), updated after every training batch."""

    def __init__(self, decay):
        super().__init__()
        if not 0 < decay < 1:
            raise ValueError(f"`decay` must be in (0, 1), e.g. 0.999. Received: decay={decay!r}")
        self.decay = float(decay)
        self.average = None
        self.steps = 0

    def on_train_begin(self, logs=None):
        if self.average is None:
            self.average = [np.array(w, dtype="float64") for w in self.model.get_weights()]

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        decay = min(self.decay, (1.0 + self.steps) / (10.0 + self.steps))
        for index, weight in enumerate(self.model.get_weights()):
            if weight.dtype.kind == "f":
                self.average[index] *= decay
                self.average[index] += (1.0 - decay) * weight
            else:  # a counter or a seed is not a weight to average
                self.average[index] = np.array(weight)

    def weights(self, model):
        """The averaged weights, cast to the dtypes of `model`'s."""
        return [a.astype(w.dtype) for a, w in zip(self.average, model.get_weights())]

    def swap_in(self, model):
        """Put the averaged weights into `model`; returns the weights it had."""
        before = model.get_weights()
        model.set_weights(self.weights(model))
        return before
