"""The forms of training data `zoo.training.fit` takes, and what it needs to know of them.

Data is a tuple of arrays `(x, y)`, one array `x` (a model with no targets), a `tf.data.Dataset` of batches, or any other
iterable of batches (a generator, a `keras.utils.PyDataset`). Nothing here imports
TensorFlow: a dataset is only iterated and asked for its `cardinality()`.
"""

from __future__ import annotations

import numpy as np


def is_arrays(data):
    """Whether `data` is an `(x, y)` tuple of arrays (not a dataset of batches)."""
    return isinstance(data, tuple) and len(data) == 2 and hasattr(data[0], "shape")


def is_array(data):
    """Whether `data` is one array of inputs with no targets (a GAN's real images)."""
    return hasattr(data, "shape") and hasattr(data, "dtype") and not isinstance(data, tuple)


def num_batches(data, batch_size):
    """Batches in one pass over `data` (iterating it once if it cannot say)."""
    known = known_num_batches(data, batch_size)
    return known if known is not None else sum(1 for _ in data)


def known_num_batches(data, batch_size):
    """Batches in one pass over `data` if it can say without being iterated, else None."""
    if is_arrays(data):
        return int(np.ceil(len(data[0]) / batch_size))
    if is_array(data):
        return int(np.ceil(len(data) / batch_size))
    cardinality = getattr(data, "cardinality", None)
    if cardinality is not None:
        count = int(cardinality())
        if count > 0:
            return count
    if getattr(data, "__len__", None) is not None:
        return len(data)
    return None


def batches(data, batch_size):
    """Yield `(x, y)` batches from arrays or a dataset, in order."""
    if is_arrays(data):
        x, y = data
        for start in range(0, len(x), batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]
    else:
        for batch in data:
            yield batch[0], batch[1]


def forever(data, batch_size, seed=0):
    """Batches without end: arrays are reshuffled each pass, a dataset is re-iterated."""
    rng = np.random.default_rng(seed)
    while True:
        if is_arrays(data):
            order = rng.permutation(len(data[0]))
            source = (np.asarray(data[0])[order], np.asarray(data[1])[order])
        else:
            source = data
        produced = False
        for xb, yb in batches(source, batch_size):
            produced = True
            yield np.asarray(xb), np.asarray(yb)
        if not produced:
            raise ValueError("The training data yielded no batches.")


def keras_fit_args(data, batch_size, shuffle=True):
    """Keyword arguments for `keras.Model.fit` that feed it `data`."""
    if is_arrays(data):
        return {"x": data[0], "y": data[1], "batch_size": batch_size, "shuffle": shuffle}
    if is_array(data):
        return {"x": data, "batch_size": batch_size, "shuffle": shuffle}
    return {"x": data, "shuffle": False}  # a dataset shuffles itself


def validation(data):
    """`validation_data` for `keras.Model.fit`."""
    if data is None:
        return None
    return (data[0], data[1]) if is_arrays(data) else data


def augmented(data):
    """Whether `data` may be augmented: True unless it says otherwise (or is arrays)."""
    if data is None or is_arrays(data):
        return False
    return bool(getattr(data, "augmented", True))


def compute_features(extractor, data, batch_size=32):
    """Run `extractor` (a frozen part of a model) once over `data`; returns
    `(features, labels)` arrays, to train what follows it on."""
    features, labels = [], []
    for x, y in batches(data, batch_size):
        features.append(np.asarray(extractor.predict_on_batch(np.asarray(x))))
        labels.append(np.asarray(y))
    return np.concatenate(features), np.concatenate(labels)
