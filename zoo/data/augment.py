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


def mix_batches(dataset, num_classes, mixup=0.0, cutmix=0.0, seed=0):
    """MixUp (Zhang et al., 2018) and CutMix (Yun et al., 2019) on a dataset of
    `(uint8 images, class ids)` batches → `(uint8 images, float32 soft labels)`.

    Each batch is mixed with a permutation of itself, with λ ~ Beta(α, α) drawn per
    batch: MixUp blends the images (`λ·a + (1 - λ)·b`, rounded back to uint8) and the
    one-hot labels alike; CutMix pastes a box of `b` over `a` whose area is `1 - λ` of
    the image (clipped at the border) and weights the labels by the area actually
    pasted. With both α > 0 each batch gets one or the other, half the time each
    (timm's `switch_prob`). The draws are keyed by `(seed, batch index)`: the same seed
    mixes the same way every run.

    Args:
        dataset: a `tf.data.Dataset` of `(images, labels)` batches.
        num_classes: int. Length of the soft labels.
        mixup: float. MixUp's α (0: off).
        cutmix: float. CutMix's α (0: off).
        seed: int.

    Returns:
        The mixed `tf.data.Dataset`, marked `augmented` (a frozen phase cannot cache
        features of it).
    """
    import tensorflow as tf

    if mixup < 0 or cutmix < 0 or not (mixup or cutmix):
        raise ValueError(f"`mixup` and `cutmix` are alphas >= 0, one of them > 0. "
                         f"Received: mixup={mixup!r}, cutmix={cutmix!r}")

    def beta(alpha, key):
        a = tf.random.stateless_gamma([], key, alpha=alpha)
        b = tf.random.stateless_gamma([], key + [0, 1], alpha=alpha)
        return a / (a + b)

    def mix(index, batch):
        images, labels = batch
        key = tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)])
        size = tf.shape(images)[0]
        order = tf.argsort(tf.random.stateless_uniform([size], key + [0, 2]))
        one_hot = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), num_classes)
        pixels = tf.cast(images, tf.float32)
        use_cutmix = tf.constant(cutmix > 0) if not (mixup and cutmix) else \
            tf.random.stateless_uniform([], key + [0, 3]) < 0.5

        def blended():
            lam = beta(mixup, key + [0, 4])
            mixed = lam * pixels + (1.0 - lam) * tf.gather(pixels, order)
            return mixed, lam

        def pasted():
            lam = beta(cutmix, key + [0, 5])
            height, width = tf.shape(images)[1], tf.shape(images)[2]
            h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
            side = tf.sqrt(1.0 - lam)
            centre = tf.random.stateless_uniform([2], key + [0, 6])
            top = tf.cast(tf.clip_by_value(centre[0] * h - side * h / 2, 0, h), tf.int32)
            bottom = tf.cast(tf.clip_by_value(centre[0] * h + side * h / 2, 0, h), tf.int32)
            left = tf.cast(tf.clip_by_value(centre[1] * w - side * w / 2, 0, w), tf.int32)
            right = tf.cast(tf.clip_by_value(centre[1] * w + side * w / 2, 0, w), tf.int32)
            rows = tf.logical_and(tf.range(height) >= top, tf.range(height) < bottom)
            cols = tf.logical_and(tf.range(width) >= left, tf.range(width) < right)
            box = tf.cast(tf.logical_and(rows[:, None], cols[None, :]), tf.float32)[None, :, :, None]
            mixed = pixels * (1.0 - box) + tf.gather(pixels, order) * box
            area = tf.cast((bottom - top) * (right - left), tf.float32) / (h * w)
            return mixed, 1.0 - area

        mixed, lam = tf.cond(use_cutmix, pasted, blended)
        soft = lam * one_hot + (1.0 - lam) * tf.gather(one_hot, order)
        return tf.cast(tf.clip_by_value(tf.round(mixed), 0.0, 255.0), tf.uint8), soft

    mixed = dataset.enumerate().map(mix, num_parallel_calls=tf.data.AUTOTUNE)
    mixed.augmented = True
    return mixed
