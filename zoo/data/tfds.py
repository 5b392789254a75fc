"""TensorFlow Datasets by name, as the same uint8 RGB batches `image_folder` gives.

    train, val, classes = zoo.data.tfds("tf_flowers", split=["train[:80%]", "train[80%:]"],
                                        image_size=224)
"""

from __future__ import annotations

import numpy as np

from zoo.errors import DataError


class TFDSData(tuple):
    """`(dataset, classes)` for one split, `(ds1, ds2, ..., classes)` for several.

    `.datasets`, `.classes` and `.info` (the TFDS `DatasetInfo`) name the parts.
    """

    def __new__(cls, datasets, classes, info):
        self = super().__new__(cls, (*datasets, classes))
        self.datasets = tuple(datasets)
        self.classes = classes
        self.info = info
        return self


def _to_rgb(image):
    import tensorflow as tf

    channels = image.shape[-1]
    if channels == 1:
        return tf.image.grayscale_to_rgb(image)
    if channels == 4:
        # Composite on white, as `zoo.data.pillow.to_rgb` does for files with alpha.
        rgb = tf.cast(image[..., :3], tf.float32)
        alpha = tf.cast(image[..., 3:], tf.float32) / 255.0
        return tf.cast(tf.round(rgb * alpha + 255.0 * (1.0 - alpha)), tf.uint8)
    return image


def tfds(
    name,
    split="train",
    image_size=None,
    batch_size=32,
    shuffle=None,
    augment=False,
    resize="squish",
    seed=0,
    cache="auto",
    data_dir=None,
    download=True,
):
    """A TFDS image-classification dataset as batches of `(uint8 RGB, int32 label)`.

    Grayscale datasets (MNIST) are repeated to three channels and everything is
    resized to `image_size`, so any registry model takes the batches as they are.

    Args:
        name: str. TFDS name, e.g. `"tf_flowers"` or `"mnist"` (a version such as
            `"mnist:3.*.*"` is fine).
        split: str or list of str. TFDS split(s), e.g. `"train[:80%]"`. A list gives
            one dataset per split. Defaults to `"train"`.
        image_size: int, `(height, width)` or None. Output size; `None` keeps the
            dataset's own size, which must then be fixed. Defaults to `None`.
        batch_size: int. Defaults to `32`.
        shuffle: bool or None. Reshuffle every epoch; `None` shuffles splits whose
            name starts with "train". Defaults to `None`.
        augment: bool or `keras.layers.Layer`. As in `image_folder`; applied to the
            shuffled splits only. Defaults to `False`.
        resize: str. `"squish"` or `"crop"`. Defaults to `"squish"`.
        seed: int. Shuffle and augmentation seed. Defaults to `0`.
        cache: `"auto"`, bool or a file path. Cache resized images (in memory when
            they fit in 1.5 GB for `"auto"`). Defaults to `"auto"`.
        data_dir: str or None. TFDS data folder. Defaults to TFDS' own.
        download: bool. Let TFDS download and prepare the data. Defaults to `True`.

    Returns:
        A `TFDSData` tuple: `(dataset, classes)` for one split,
        `(dataset_1, ..., dataset_n, classes)` for a list of splits; `.info` is the
        TFDS `DatasetInfo`.

    Raises:
        DataError: the dataset has no `(image, label)` supervised keys or its
            images are not uint8, or `image_size=None` for images of varying size.
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds_lib

    from zoo.data.augment import apply_uint8, resolve_augmentation
    from zoo.data.images import RESIZE_MODES, check_image_size, use_cache, resize_uint8

    if resize not in RESIZE_MODES:
        raise ValueError(f"`resize` must be one of {RESIZE_MODES}. Received: resize={resize!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}")
    splits = [split] if isinstance(split, str) else list(split)
    if not splits:
        raise ValueError(f"`split` must be a split name or a list of them. Received: split={split!r}")
    datasets, info = tfds_lib.load(
        name, split=splits, as_supervised=True, with_info=True,
        data_dir=data_dir, download=download,
    )
    image_key, label_key = info.supervised_keys or (None, None)
    features = info.features
    if image_key is None or not hasattr(features[label_key], "names"):
        raise DataError(
            f"TFDS dataset {name!r} has no (image, class label) supervised keys; "
            f"zoo.data.tfds reads image classification datasets. Its features: {features}"
        )
    image_feature = features[image_key]
    dtype = getattr(image_feature, "np_dtype", None)
    if dtype is not None and np.dtype(dtype) != np.uint8:
        raise DataError(
            f"TFDS dataset {name!r}: images are {np.dtype(dtype).name}, zoo.data.tfds "
            "reads uint8 images."
        )
    shape = tuple(image_feature.shape)
    if image_size is None:
        if None in shape[:2]:
            raise DataError(
                f"`image_size` must be given for {name!r}: its images vary in size "
                f"(shape {shape}). Received: image_size=None"
            )
        image_size = shape[:2]
    image_size = check_image_size(image_size)
    classes = list(features[label_key].names)
    layer = resolve_augmentation(augment, seed=seed)

    def prepare(image, label):
        image = _to_rgb(image)
        if image.shape[:2] != tuple(image_size):
            image = resize_uint8(image, image_size, resize)
        return image, tf.cast(label, tf.int32)

    out = []
    for split_name, ds in zip(splits, datasets):
        shuffled = split_name.startswith("train") if shuffle is None else bool(shuffle)
        count = int(ds.cardinality())
        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffled)
        cached = count >= 0 and use_cache(cache, count, image_size)
        if cached:
            ds = ds.cache(cached if isinstance(cached, str) else "")
        if shuffled:
            buffer = count if cached else min(max(count, 1), 10_000)
            ds = ds.shuffle(max(buffer, 1), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
        if layer is not None and shuffled:
            ds = ds.map(lambda x, y: (apply_uint8(layer, x), y), num_parallel_calls=tf.data.AUTOTUNE)
        out.append(ds.prefetch(tf.data.AUTOTUNE))
    return TFDSData(out, classes, info)
