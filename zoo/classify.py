"""Classify images with a registry model (or any zoo image model).

    >>> import zoo
    >>> zoo.classify(["cat.jpg", "digit.png"], model="vgg19", top=5)
    [{'image': 'cat.jpg', 'predictions': [{'label': 'tabby cat', 'class_id': 281,
      'probability': 0.61}, ...]}, {'image': 'digit.png', 'error': '...'}]

Images are read with Pillow (any mode becomes RGB), resized to the model's input and
batched; the batch goes through Keras' compiled predict path. The model is built once
per process and reused.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from zoo.images import as_batch


@functools.lru_cache(maxsize=4)
def _registry_model(name, weights):
    from zoo.registry import create

    return create(name, weights=weights)


def _resolve_labels(model, name, labels, num_outputs):
    if labels is not None:
        labels = list(labels)
    elif name is not None:
        from zoo.registry import labels as registry_labels

        labels = registry_labels(name)
    if labels is None or len(labels) != num_outputs:
        return [str(i) for i in range(num_outputs)]
    return labels


def predict_probabilities(model, batch, batch_size=32):
    """Class probabilities for a uint8 batch through Keras' compiled predict function."""
    if len(batch) == 0:
        return np.zeros((0, model.outputs[0].shape[-1]), dtype="float32")
    return np.asarray(model.predict(batch, batch_size=batch_size, verbose=0))


def classify(images, model="vgg19", top=5, weights="default", labels=None, batch_size=32):
    """Top-`top` labels for each image.

    Args:
        images: a path, or a list of paths, PIL images or `(H, W, 3)` arrays.
        model: str or keras.Model. A registry name, or a model taking uint8 RGB.
            Defaults to `"vgg19"`.
        top: int. How many labels per image. Defaults to `5`.
        weights: the registry weights to load for a named model (a variant name or a
            file path). Defaults to the model's default variant.
        labels: list of str or None. Class names; defaults to the registry's labels.
        batch_size: int. Images per forward pass. Defaults to `32`.

    Returns:
        A list with one dict per image, in input order: `{"image", "predictions":
        [{"label", "class_id", "probability"}]}`, or `{"image", "error"}` for an image
        that could not be read (the others are still classified).
    """
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    images = list(images)
    if not isinstance(top, int) or top < 1:
        raise ValueError(f"`top` must be a positive int. Received: top={top!r}")

    name = None
    if isinstance(model, str):
        name = model.lower()
        model = _registry_model(name, weights if not isinstance(weights, os.PathLike) else os.fspath(weights))
    size = tuple(model.inputs[0].shape[1:3])
    batch, errors = as_batch(images, size)
    probabilities = predict_probabilities(model, batch, batch_size=batch_size)
    class_names = _resolve_labels(model, name, labels, probabilities.shape[-1] if len(batch) else model.outputs[0].shape[-1])
    k = min(top, len(class_names))

    results, row = [], 0
    for index, item in enumerate(images):
        shown = os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"#{index}"
        if index in errors:
            results.append({"image": shown, "error": errors[index]})
            continue
        scores = probabilities[row]
        row += 1
        best = np.argsort(-scores, kind="stable")[:k]
        results.append(
            {
                "image": shown,
                "predictions": [
                    {"label": class_names[i], "class_id": int(i), "probability": float(scores[i])}
                    for i in best
                ],
            }
        )
    return results
