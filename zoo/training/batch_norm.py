"""Precise BatchNorm: a trained BatchNorm layer's statistics recomputed from the training
data with the weights as they are now (Wu & Johnson, "Rethinking 'Batch' in BatchNorm",
2021, section 3).

A BatchNorm layer normalises with the statistics of its batch while training and with
its moving averages at inference. The averages follow the batches with momentum 0.99
(Keras' default): about 100 steps to forget where they started. A run of a few dozen
steps (a small folder, a short fine-tune) ends with averages still near their start,
zeros and ones for a model trained from scratch, and a model that answers one class
for every image although it trained well. Recomputing them once the weights have
moved fixes that, and costs a forward pass over a few dozen batches.

    from zoo.training.batch_norm import recalibrate_batch_norm
    recalibrate_batch_norm(model, train, batch_size=32)   # batches used

`RecalibrateBatchNorm` does it in `fit` after every epoch, before the validation pass
(so that the best epoch is picked, and checkpointed, with statistics that fit it).
Layers with `trainable=False` (a frozen base, BatchNorm kept in inference mode) keep
their statistics: only what trained is recomputed. Backend-agnostic Keras.
"""

from __future__ import annotations

import keras

from zoo.training.data import batches

RECALIBRATION_BATCHES = 100  # batches a recalibration averages over, at most (Wu & Johnson: ~ 10^3-10^4 images)
FEW_STEPS = 50  # below this many training steps, BatchNorm's moving averages barely leave their start


def trained_batch_norm_layers(model):
    """The model's BatchNormalization layers that train (nested models included)."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


def recalibrate_batch_norm(model, data, batch_size=32, max_batches=RECALIBRATION_BATCHES):
    """Recompute the moving mean and variance of every trainable BatchNorm layer of
    `model` as the plain average of their batch statistics over up to `max_batches`
    batches of `data` (`(x, y)` arrays or a dataset of batches), weights unchanged.

    The model runs in training mode, so each layer sees the inputs it saw in training;
    a layer's momentum is set so that its moving average is the cumulative one
    (`(k - 1) / k` at batch k) and then restored. Returns the batches used (0 when the
    model has no trainable BatchNorm layer)."""
    layers = trained_batch_norm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    used = 0
    try:
        for images, _ in batches(data, batch_size):
            used += 1
            for layer in layers:
                layer.momentum = (used - 1) / used
            # A model built as keras.Model([input], ...) takes a list (else it warns per call).
            model([images] if isinstance(model.input, list) else images, training=True)
            if used >= max_batches:
                break
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return used


class RecalibrateBatchNorm(keras.callbacks.Callback):
    """`recalibrate_batch_norm` after each epoch's training steps: before its
    validation pass when it has one, else at the epoch's end. `fit` runs it ahead of
    the run's own callbacks (`runs_first`), so that the checkpoint holds the
    recalibrated statistics."""

    runs_first = True

    def __init__(self, data, batch_size=32, max_batches=RECALIBRATION_BATCHES):
        super().__init__()
        self.data, self.batch_size, self.max_batches = data, batch_size, max_batches
        self._done = False
        self.batches_used = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._done = False

    def on_test_begin(self, logs=None):
        self._recalibrate()

    def on_epoch_end(self, epoch, logs=None):
        self._recalibrate()

    def _recalibrate(self):
        if not self._done:
            self.batches_used = recalibrate_batch_norm(self.model, self.data, self.batch_size, self.max_batches)
            self._done = True
