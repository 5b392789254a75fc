"""The learning-rate range test (Smith, 2015; fastai's `lr_find`).

Train for a short while with the learning rate growing exponentially, record the loss,
stop once it diverges, and restore the weights. The suggestion is fastai's "valley":
the middle of the longest stretch where the loss keeps falling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from zoo.transfer.fine_tune import (_batches, _is_arrays, augmented, compute_features, feature_extractor,
                                    head_model)
from zoo.transfer.freeze import base_layers, head_layers


@dataclass
class LRFindResult:
    lrs: list
    losses: list
    suggestion: float
    suggestions: dict = field(default_factory=dict)

    def plot(self, path):
        from zoo.plots import plot_lr_find

        return plot_lr_find(self, path)


def _valley(lrs, losses):
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


def lr_find(model, train, start_lr=1e-7, end_lr=10.0, num_steps=100, batch_size=32,
            cache_features="auto", diverge=4.0, plot=None):
    """Sweep the learning rate and suggest one.

    Trains `model` as it is set (frozen or not), on cached features when its base is
    frozen and `train` is not augmented (see `fine_tune`). Weights are restored after.

    Args:
        model: keras.Model.
        train: a dataset of `(images, labels)` batches, or a tuple of arrays.
        start_lr, end_lr: floats. The sweep's range. Defaults to `1e-7` and `10`.
        num_steps: int. Training steps in the sweep. Defaults to `100`.
        cache_features: "auto", True or False.
        diverge: float. Stop when the smoothed loss exceeds `diverge` x its minimum.
        plot: path or None. Where to save the loss-vs-rate plot (PNG).

    Returns:
        `LRFindResult` with `lrs`, `losses` (smoothed), `suggestion` and `suggestions`
        (`valley`, `minimum` = the lowest loss's rate / 10, `steep` = steepest descent).
    """
    import keras

    frozen_base = head_layers(model) and not any(layer.trainable_weights for layer in base_layers(model))
    use_cache = frozen_base and ((not augmented(train)) if cache_features == "auto" else bool(cache_features))
    if use_cache:
        x, y = compute_features(feature_extractor(model), train, batch_size)
        trainer = head_model(model)
        data = (x, y)
    else:
        trainer, data = model, train

    saved = [np.array(w) for w in trainer.weights]
    optimizer = keras.optimizers.Adam(learning_rate=start_lr)
    trainer.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    ratio = (end_lr / start_lr) ** (1.0 / max(num_steps - 1, 1))
    lrs, losses = [], []
    smoothed, best, beta = 0.0, np.inf, 0.98
    step = 0
    try:
        while step < num_steps:
            batches = _batches(_shuffled(data) if _is_arrays(data) else data, batch_size)
            for xb, yb in batches:
                lr = start_lr * ratio**step
                optimizer.learning_rate.assign(lr)
                # A scalar on TensorFlow, a one-element list on JAX.
                loss = float(np.ravel(trainer.train_on_batch(np.asarray(xb), np.asarray(yb)))[0])
                step += 1
                smoothed = beta * smoothed + (1 - beta) * loss
                value = smoothed / (1 - beta**step)
                lrs.append(lr)
                losses.append(value)
                best = min(best, value)
                if not np.isfinite(value) or value > diverge * best or step >= num_steps:
                    raise StopIteration
    except StopIteration:
        pass
    finally:
        for variable, value in zip(trainer.weights, saved):
            variable.assign(value)

    lrs_a, losses_a = np.array(lrs), np.array(losses)
    finite = np.isfinite(losses_a)
    lrs_a, losses_a = lrs_a[finite], losses_a[finite]
    suggestions = {"valley": _valley(list(lrs_a), list(losses_a))}
    if len(losses_a):
        suggestions["minimum"] = float(lrs_a[int(np.argmin(losses_a))] / 10)
    if len(losses_a) > 2:
        slopes = np.gradient(losses_a, np.log(lrs_a))
        suggestions["steep"] = float(lrs_a[int(np.argmin(slopes))])
    result = LRFindResult(list(map(float, lrs_a)), list(map(float, losses_a)), suggestions["valley"], suggestions)
    if plot:
        result.plot(plot)
    return result


def _shuffled(data):
    x, y = data
    order = np.random.permutation(len(x))
    return x[order], y[order]
