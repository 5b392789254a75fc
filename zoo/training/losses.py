"""Losses the tasks' defaults name that Keras does not ship in the form they need.

Keras 3's `SparseCategoricalCrossentropy` takes class ids but has no label smoothing
(only the one-hot `CategoricalCrossentropy` has); zoo's classifiers keep class ids
(the datasets, the metrics and the confusion matrix all use them), so smoothing is
written here for ids. Backend-agnostic Keras ops.
"""

from __future__ import annotations

import keras
from keras import ops

EPSILON = 1e-7  # the clip Keras applies to probabilities before the log


def sparse_crossentropy(label_smoothing=0.0, soft_labels=False):
    """The classifier's loss on probabilities and class ids: Keras' sparse categorical
    crossentropy, or with `label_smoothing` ε the crossentropy against the smoothed
    target `(1 - ε)·one_hot(y) + ε / K` (Szegedy et al. 2016, section 7), which is
    `(1 - ε)·(-log p_y) + ε·mean_k(-log p_k)`: the same as Keras'
    `CategoricalCrossentropy(label_smoothing=ε)` on one-hot labels. With
    `soft_labels` (MixUp, CutMix: `zoo.data.mix_batches`) the training batches carry
    label distributions instead of ids, and the loss takes either (validation batches
    keep their ids)."""
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"`label_smoothing` must be in [0, 1). Received: label_smoothing={label_smoothing!r}")
    if not label_smoothing and not soft_labels:
        return "sparse_categorical_crossentropy"
    return SmoothedSparseCrossentropy(label_smoothing)


def _is_distribution(y_true, y_pred):
    """Whether `y_true` holds label distributions (one row per example, one column per
    class) rather than class ids; decided on the static ranks, at trace time."""
    return len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == y_pred.shape[-1] and y_pred.shape[-1] != 1


# Registered, so that a model compiled with them can be compiled again from its own
# compile config (`zoo.training.recompile`, after freezing or unfreezing).
@keras.saving.register_keras_serializable(package="zoo")
def class_accuracy(y_true, y_pred):
    """Accuracy against class ids or label distributions (the largest share counts as
    the class): the one "accuracy" for batches of either kind."""
    predicted = ops.argmax(y_pred, axis=-1)
    truth = ops.argmax(y_true, axis=-1) if _is_distribution(y_true, y_pred) else ops.reshape(y_true, (-1,))
    return ops.cast(ops.equal(ops.cast(truth, "int32"), ops.cast(predicted, "int32")), "float32")


@keras.saving.register_keras_serializable(package="zoo")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Crossentropy of probabilities against class ids, or label distributions, with
    label smoothing (see `sparse_crossentropy`), averaged over the batch as Keras'
    losses are."""

    def __init__(self, label_smoothing, name="smoothed_sparse_categorical_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        log_p = ops.log(ops.clip(ops.cast(y_pred, "float32"), EPSILON, 1.0 - EPSILON))
        if _is_distribution(y_true, y_pred):
            nll = -ops.sum(ops.cast(y_true, "float32") * log_p, axis=-1)
        else:
            ids = ops.cast(ops.reshape(y_true, (-1, 1)), "int32")
            nll = -ops.take_along_axis(log_p, ids, axis=-1)[:, 0]
        return (1.0 - self.label_smoothing) * nll + self.label_smoothing * -ops.mean(log_p, axis=-1)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


# ----------------------------------------------------------------- segmentation
def _pixel_labels(y_true, y_pred):
    """Class ids per pixel, int32 `(N, H, W)`, from masks `(N, H, W)` or `(N, H, W, 1)`."""
    labels = ops.cast(y_true, "int32")
    if len(labels.shape) == len(y_pred.shape):
        labels = ops.squeeze(labels, axis=-1)
    return labels


@keras.saving.register_keras_serializable(package="zoo")
class MaskedSparseCrossentropy(keras.losses.Loss):
    """Crossentropy of per-pixel probabilities `(N, H, W, K)` against masks of class
    ids `(N, H, W)`, pixels equal to `ignore_index` left out: the mean over the batch's
    counted pixels (PyTorch's `CrossEntropyLoss(ignore_index=...)`), whatever share of
    each image is ignored."""

    def __init__(self, ignore_index=255, name="masked_sparse_categorical_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_index = int(ignore_index)

    def call(self, y_true, y_pred):
        labels = _pixel_labels(y_true, y_pred)
        valid = ops.not_equal(labels, self.ignore_index)
        safe = ops.where(valid, labels, ops.zeros_like(labels))
        log_p = ops.log(ops.clip(ops.cast(y_pred, "float32"), EPSILON, 1.0 - EPSILON))
        nll = -ops.squeeze(ops.take_along_axis(log_p, ops.expand_dims(safe, -1), axis=-1), axis=-1)
        nll = ops.where(valid, nll, ops.zeros_like(nll))
        per_image = ops.sum(ops.reshape(nll, (ops.shape(nll)[0], -1)), axis=-1)
        counted = ops.maximum(ops.sum(ops.cast(valid, "float32")), 1.0)
        # Keras averages what this returns over the batch: n·Σ/counted averages to Σ/counted.
        return per_image * ops.cast(ops.shape(nll)[0], "float32") / counted

    def get_config(self):
        return {**super().get_config(), "ignore_index": self.ignore_index}


@keras.saving.register_keras_serializable(package="zoo")
class PixelAccuracy(keras.metrics.Metric):
    """The share of counted pixels (not `ignore_index`) whose likeliest class is the mask's."""

    def __init__(self, ignore_index=255, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_index = int(ignore_index)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct", dtype="float32")
        self.counted = self.add_variable(shape=(), initializer="zeros", name="counted", dtype="float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = _pixel_labels(y_true, y_pred)
        valid = ops.not_equal(labels, self.ignore_index)
        hit = ops.logical_and(valid, ops.equal(labels, ops.cast(ops.argmax(y_pred, axis=-1), "int32")))
        self.correct.assign_add(ops.sum(ops.cast(hit, "float32")))
        self.counted.assign_add(ops.sum(ops.cast(valid, "float32")))

    def result(self):
        return self.correct / ops.maximum(self.counted, 1.0)

    def reset_state(self):
        self.correct.assign(0.0)
        self.counted.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "ignore_index": self.ignore_index}
