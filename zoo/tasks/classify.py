"""Classify images with a registry model (or any zoo image model).

    >>> import zoo
    >>> zoo.classify(["cat.jpg", "digit.png"], model="vgg19", top=5)
    [{'image': 'cat.jpg', 'predictions': [{'label': 'tabby cat', 'class_id': 281,
      'probability': 0.61}, ...]}, {'image': 'digit.png', 'error': '...'}]

Images are read with Pillow (any mode becomes RGB; JPEGs decoded at reduced scale when
they are much larger than the model's input) on a small thread pool, resized to the
model's input and sent as uint8 batches (the model normalises in its first layer).
Decoding the next batch overlaps with the model running on this one. The forward pass
is one compiled function per model, traced once for any batch size and reused; a
registry model is built once per process.
"""

from __future__ import annotations

import functools
import os
import weakref

import numpy as np

from zoo.data.pillow import image_items, load_many, results_in_order


@functools.lru_cache(maxsize=4)
def registry_model(name, weights):
    from zoo.models import create

    return create(name, weights=weights)


def file_loader():
    """On the TensorFlow backend, files are decoded and resized by the same graph
    function as the training pipeline and the exported bytes signatures, so a photo
    gets the same scores here as from `zoo serve` or TF Serving. Elsewhere (JAX without
    TensorFlow) Pillow reads them."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return None
    from zoo.data.images import load_like_the_pipeline

    return load_like_the_pipeline


def require_pretrained(name):
    """A model with no published weights would print confident labels from random ones."""
    from zoo.errors import WeightsError
    from zoo.models import get_spec

    spec = get_spec(name)
    if spec.default_weights is None:
        raise WeightsError(
            f"{spec.name} has no pretrained weights, so its labels would come from random weights. "
            f"Pass a weights file of yours (--weights FILE, or weights=... in Python), or classify with a "
            f"model that has them: zoo list shows each model's weights."
        )


def class_names(model, name, labels, num_outputs):
    if labels is not None:
        labels = list(labels)
    elif name is not None:
        from zoo.models import labels as registry_labels

        labels = registry_labels(name)
    if labels is None or len(labels) != num_outputs:
        return [str(i) for i in range(num_outputs)]
    return labels


_FORWARD = weakref.WeakKeyDictionary()


def forward_function(model):
    """`batch -> probabilities`, compiled once per model and kept with it.

    On the TensorFlow backend this is a `tf.function` with a `(None, H, W, 3)` input
    signature, so batches of any size reuse one trace (Keras' `predict` builds a
    tf.data pipeline and iterator on every call, which costs more than the model on
    small inputs). Other backends use `predict_on_batch`, Keras' compiled path.
    """
    forward = _FORWARD.get(model)
    if forward is not None:
        return forward
    import keras

    if keras.backend.backend() == "tensorflow" and len(model.inputs) == 1:
        import tensorflow as tf

        spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), model.inputs[0].dtype)
        # A weak reference: the cache entry must not keep its own key (the model) alive.
        model_ref = weakref.ref(model)

        @tf.function(input_signature=[spec])
        def compiled(batch):
            return model_ref()(batch, training=False)

        def forward(batch):
            return np.asarray(compiled(tf.convert_to_tensor(batch, dtype=spec.dtype)))
    else:

        def forward(batch):
            return np.asarray(model.predict_on_batch(batch))

    _FORWARD[model] = forward
    return forward


def _dtype_of(model):
    dtype = str(getattr(model.inputs[0], "dtype", "uint8") or "uint8")
    return "uint8" if "uint8" in dtype else "float32"


def classify(images, model="vgg19", top=5, weights="default", labels=None, batch_size=32, tta=False):
    """Top-`top` labels for each image.

    Args:
        images: a path, or a list of paths, PIL images or `(H, W, 3)` arrays. A folder
            stands for the image files under it.
        model: str or keras.Model. A registry name, or a model taking uint8 RGB.
            Defaults to `"vgg19"`.
        top: int. How many labels per image. Defaults to `5`.
        weights: the registry weights to load for a named model (a variant name or a
            file path). Defaults to the model's default variant; a model that has
            none (AlexNet) needs weights named, or it would label from random ones.
        labels: list of str or None. Class names; defaults to the registry's labels.
        batch_size: int. Images per forward pass. Defaults to `32`.
        tta: bool. Test-time augmentation: average the probabilities of the
            `TTA_VIEWS` of each image (`tta_views`). Defaults to `False`.

    Returns:
        A list with one dict per image, in input order: `{"image", "predictions":
        [{"label", "class_id", "probability"}]}`, or `{"image", "error"}` for an image
        that could not be read (the others are still classified).
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"`top` must be a positive int. Received: top={top!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}")

    name = None
    if isinstance(model, str):
        name = model.lower()
        if weights == "default":
            require_pretrained(name)
        model = registry_model(name, weights if not isinstance(weights, os.PathLike) else os.fspath(weights))
    size = tuple(model.inputs[0].shape[1:3])
    forward = forward_function(model)
    dtype = _dtype_of(model)
    return classify_batches(images, lambda batch: forward(batch.astype(dtype, copy=False)), size,
                            lambda num_outputs: class_names(model, name, labels, num_outputs), top=top,
                            batch_size=batch_size, tta=tta)


# Test-time augmentation's views of an image at the model's size: itself, its mirror
# image, and five crops of 90 % of its side (the centre and the four corners) scaled
# back up: the flip + crops that fastai's and timm's TTA average.
TTA_VIEWS = ("original", "flip", "center", "top_left", "top_right", "bottom_left", "bottom_right")
TTA_CROP = 0.9


def tta_views(batch):
    """`{view: uint8 batch}` for each of `TTA_VIEWS` of a uint8 `(N, H, W, 3)` batch;
    crops are resized back to H x W (bilinear)."""
    from PIL import Image

    batch = np.asarray(batch)
    height, width = batch.shape[1:3]
    crop_h, crop_w = max(1, round(height * TTA_CROP)), max(1, round(width * TTA_CROP))
    corners = {"center": ((height - crop_h) // 2, (width - crop_w) // 2), "top_left": (0, 0),
               "top_right": (0, width - crop_w), "bottom_left": (height - crop_h, 0),
               "bottom_right": (height - crop_h, width - crop_w)}
    views = {"original": batch, "flip": batch[:, :, ::-1]}
    for name, (top, left) in corners.items():
        views[name] = np.stack([np.asarray(Image.fromarray(image[top:top + crop_h, left:left + crop_w])
                                           .resize((width, height), Image.BILINEAR)) for image in batch])
    return views


def tta_forward(forward):
    """`forward` averaged over `tta_views` of each batch."""
    return lambda batch: np.mean([np.asarray(forward(view)) for view in tta_views(batch).values()], axis=0)


def classify_batches(images, forward, size, names_for, top=5, batch_size=32, tta=False):
    """`classify`'s loop for any forward pass (a Keras model, or an exported LiteRT or
    ONNX file): images decoded ahead on threads and resized to `size`, uint8 batches
    of up to `batch_size` through `forward(batch) -> probabilities` (averaged over
    `tta_views` with `tta`), the top `top` labels of `names_for(num_outputs)`, one row
    per image in input order."""
    if tta:
        forward = tta_forward(forward)
    images = image_items(images)
    errors, chunks, pending = {}, [], []
    for index, array, error in load_many(images, size, load_file=file_loader()):
        if error is not None:
            errors[index] = error
            continue
        pending.append(array)
        if len(pending) == batch_size:
            chunks.append(np.asarray(forward(np.stack(pending))))
            pending = []
    if pending:
        chunks.append(np.asarray(forward(np.stack(pending))))
    if chunks:
        probabilities = np.concatenate(chunks)
        names = names_for(probabilities.shape[-1])
    else:
        probabilities, names = np.zeros((0, 0), "float32"), []
    k = min(top, len(names))

    def predictions(row, index, item):
        scores = probabilities[row]
        best = np.argsort(-scores, kind="stable")[:k]
        return {"predictions": [{"label": names[i], "class_id": int(i), "probability": float(scores[i])}
                                for i in best]}

    return results_in_order(images, errors, predictions)
