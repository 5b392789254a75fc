"""Augmentation as Keras preprocessing layers that take and give uint8 images.

The model's first layer normalises (see `zoo.architectures.preprocessing`), so augmentation must
hand it the same 0..255 uint8 pixels an un-augmented batch has: the layers work in
float inside and the result is rounded and clipped back to uint8.
"""

from __future__ import annotations


def default_augmentation(
    flip="horizontal", rotation=0.05, zoom=0.1, contrast=0.2, seed=None
):
    """The default augmentation: flip, small rotation, zoom and contrast change.

    Vertical flips are off by default: most photos have an up, and a flipped cat is
    not a cat a user will ever show the model.

    Args:
        flip: str or None. `"horizontal"`, `"vertical"`, `"horizontal_and_vertical"`
            or `None` for no flip. Defaults to `"horizontal"`.
        rotation: float. Largest rotation as a fraction of a full turn. Defaults to
            `0.05` (18 degrees).
        zoom: float. Largest zoom in or out, as a fraction of the size. Defaults to
            `0.1`.
        contrast: float. Largest contrast change factor. Defaults to `0.2`.
        seed: int or None. Seed for the random layers. Defaults to `None`.

    Returns:
        A `keras.Sequential` working on float images in 0..255.
    """
    import keras

    layers = []
    if flip:
        layers.append(keras.layers.RandomFlip(flip, seed=seed))
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation, fill_mode="reflect", seed=seed))
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, fill_mode="reflect", seed=seed))
    if contrast:
        layers.append(keras.layers.RandomContrast(contrast, value_range=(0, 255), seed=seed))
    return keras.Sequential(layers, name="zoo_augmentation")


def resolve_augmentation(augment, seed=None):
    """`augment` argument → a layer or None.

    `True` gives `default_augmentation(seed=seed)`, `False`/`None` gives None, and a
    `keras.layers.Layer` (or any callable taking a float batch) is used as is.
    """
    if augment is None or augment is False:
        return None
    if augment is True:
        return default_augmentation(seed=seed)
    if callable(augment):
        return augment
    raise ValueError(
        "`augment` must be True, False or a keras.layers.Layer. "
        f"Received: augment={augment!r}"
    )


def apply_uint8(layer, images):
    """Run `layer` on a uint8 batch in tf.data, giving uint8 back (round and clip)."""
    import tensorflow as tf

    import keras

    images = tf.cast(images, tf.float32)
    # Keras' random layers are identity unless told they are training.
    out = layer(images, training=True) if isinstance(layer, keras.layers.Layer) else layer(images)
    return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)
